# -*- coding: utf-8 -*-
# Copyright: rat.backup contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Benchmark of a five-host fleet (issue 16), run by `make bench` with .lab/env exported.

The fleet is the drill tests' (tests/integration/targets/setup_drill_fleet/files/fleet.sh): three
local hosts with their own PostgreSQL cluster, two hosts over SSH in network namespaces (one with
PostgreSQL in a container), each with the lab's RAT-shaped database and a bucket. In the same run:
  * the backup playbook on one host alone (its first backup, into a root of its own);
  * the backup playbook on the five hosts at once (--forks 5, first backups);
  * the restore drill of the five hosts at once: RTO and RPO per host from the drill's report.
Target (issue 16): the fleet's wall time <= 2x one host's (2 cores). Wall time depends on what else
runs, so each run also counts the CPU seconds it costs (cpu_meter.py): five hosts' work divided by
the cores is the floor no scheduling can beat, and the verdict compares the ratio with that floor.
Prints Markdown tables and an honest verdict; fails only when a backup or drill fails. Uses ports 20450-20461 and 10.204.0.64/29,
apart from the tests'. Everything it starts is stopped and removed afterwards.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time

from cpu_meter import CpuMeter

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BIN = os.path.dirname(sys.executable)
FLEET_SH = os.path.join(REPO, "tests/integration/targets/setup_drill_fleet/files/fleet.sh")
SETUP = os.path.join(REPO, "tests/integration/targets/setup_backup_lab/files")
HOSTS = ["bench-a", "bench-b", "bench-c", "bench-d", "bench-e"]
KIND = {"bench-a": "local", "bench-b": "local", "bench-c": "local", "bench-d": "SSH (netns)",
        "bench-e": "SSH (netns), PostgreSQL in a container"}


def fleet_env():
    env = dict(os.environ, FLEET_BASE_PORT="20450", FLEET_SUBNET="10.204.0", FLEET_HOST_OFFSET="64",
               FLEET_PREFIX="bench", FLEET_SEED_SQL=os.path.join(REPO, "lab/seed.sql"),
               FLEET_S3_FIXTURE=os.path.join(SETUP, "s3_fixture.py"), FLEET_BG=os.path.join(SETUP, "bg.py"))
    for name in ("RAT_LAB_PG_BIN", "RAT_LAB_PYTHON", "RAT_LAB_S3_ENDPOINT", "RAT_LAB_DOCKER_HOST", "RAT_LAB_PG_IMAGE"):
        if not env.get(name):
            sys.exit("bench_drill: %s is not set; run through `make bench` (it exports .lab/env)" % name)
    return env


def play_env():
    env = dict(os.environ, ANSIBLE_COLLECTIONS_PATH=os.path.join(REPO, "collections"), ANSIBLE_HOST_KEY_CHECKING="False",
               ANSIBLE_RETRY_FILES_ENABLED="False", ANSIBLE_NOCOLOR="1")
    env.pop("AWS_CA_BUNDLE", None)
    return env


def timed_play(meter, argv):
    """Wall seconds and the CPU seconds of every part (CpuMeter.sample) of one ansible-playbook run."""
    before = meter.sample()
    started = time.monotonic()
    proc = subprocess.run([os.path.join(BIN, "ansible-playbook")] + argv, capture_output=True, text=True,
                          env=play_env(), check=False)
    elapsed = time.monotonic() - started
    cpu = meter.since(before)
    if proc.returncode != 0:
        sys.stderr.write(proc.stdout[-4000:] + proc.stderr[-2000:])
        raise SystemExit("bench_drill: ansible-playbook %s failed (rc %d)" % (" ".join(argv), proc.returncode))
    return elapsed, cpu


def main():
    work = tempfile.mkdtemp(prefix="rat-bench-drill-")
    os.chmod(work, 0o700)
    fleet = os.path.join(work, "fleet")
    os.mkdir(fleet, 0o700)
    env = fleet_env()
    meter = CpuMeter(os.path.join(env.get("RAT_LAB_STATE", ""), "s3-primary.pid"))
    try:
        print("bench_drill: starting the five-host fleet ...", file=sys.stderr, flush=True)
        subprocess.run(["bash", FLEET_SH, "up", fleet], env=env, check=True)
        inventory = os.path.join(fleet, "fleet.yml")
        single, single_cpu = timed_play(meter, ["-i", inventory, "-l", "bench-a", "rat.backup.backup",
                                                "-e", "rat_backup_root=%s" % os.path.join(work, "single")])
        five, five_cpu = timed_play(meter, ["-i", inventory, "-f", "5", "rat.backup.backup"])
        report_dir = os.path.join(work, "report")
        drill, drill_cpu = timed_play(meter, ["-i", inventory, "-f", "5", "rat.backup.restore_drill",
                                              "-e", json.dumps({"rat_drill_report_dir": report_dir})])
        with open(os.path.join(report_dir, "restore-drill.json"), encoding="utf-8") as handle:
            report = json.load(handle)
    finally:
        subprocess.run(["bash", FLEET_SH, "down", fleet], env=env, check=False)
        subprocess.run(["rm", "-rf", work], check=False)
        meter.close()

    print_fleet_backup(single, single_cpu, five, five_cpu, meter)
    print("## Restore drill of the fleet (--forks 5, wall time %.1f s, %s of CPU)\n" % (drill, seconds(drill_cpu["total"])))
    print("| host | kind | backup | RPO | RTO | tables | rows | objects | result |")
    print("|---|---|---|---|---|---|---|---|---|")
    for row in report["hosts"]:
        print("| %s | %s | %s | %s s | %s s | %s | %s | %s | %s |" % (
            row["host"], KIND.get(row["host"], "?"), row.get("backup"), row.get("rpo_seconds"), row.get("rto_seconds"),
            row.get("tables"), row.get("rows"), row.get("objects"),
            row["status"] + (" (%s)" % row["reason"] if row.get("reason") else "")))
    print("\nRTO is measured on the controller from the start of the restore (backup verification included) to the"
          " end of the checks, each host at its own pace (strategy free); with five drills sharing two cores it is"
          " mostly Ansible's own work per task, and it includes the wait for CPU.")
    if report["summary"]["failed"]:
        raise SystemExit("bench_drill: drills failed on %s" % ", ".join(report["summary"]["failed_hosts"]))


def print_fleet_backup(single, single_cpu, five, five_cpu, meter):
    cores = os.cpu_count() or 1
    print("\n## Fleet backup: five hosts at once against one host alone (same run, first backups)\n")
    print("| run | hosts | forks | wall time | CPU: controller (ansible, local modules)"
          " | CPU: hosts (PostgreSQL, sshd, modules over SSH, containers) | CPU: S3 server | CPU total"
          " | CPU floor on %d cores |" % cores)
    print("|---|---|---|---|---|---|---|---|---|")
    for label, hosts, wall, cpu in (("one host (bench-a)", 1, single, single_cpu), ("the fleet", 5, five, five_cpu)):
        print("| %s | %d | %d | %.1f s | %s | %s | %s | %s | %s |" % (
            label, hosts, hosts, wall, seconds(cpu["ansible"]), seconds(cpu["services"]), seconds(cpu["s3"]),
            seconds(cpu["total"]), seconds(cpu["total"] / cores if cpu["total"] is not None else None)))
    ratio = five / single
    print("\nRatio %.2fx; target <= 2x one host's time: %s." % (ratio, "met" if ratio <= 2.0 else "MISSED"))
    if five_cpu["total"] is None:
        print("\nCPU seconds not measured (%s): the floor is unknown.\n" % meter.unavailable)
        return
    floor = max(single, five_cpu["total"] / cores) / single
    print("\nFloor: the fleet's backups cost %.1f CPU seconds, %.1f s of wall time on %d cores even with perfect"
          " overlap, so no scheduling does better than %.2fx one host's %.1f s here. The fleet took %.2fx that floor"
          " (the rest is waiting: load from other processes, I/O, Ansible's per-task round trips).\n"
          % (five_cpu["total"], five_cpu["total"] / cores, cores, floor, single, five / (floor * single)))


def seconds(value):
    return "n/a" if value is None else "%.1f s" % value


if __name__ == "__main__":
    main()
