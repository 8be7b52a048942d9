# -*- coding: utf-8 -*-
# Copyright: rat.backup contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Benchmark of the backup playbook on the lab (issue 6), run by `make bench` with .lab/env exported.

Two scenarios, each measured in the same run:
  * lab: the seeded `rat` database and the `rat` and `rat-scratch` buckets;
  * big lake: the same plus a bench-only bucket of BENCH_LAKE_MB MiB (default 1024) in 256 objects,
    created by the bench and removed afterwards, so the first backup is dominated by transfer and the
    ratio shows what the incremental backup saves rather than the playbook's fixed costs.
For each: the seed's own method (RAT's `make backup`: pg_dump -Fc + `aws s3 sync` of each bucket into
a new directory), the first backup with playbooks/backup.yml (wall clock, and begin->commit from the
log line), and a second backup of the unchanged lake: time and extra disk relative to the first.
Targets (issue 24, small host): first backup <= 0.7x the seed method, unchanged second backup <= 0.4x the
first. Targets (issue 6): second backup <= 5% of the first's time and <= 1% extra disk.

The seeded lab is measured twice, each run with its peer in the same run: against the lab's S3 server
(moto, ~2.5-4.5 ms of its own CPU per request, on one core: it bounds both the peer and us) and against
`rclone serve s3` over a copy of the same objects (lab/deps.sh installs it into .venv/bench-tools; Go,
a fraction of moto's CPU per request, but unversioned: the backup is best-effort there). Every run also
counts CPU seconds (cpu_meter.py): the client's (every process the bench starts, modules included) and
the S3 server's, so a wall-time ratio on a shared 2-core machine can be judged against its floor.
BENCH_LAKE_MB=0 runs the seeded lab alone; BENCH_BACKUP_RCLONE=0 leaves out the rclone server. Prints
Markdown tables. Writes nothing outside a temporary directory and the bench bucket.
"""

from __future__ import annotations

import datetime
import json
import math
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET

from cpu_meter import CpuMeter

from ansible_collections.rat.backup.plugins.module_utils.backup_root import manifest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BIN = os.path.dirname(sys.executable)
BUCKETS = ["rat", "rat-scratch"]
LAKE_BUCKET = "bench-backup-lake"
LAKE_OBJECTS = 256
# Module tasks of a backup: backup_capture (checks, lock, pg_dump and bucket mirror in one run, commit).
ROLE_MODULE_TASKS = 1
LAST_TASKS = {}
# CPU seconds (CpuMeter.since) of the last timed() run: client (ansible + services) and S3 server.
LAST_CPU = {}
RCLONE = os.environ.get("RAT_BENCH_BACKUP_SERVER", os.path.join(REPO, ".venv", "bench-tools", "bin", "rclone"))
RCLONE_PORT = int(os.environ.get("RAT_BENCH_BACKUP_PORT", "20810"))
RCLONE_KEY, RCLONE_SECRET = "bench", "bench-secret"
METER = None


def env(name):
    value = os.environ.get(name)
    if not value:
        sys.exit("bench_backup: %s is not set; run through `make bench` (it exports .lab/env)" % name)
    return value


def timed(argv, **kwargs):
    before = METER.sample() if METER else None
    started = time.monotonic()
    proc = subprocess.run(argv, capture_output=True, text=True, check=False, **kwargs)
    elapsed = time.monotonic() - started
    if before is not None:
        cpu = METER.since(before)
        LAST_CPU.clear()
        if cpu["total"] is not None:
            LAST_CPU.update(client=cpu["ansible"] + cpu["services"], server=cpu["s3"])
    if proc.returncode != 0:
        sys.exit("bench_backup: %s failed (%d):\n%s\n%s" % (argv[0], proc.returncode, proc.stdout[-3000:],
                                                            proc.stderr[-3000:]))
    return elapsed, proc.stdout


def tree_bytes(path, only_unique=False):
    total = 0
    for parent, _dirs, files in os.walk(path):
        for name in files:
            st = os.lstat(os.path.join(parent, name))
            if not only_unique or st.st_nlink == 1:
                total += st.st_size
    return total


def write_inventory(work, buckets, s3=None):
    """The lab host; ``s3`` = (endpoint, access key, secret key) of another S3 server than the lab's."""
    endpoint, access_key, secret_key = s3 or (env("RAT_LAB_S3_ENDPOINT"), env("RAT_LAB_S3_ACCESS_KEY"),
                                              env("RAT_LAB_S3_SECRET_KEY"))
    secrets = {"pg_password": env("RAT_LAB_PG_PASSWORD"), "s3_secret_key": secret_key}
    for name, value in secrets.items():
        fd = os.open(os.path.join(work, name), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(value)
    host = {
        "ansible_connection": "local",
        "ansible_python_interpreter": sys.executable,
        "rat_postgres_host": env("RAT_LAB_PG_HOST"),
        "rat_postgres_port": int(env("RAT_LAB_PG_PORT")),
        "rat_postgres_user": env("RAT_LAB_PG_USER"),
        "rat_postgres_password": "{{ lookup('ansible.builtin.file', '%s/pg_password') }}" % work,
        "rat_postgres_database": env("RAT_LAB_PG_DATABASE"),
        "rat_minio_endpoint": endpoint,
        "rat_minio_access_key": access_key,
        "rat_minio_secret_key": "{{ lookup('ansible.builtin.file', '%s/s3_secret_key') }}" % work,
        "rat_minio_buckets": buckets,
        "rat_backup_root": os.path.join(work, "backups"),
    }
    path = os.path.join(work, "inventory.json")
    with open(path, "w") as handle:
        json.dump({"all": {"hosts": {"rat-bench": host}}}, handle)
    return path


def add_cpu(total):
    """``total`` (client, server CPU seconds) plus the last timed() run's; None without a meter."""
    if not LAST_CPU or total is None:
        return None
    return total[0] + LAST_CPU["client"], total[1] + LAST_CPU["server"]


def seed_method(work, buckets, s3=None):
    """RAT's own `make backup`: pg_dump -Fc, then a full copy of every bucket into a new directory.
    (seconds, bytes, pg_dump seconds, (client, server) CPU seconds); ``s3`` as for write_inventory."""
    endpoint, access_key, secret_key = s3 or (env("RAT_LAB_S3_ENDPOINT"), env("RAT_LAB_S3_ACCESS_KEY"),
                                              env("RAT_LAB_S3_SECRET_KEY"))
    target = os.path.join(work, "seed-method")
    os.makedirs(os.path.join(target, "postgres"))
    pg_env = dict(os.environ, PGPASSWORD=env("RAT_LAB_PG_PASSWORD"))
    dump = [os.path.join(env("RAT_LAB_PG_BIN"), "pg_dump"), "-Fc", "-w", "-h", env("RAT_LAB_PG_HOST"),
            "-p", env("RAT_LAB_PG_PORT"), "-U", env("RAT_LAB_PG_USER"), "-f",
            os.path.join(target, "postgres", "rat.dump"), env("RAT_LAB_PG_DATABASE")]
    pg_seconds, _out = timed(dump, env=pg_env)
    cpu = add_cpu((0.0, 0.0))
    aws_env = {k: v for k, v in os.environ.items() if k != "AWS_CA_BUNDLE"}
    aws_env.update(AWS_ACCESS_KEY_ID=access_key, AWS_SECRET_ACCESS_KEY=secret_key, AWS_DEFAULT_REGION="us-east-1")
    if s3:
        # rclone serve s3 answers a ranged GET with the whole object's CRC; the CLI would reject it.
        aws_env.update(AWS_RESPONSE_CHECKSUM_VALIDATION="when_required")
    s3_seconds = 0.0
    for bucket in buckets:
        seconds, _out = timed([os.path.join(BIN, "aws"), "--endpoint-url", endpoint, "s3", "sync",
                               "--only-show-errors", "s3://%s" % bucket, os.path.join(target, "minio", bucket)],
                              env=aws_env)
        s3_seconds += seconds
        cpu = add_cpu(cpu)
    return pg_seconds + s3_seconds, tree_bytes(target), pg_seconds, cpu


# The module tasks of the role, by a part of their names, as the split of a run reports them.
TASKS = [("backup_capture (checks, lock, pg_dump and bucket mirror overlapped, commit)",
          "then dump and mirror at one consistency")]


def playbook_backup(inventory, work):
    """One backup: (wall, begin->commit, backup dir, objects, rows); the seconds of each of TASKS go to
    ``LAST_TASKS`` (Ansible's junit callback)."""
    junit = tempfile.mkdtemp(prefix="junit-", dir=work)
    run_env = dict(os.environ, ANSIBLE_NOCOLOR="1", ANSIBLE_STDOUT_CALLBACK="default",
                   ANSIBLE_CALLBACKS_ENABLED="ansible.builtin.junit", JUNIT_OUTPUT_DIR=junit, JUNIT_TASK_CLASS="yes")
    seconds, out = timed([os.path.join(BIN, "ansible-playbook"), "-i", inventory,
                          os.path.join(REPO, "playbooks", "backup.yml")], cwd=REPO, env=run_env)
    LAST_TASKS.clear()
    for name in os.listdir(junit):
        for case in ET.parse(os.path.join(junit, name)).iter("testcase"):
            for label, part in TASKS:
                if part in case.get("name", ""):
                    LAST_TASKS[label] = LAST_TASKS.get(label, 0.0) + float(case.get("time") or 0)
    shutil.rmtree(junit, ignore_errors=True)
    line = re.search(r"status=ok name=(\S+) duration=([0-9.]+)s .*objects=([0-9]+)(?: tables=[0-9]+ rows=([0-9]+))?", out)
    if not line:
        sys.exit("bench_backup: no success line in the playbook output:\n" + out[-3000:])
    return (seconds, float(line.group(2)), os.path.join(work, "backups", line.group(1)), int(line.group(3)),
            int(line.group(4) or 0))


def ansible_floor(inventory, work, tasks):
    """ansible-playbook running ``tasks`` no-op module tasks on the same host: Ansible's own fixed cost."""
    playbook = os.path.join(work, "floor.yml")
    with open(playbook, "w") as handle:
        json.dump([{"hosts": "all", "gather_facts": False,
                    "tasks": [{"ansible.builtin.ping": {}} for _index in range(tasks)]}], handle)
    seconds, _out = timed([os.path.join(BIN, "ansible-playbook"), "-i", inventory, playbook], cwd=REPO)
    return seconds


def listing_seconds(buckets, s3=None):
    """(seconds, stamps in whole seconds): what the S3 server takes to list every object version of
    ``buckets`` (the mirror's first step), and whether every LastModified it lists is a whole second."""
    client = s3_client(s3)
    started = time.monotonic()
    whole = True
    for bucket in buckets:
        # rclone serve s3 keeps no versions: the mirror lists its buckets' current objects.
        for page in client.get_paginator("list_objects_v2" if s3 else "list_object_versions").paginate(Bucket=bucket):
            whole = whole and all(item["LastModified"].microsecond == 0
                                  for item in page.get("Contents", []) + page.get("Versions", []))
    return time.monotonic() - started, whole


def snapshot_second_rest(backup, whole_seconds):
    """What a backup pinned to its snapshot waits after it on a server that stamps whole seconds: the
    rest of the snapshot's second on S3's clock (the end of its window), before a listing may hold
    every version stamped in that second (module_utils/_mirror/listing.py, Lister); 0 where nothing
    was pinned (no versioned bucket) or the server stamps milliseconds."""
    window = (manifest.read(backup, with_objects=False).get("consistency") or {}).get("window")
    if not window or not whole_seconds:
        return 0.0
    end = datetime.datetime.fromisoformat(window[1].replace("Z", "+00:00")).timestamp()
    return math.floor(end) + 1 - end


def s3_client(s3=None):
    import boto3  # pylint: disable=import-outside-toplevel
    endpoint, access_key, secret_key = s3 or (env("RAT_LAB_S3_ENDPOINT"), env("RAT_LAB_S3_ACCESS_KEY"),
                                              env("RAT_LAB_S3_SECRET_KEY"))
    return boto3.client("s3", endpoint_url=endpoint, aws_access_key_id=access_key,
                        aws_secret_access_key=secret_key, region_name="us-east-1", verify=False)


def create_lake(client, total_mib):
    """The bench-only bucket: LAKE_OBJECTS objects of random bytes (incompressible, all distinct)."""
    client.create_bucket(Bucket=LAKE_BUCKET)
    size = max(1, total_mib * 2 ** 20 // LAKE_OBJECTS)
    for index in range(LAKE_OBJECTS):
        client.put_object(Bucket=LAKE_BUCKET, Key="lake/part-%04d.bin" % index, Body=os.urandom(size))


def remove_lake(client):
    try:
        pages = client.get_paginator("list_objects_v2").paginate(Bucket=LAKE_BUCKET)
        for page in pages:
            keys = [{"Key": item["Key"]} for item in page.get("Contents", [])]
            if keys:
                client.delete_objects(Bucket=LAKE_BUCKET, Delete={"Objects": keys})
        client.delete_bucket(Bucket=LAKE_BUCKET)
    except client.exceptions.NoSuchBucket:
        pass


def scenario(buckets, s3=None):
    """Seed method, first and second backup of ``buckets`` (on the lab's S3, or ``s3`` as for
    write_inventory): the measures, in a fresh directory."""
    work = tempfile.mkdtemp(prefix="rat-bench-backup-")
    try:
        inventory = write_inventory(work, buckets, s3)
        seed_seconds, seed_bytes, dump_seconds, seed_cpu = seed_method(work, buckets, s3)
        first_wall, first_work, first_dir, objects, rows = playbook_backup(inventory, work)
        first_tasks, first_cpu = dict(LAST_TASKS), add_cpu((0.0, 0.0))
        second_wall, second_work, second_dir, _objects, _rows = playbook_backup(inventory, work)
        second_cpu = add_cpu((0.0, 0.0))
        listing = listing_seconds(buckets, s3)
        return {"seed_seconds": seed_seconds, "seed_bytes": seed_bytes, "first_wall": first_wall,
                "first_work": first_work, "second_wall": second_wall, "second_work": second_work,
                "first_bytes": tree_bytes(first_dir), "extra": tree_bytes(second_dir, only_unique=True),
                "floor": ansible_floor(inventory, work, ROLE_MODULE_TASKS), "empty": ansible_floor(inventory, work, 0),
                "listing": listing[0], "clock": snapshot_second_rest(second_dir, listing[1]),
                "dump": dump_seconds, "objects": objects, "rows": rows,
                "cpu": {"seed": seed_cpu, "first": first_cpu, "second": second_cpu},
                "tasks": {"first": first_tasks, "second": dict(LAST_TASKS)}}
    finally:
        shutil.rmtree(work, ignore_errors=True)


class RcloneServer:
    """`rclone serve s3` over a temporary directory holding the current objects of ``buckets`` of the
    lab's S3 (written as files: the server's seeding costs no requests); stop() ends it."""

    def __init__(self, buckets):
        self.dir = tempfile.mkdtemp(prefix="rat-bench-backup-rclone-")
        client = s3_client()
        for bucket in buckets:
            for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket):
                for item in page.get("Contents", []):
                    path = os.path.join(self.dir, bucket, item["Key"])
                    os.makedirs(os.path.dirname(path), exist_ok=True)
                    with open(path, "wb") as handle:
                        handle.write(client.get_object(Bucket=bucket, Key=item["Key"])["Body"].read())
        self.s3 = ("http://127.0.0.1:%d" % RCLONE_PORT, RCLONE_KEY, RCLONE_SECRET)
        self.log = open(self.dir + ".log", "wb")
        self.proc = subprocess.Popen([RCLONE, "serve", "s3", "--addr", "127.0.0.1:%d" % RCLONE_PORT,
                                      "--auth-key", "%s,%s" % (RCLONE_KEY, RCLONE_SECRET), "--etag-hash", "MD5",
                                      "--config", "/dev/null", self.dir], stdout=self.log, stderr=self.log)
        self.pid_file = self.dir + ".pid"
        with open(self.pid_file, "w") as handle:
            handle.write(str(self.proc.pid))
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            with socket.socket() as sock:
                if sock.connect_ex(("127.0.0.1", RCLONE_PORT)) == 0:
                    return
            time.sleep(0.1)
        self.stop()
        sys.exit("bench_backup: %s serve s3 did not listen on %d" % (RCLONE, RCLONE_PORT))

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=30)
        self.log.close()
        for path in (self.log.name, self.pid_file):
            if os.path.exists(path):
                os.unlink(path)
        shutil.rmtree(self.dir, ignore_errors=True)


def pct(a, b):
    return "%.1f%%" % (100.0 * a / b) if b else "-"


def cpu_cells(cpu):
    return ("%.1f | %.1f" % cpu) if cpu else "- | -"


def report(title, m):
    seed_seconds, first_wall, first_work = m["seed_seconds"], m["first_wall"], m["first_work"]
    second_wall, second_work, first_bytes, extra = m["second_wall"], m["second_work"], m["first_bytes"], m["extra"]
    print("## bench_backup: %s" % title)
    print()
    print("| run | wall s | begin->commit s | ratio to seed method | client CPU s | S3 server CPU s | disk MiB |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    print("| seed method (pg_dump -Fc + aws s3 sync) | %.1f | - | 1.00 | %s | %.1f |"
          % (seed_seconds, cpu_cells(m["cpu"]["seed"]), m["seed_bytes"] / 2 ** 20))
    print("| first backup (playbook) | %.1f | %.1f | %.2f | %s | %.1f |"
          % (first_wall, first_work, first_wall / seed_seconds, cpu_cells(m["cpu"]["first"]), first_bytes / 2 ** 20))
    print("| second backup, nothing changed (playbook) | %.1f | %.1f | %.2f | %s | %.1f extra |"
          % (second_wall, second_work, second_wall / seed_seconds, cpu_cells(m["cpu"]["second"]), extra / 2 ** 20))
    print()
    floor, listing, dump = m["floor"], m["listing"], m["dump"]
    own = second_wall - floor - listing - dump
    print("Where the second backup's %.1f s go (each measured alone in this run):" % second_wall)
    print()
    print("| part | s | share |")
    print("|---|---:|---:|")
    print("| Ansible: ansible-playbook with %d no-op module task(s) | %.1f | %s |"
          % (ROLE_MODULE_TASKS, floor, pct(floor, second_wall)))
    print("| S3 server: listing every object (version) (boto3 alone) | %.1f | %s |" % (listing, pct(listing, second_wall)))
    print("| PostgreSQL: pg_dump -Fc alone | %.1f | %s |" % (dump, pct(dump, second_wall)))
    print("| rat.backup itself (checks, clock skew, hard links, manifest, fsync) | %.1f | %s |"
          % (own, pct(own, second_wall)))
    print()
    print("Each run by task (seconds from Ansible's junit callback; the rest is ansible-playbook itself and the "
          "role's controller-side tasks):")
    print()
    print("| run | wall | " + " | ".join(label for label, _part in TASKS) + " | rest |")
    print("|---|---:|" + "---:|" * (len(TASKS) + 1))
    for run, wall in (("first", first_wall), ("second", second_wall)):
        tasks = m["tasks"][run]
        cells = " | ".join("%.2f" % tasks.get(label, 0.0) for label, _part in TASKS)
        print("| %s | %.1f | %s | %.1f |" % (run, wall, cells, wall - sum(tasks.values())))
    print()
    print("For scale: ansible-playbook with no task at all takes %.2f s here, %s of the first backup."
          % (m["empty"], pct(m["empty"], first_wall)))
    print()
    print("| target (issue 6) | measured | met |")
    print("|---|---:|---|")
    print("| second backup time <= 5%% of the first (wall) | %s | %s |"
          % (pct(second_wall, first_wall), "yes" if second_wall <= 0.05 * first_wall else "no"))
    print("| second backup time <= 5%% of the first (begin->commit) | %s | %s |"
          % (pct(second_work, first_work), "yes" if second_work <= 0.05 * first_work else "no"))
    print("| second backup extra disk <= 1%% of the first | %s | %s |"
          % (pct(extra, first_bytes), "yes" if extra <= 0.01 * first_bytes else "no"))
    print()
    unmet = []
    if second_wall > 0.05 * first_wall:
        unmet.append("time: Ansible's fixed cost plus the unavoidable listing and dump (%.1f s) alone are %s of "
                     "the first backup, above 5%%, whatever the backup does"
                     % (floor + listing + dump, pct(floor + listing + dump, first_wall)))
    if extra > 0.01 * first_bytes:
        unmet.append("disk: the only new file is manifest.json (%.0f bytes per object: key, path, sha256, ETag, "
                     "version id, attributes), and these objects average %.0f bytes"
                     % (extra / max(1, m["objects"]), first_bytes / max(1, m["objects"])))
    print("Verdict: %s." % ("; ".join(unmet) if unmet else "all targets met"))
    print()


def report_issue24(runs):
    """The issue's small-host rows, once per S3 server, each against its peer of the same run."""
    print("## bench_backup: issue 24, the small host (each row against its peer of the same run)")
    print()
    print("| issue 24 | S3 server | measured | CPU client / S3 server | peer / floor (same run) "
          "| peer CPU client / S3 server | target | ratio |")
    print("|---|---|---:|---:|---|---:|---|---|")
    for server, m in runs:
        first, seed, second = m["first_wall"], m["seed_seconds"], m["second_wall"]
        cpu = m["cpu"]
        print("| whole backup of this host (%d rows, %d objects) | %s | %.1f s | %s | RAT's method, `pg_dump -Fc` + "
              "`aws s3 sync`: %.1f s | %s | ≤ 0.7× | %.2f× %s |"
              % (m["rows"], m["objects"], server, first, cpu_pair(cpu["first"]), seed, cpu_pair(cpu["seed"]),
                 first / seed, "met" if first <= 0.7 * seed else "missed"))
        print("| second backup of that host, nothing changed | %s | %.1f s | %s | first backup %.1f s | %s | ≤ 0.4× "
              "| %.2f× %s |" % (server, second, cpu_pair(cpu["second"]), first, cpu_pair(cpu["first"]), second / first,
                                "met" if second <= 0.4 * first else "missed"))
    print()
    print("The floor of each row, from parts measured alone in the same run: Ansible running %d no-op module task(s), "
          "pg_dump -Fc alone, and for the first backup the S3 server's own CPU while it served our run (moto "
          "answers on one core), for the second the listing alone. Where the backup is pinned to its database "
          "snapshot (versioned buckets) on a server that stamps whole seconds (moto, AWS), the second's listing "
          "may only begin once the snapshot's second is over on S3's clock (S3 clock: the rest of that second, "
          "read off the backup's consistency window); pg_dump runs meanwhile, so the floor counts the longer of "
          "the two. A target under its floor cannot be met by the backup's own code." % ROLE_MODULE_TASKS)
    print()
    print("| S3 server | run | Ansible | pg_dump | S3 clock | S3 server | floor | target | measured |")
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|")
    for server, m in runs:
        served = m["cpu"]["first"][1] if m["cpu"]["first"] else 0.0
        for run, s3_part, clock, target, measured in (
                ("first", served, 0.0, 0.7 * m["seed_seconds"], m["first_wall"]),
                ("second", m["listing"], m["clock"], 0.4 * m["first_wall"], m["second_wall"])):
            floor = m["floor"] + max(m["dump"], clock) + s3_part
            print("| %s | %s | %.1f | %.1f | %s | %.1f | %.1f | %.1f%s | %.1f |"
                  % (server, run, m["floor"], m["dump"], "%.1f" % clock if run == "second" else "-", s3_part, floor,
                     target, " (under the floor)" if target < floor else "", measured))
    print()


def cpu_pair(cpu):
    return ("%.1f / %.1f s" % cpu) if cpu else "-"


def main():
    global METER  # pylint: disable=global-statement
    lake_mib = int(os.environ.get("BENCH_LAKE_MB", "1024"))
    with_rclone = os.environ.get("BENCH_BACKUP_RCLONE", "1") != "0"
    if with_rclone and not os.access(RCLONE, os.X_OK):
        sys.exit("bench_backup: %s missing (lab/deps.sh all installs it; BENCH_BACKUP_RCLONE=0 runs without it)" % RCLONE)
    # Started before the meter's group is made, so its CPU is counted once, as the S3 server's.
    rclone = RcloneServer(BUCKETS) if with_rclone else None
    lab_pid_file = os.path.join(env("RAT_LAB_STATE"), "s3-primary.pid")
    METER = CpuMeter(lab_pid_file)
    try:
        if METER.unavailable:
            print("CPU seconds not measured: %s" % METER.unavailable, file=sys.stderr)
        runs = [("moto (the lab's)", scenario(BUCKETS))]
        report("backup of the seeded lab (`rat` database, buckets %s), S3 server moto" % ", ".join(BUCKETS), runs[0][1])
        if rclone:
            METER.s3_pid_file = rclone.pid_file
            runs.append(("`rclone serve s3`", scenario(BUCKETS, rclone.s3)))
            METER.s3_pid_file = lab_pid_file
            report("the same objects served by `rclone serve s3` (unversioned: a best-effort backup)", runs[1][1])
        report_issue24(runs)
    finally:
        if rclone:
            rclone.stop()
    try:
        if lake_mib <= 0:  # BENCH_LAKE_MB=0: the small host alone
            return 0
        client = s3_client()
        remove_lake(client)
        try:
            create_lake(client, lake_mib)
            measures = scenario(BUCKETS + [LAKE_BUCKET])
        finally:
            remove_lake(client)
        report("big lake (lab + bucket %s: %d MiB in %d objects)" % (LAKE_BUCKET, lake_mib, LAKE_OBJECTS), measures)
        return 0
    finally:
        METER.close()


if __name__ == "__main__":
    sys.exit(main())
