# -*- coding: utf-8 -*-
# Copyright: rat.backup contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Benchmark of the backup playbook on the lab (issue 6), run by `make bench` with .lab/env exported.

Measures, in the same run, on the seeded `rat` database and the `rat` and `rat-scratch` buckets:
  * the seed's own method (RAT's `make backup`): pg_dump -Fc + `aws s3 sync` of each bucket into a
    new directory;
  * the first backup with playbooks/backup.yml (wall clock, and begin->commit from the log line);
  * a second backup of the unchanged lab: time and extra disk relative to the first.
Targets (issue 6): second backup <= 5% of the first's time and <= 1% extra disk.
Prints a Markdown table. Reads and writes nothing outside a temporary directory.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BIN = os.path.dirname(sys.executable)
BUCKETS = ["rat", "rat-scratch"]


def env(name):
    value = os.environ.get(name)
    if not value:
        sys.exit("bench_backup: %s is not set; run through `make bench` (it exports .lab/env)" % name)
    return value


def timed(argv, **kwargs):
    started = time.monotonic()
    proc = subprocess.run(argv, capture_output=True, text=True, check=False, **kwargs)
    elapsed = time.monotonic() - started
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


def write_inventory(work):
    secrets = {"pg_password": env("RAT_LAB_PG_PASSWORD"), "s3_secret_key": env("RAT_LAB_S3_SECRET_KEY")}
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
        "rat_minio_endpoint": env("RAT_LAB_S3_ENDPOINT"),
        "rat_minio_access_key": env("RAT_LAB_S3_ACCESS_KEY"),
        "rat_minio_secret_key": "{{ lookup('ansible.builtin.file', '%s/s3_secret_key') }}" % work,
        "rat_minio_buckets": BUCKETS,
        "rat_backup_root": os.path.join(work, "backups"),
    }
    path = os.path.join(work, "inventory.json")
    with open(path, "w") as handle:
        json.dump({"all": {"hosts": {"rat-bench": host}}}, handle)
    return path


def seed_method(work):
    """RAT's own `make backup`: pg_dump -Fc, then a full copy of every bucket into a new directory."""
    target = os.path.join(work, "seed-method")
    os.makedirs(os.path.join(target, "postgres"))
    pg_env = dict(os.environ, PGPASSWORD=env("RAT_LAB_PG_PASSWORD"))
    dump = [os.path.join(env("RAT_LAB_PG_BIN"), "pg_dump"), "-Fc", "-w", "-h", env("RAT_LAB_PG_HOST"),
            "-p", env("RAT_LAB_PG_PORT"), "-U", env("RAT_LAB_PG_USER"), "-f",
            os.path.join(target, "postgres", "rat.dump"), env("RAT_LAB_PG_DATABASE")]
    pg_seconds, _out = timed(dump, env=pg_env)
    aws_env = {k: v for k, v in os.environ.items() if k != "AWS_CA_BUNDLE"}
    aws_env.update(AWS_ACCESS_KEY_ID=env("RAT_LAB_S3_ACCESS_KEY"), AWS_SECRET_ACCESS_KEY=env("RAT_LAB_S3_SECRET_KEY"),
                   AWS_DEFAULT_REGION="us-east-1")
    s3_seconds = 0.0
    for bucket in BUCKETS:
        seconds, _out = timed([os.path.join(BIN, "aws"), "--endpoint-url", env("RAT_LAB_S3_ENDPOINT"), "s3", "sync",
                               "--only-show-errors", "s3://%s" % bucket, os.path.join(target, "minio", bucket)],
                              env=aws_env)
        s3_seconds += seconds
    return pg_seconds + s3_seconds, tree_bytes(target)


def playbook_backup(inventory, work):
    run_env = dict(os.environ, ANSIBLE_NOCOLOR="1", ANSIBLE_STDOUT_CALLBACK="default")
    seconds, out = timed([os.path.join(BIN, "ansible-playbook"), "-i", inventory,
                          os.path.join(REPO, "playbooks", "backup.yml")], cwd=REPO, env=run_env)
    line = re.search(r"status=ok name=(\S+) duration=([0-9.]+)s", out)
    if not line:
        sys.exit("bench_backup: no success line in the playbook output:\n" + out[-3000:])
    return seconds, float(line.group(2)), os.path.join(work, "backups", line.group(1))


def main():
    work = tempfile.mkdtemp(prefix="rat-bench-backup-")
    try:
        inventory = write_inventory(work)
        seed_seconds, seed_bytes = seed_method(work)
        first_wall, first_work, first_dir = playbook_backup(inventory, work)
        second_wall, second_work, second_dir = playbook_backup(inventory, work)
        first_bytes = tree_bytes(first_dir)
        extra = tree_bytes(second_dir, only_unique=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)

    def pct(a, b):
        return "%.1f%%" % (100.0 * a / b) if b else "-"

    print("## bench_backup: backup of the seeded lab (`rat` database, buckets %s)" % ", ".join(BUCKETS))
    print()
    print("| run | wall s | begin->commit s | ratio to seed method | disk MiB |")
    print("|---|---:|---:|---:|---:|")
    print("| seed method (pg_dump -Fc + aws s3 sync) | %.1f | - | 1.00 | %.1f |" % (seed_seconds, seed_bytes / 2 ** 20))
    print("| first backup (playbook) | %.1f | %.1f | %.2f | %.1f |"
          % (first_wall, first_work, first_wall / seed_seconds, first_bytes / 2 ** 20))
    print("| second backup, unchanged lab (playbook) | %.1f | %.1f | %.2f | %.1f extra |"
          % (second_wall, second_work, second_wall / seed_seconds, extra / 2 ** 20))
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
    print("Extra disk of the second backup is its own dump (pg_dump output is never byte-identical, so it "
          "cannot be hard-linked) plus manifest.json; objects are hard links.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
