# -*- coding: utf-8 -*-
# Copyright: rat.backup contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""An Iceberg-style writer and the checks of a lake restored from a backup taken while it ran.

    iceberg_writer.py reset DB                          the pointer table, at commit 0
    iceberg_writer.py run BUCKET DB LOG SECONDS         commit as fast as possible, one JSON line per step;
                                                        LOG.ready once READY_AFTER commits are in
    iceberg_writer.py check BUCKET DB LOG MANIFEST      after the restore: pointers complete, lake in window

Each commit n: data files t/data/<n>-<i>.bin, metadata t/metadata/v<n>.json naming the data files of
commits n-2..n with their sha256, the pointer row in PostgreSQL (committed, acknowledged), the
version-hint object, then expiry of commit n-3's data and metadata (no longer named by v<n>).
Times in the log are this host's clock (the lab's PostgreSQL and S3 run here too).
Settings from RAT_LAB_* in the environment.
"""

import datetime
import hashlib
import json
import os
import subprocess
import sys
import time

import boto3
import botocore.config

KEEP = 3
# The backup starts once this many commits are in (LOG.ready appears).
READY_AFTER = 2 * KEEP
FILES = 2
HINT = "t/metadata/version-hint.text"


def s3_client():
    os.environ.pop("AWS_CA_BUNDLE", None)
    return boto3.client("s3", endpoint_url=os.environ["RAT_LAB_S3_ENDPOINT"], region_name="us-east-1",
                        aws_access_key_id=os.environ["RAT_LAB_S3_ACCESS_KEY"],
                        aws_secret_access_key=os.environ["RAT_LAB_S3_SECRET_KEY"],
                        config=botocore.config.Config(s3={"addressing_style": "path"}))


class Psql:
    """One psql session in autocommit; each statement waits for its acknowledgement."""

    def __init__(self, db):
        env = dict(os.environ, PGPASSWORD=os.environ["RAT_LAB_PG_PASSWORD"])
        self.proc = subprocess.Popen(
            [os.path.join(os.environ["RAT_LAB_PG_BIN"], "psql"), "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1",
             "-h", os.environ["RAT_LAB_PG_HOST"], "-p", os.environ["RAT_LAB_PG_PORT"],
             "-U", os.environ["RAT_LAB_PG_USER"], "-d", db],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env, text=True, bufsize=1)
        self.count = 0

    def run(self, sql):
        self.count += 1
        self.proc.stdin.write("%s;\n\\echo __done%d\n" % (sql.rstrip(";"), self.count))
        rows = []
        while True:
            line = self.proc.stdout.readline()
            if not line:
                raise SystemExit("psql ended")
            line = line.rstrip("\n")
            if line == "__done%d" % self.count:
                return rows
            rows.append(line)


def data_keys(n):
    return ["t/data/%06d-%d.bin" % (n, i) for i in range(FILES)]


def reset(db):
    Psql(db).run("DROP TABLE IF EXISTS lake_pointer; CREATE TABLE lake_pointer (tbl text PRIMARY KEY, n int, "
                 "metadata text); INSERT INTO lake_pointer VALUES ('t', 0, NULL);")


def run(bucket, db, log_path, seconds):
    s3, pg = s3_client(), Psql(db)
    pg.run("SELECT 1")
    row = pg.run("SELECT n FROM lake_pointer WHERE tbl = 't'")
    n = int(row[0])
    deadline = time.time() + seconds
    previous = {}
    with open(log_path, "a") as log:
        def note(step, n, keys, start):
            log.write(json.dumps({"step": step, "n": n, "keys": keys, "start": start, "end": time.time()}) + "\n")

        while time.time() < deadline:
            n += 1
            named = []
            for m in range(max(1, n - KEEP + 1), n + 1):
                for key in data_keys(m):
                    if m == n:
                        body = os.urandom(64) + b"%d" % n
                        start = time.time()
                        s3.put_object(Bucket=bucket, Key=key, Body=body)
                        note("data", n, [key], start)
                        named.append({"key": key, "sha256": hashlib.sha256(body).hexdigest()})
                    else:
                        named.append(previous[key])
            previous = {item["key"]: item for item in named}
            meta = "t/metadata/v%06d.json" % n
            start = time.time()
            s3.put_object(Bucket=bucket, Key=meta, Body=json.dumps({"n": n, "data": named}).encode())
            note("metadata", n, [meta], start)
            start = time.time()
            pg.run("UPDATE lake_pointer SET n = %d, metadata = '%s' WHERE tbl = 't'" % (n, meta))
            note("pointer", n, [], start)
            start = time.time()
            s3.put_object(Bucket=bucket, Key=HINT, Body=b"%d" % n)
            note("hint", n, [HINT], start)
            old = n - KEEP
            if old >= 1:
                gone = data_keys(old) + ["t/metadata/v%06d.json" % old]
                start = time.time()
                s3.delete_objects(Bucket=bucket, Delete={"Objects": [{"Key": k} for k in gone], "Quiet": True})
                note("expire", old, gone, start)
            log.flush()
            if n == READY_AFTER:
                open(log_path + ".ready", "w").close()
            time.sleep(0.003)
    print(n)


def check(bucket, db, log_path, manifest_path):
    """Pointer and hint complete and byte-exact, and the lake that of a moment inside the consistency window."""
    s3 = s3_client()
    problems = []
    with open(manifest_path) as handle:
        manifest = json.load(handle)
    point = manifest["consistency"]
    window = [datetime.datetime.fromisoformat(t.replace("Z", "+00:00")).timestamp() for t in point["window"]]
    steps = [json.loads(line) for line in open(log_path)]
    pg_n = int(Psql(db).run("SELECT n FROM lake_pointer WHERE tbl = 't'")[0])
    hint_n = int(s3.get_object(Bucket=bucket, Key=HINT)["Body"].read())
    for name, n in (("database pointer", pg_n), ("version-hint", hint_n)):
        meta = "t/metadata/v%06d.json" % n
        try:
            named = json.loads(s3.get_object(Bucket=bucket, Key=meta)["Body"].read())["data"]
        except s3.exceptions.NoSuchKey:
            problems.append("%s names %s, which is missing" % (name, meta))
            continue
        for item in named:
            try:
                body = s3.get_object(Bucket=bucket, Key=item["key"])["Body"].read()
            except s3.exceptions.NoSuchKey:
                problems.append("%s -> %s names %s, which is missing" % (name, meta, item["key"]))
                continue
            if hashlib.sha256(body).hexdigest() != item["sha256"]:
                problems.append("%s -> %s: %s differs" % (name, meta, item["key"]))
    present = set()
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket):
        present.update(o["Key"] for o in page.get("Contents", ()))
    # Precision of the stamps (whole seconds) plus scheduling slack of this busy machine.
    slack = 1.0 + 0.25
    for step in steps:
        if step["step"] in ("data", "metadata") and step["start"] > window[1] + slack:
            problems.extend("%s was written after the window (%.3f > %.3f)" % (k, step["start"], window[1])
                            for k in step["keys"] if k in present)
        if step["step"] == "expire" and step["end"] < window[0] - slack:
            problems.extend("%s was expired well before the window (%.3f < %.3f)" % (k, step["end"], window[0])
                            for k in step["keys"] if k in present)
    pointer_at = {s["n"]: s for s in steps if s["step"] == "pointer"}
    committed = pointer_at.get(pg_n)
    if committed is None or committed["start"] > window[1] + slack:
        problems.append("database pointer %d was committed after the window" % pg_n)
    later = pointer_at.get(pg_n + 1)
    if later is not None and later["end"] < window[0] - slack:
        problems.append("database pointer %d is older than the window: %d was committed before it" % (pg_n, pg_n + 1))
    # A test where the writer stood still around the backup would prove nothing.
    if pg_n < KEEP or not pointer_at or max(pointer_at) <= hint_n:
        problems.append("the writer did not commit both before and after the snapshot (pointer %d, hint %d, last %s)"
                        % (pg_n, hint_n, max(pointer_at) if pointer_at else None))
    print(json.dumps({"pointer": pg_n, "hint": hint_n, "objects": len(present), "window": point["window"],
                      "commits_logged": len(pointer_at), "problems": problems[:20]}))
    return 1 if problems else 0


def main():
    cmd, args = sys.argv[1], sys.argv[2:]
    if cmd == "reset":
        reset(args[0])
    elif cmd == "run":
        run(args[0], args[1], args[2], float(args[3]))
    elif cmd == "check":
        return check(*args[:4])
    return 0


if __name__ == "__main__":
    sys.exit(main())
