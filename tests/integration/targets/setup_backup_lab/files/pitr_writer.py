# -*- coding: utf-8 -*-
# Copyright: rat.backup contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""A writer of rows and Iceberg-style lake commits, a time between two commits, and the check of a recovery.

    pitr_writer.py reset DB                     tables pitr_rows and lake_pointer
    pitr_writer.py run BUCKET DB LOG N GAP      N commits, GAP seconds apart, one JSON line each
    pitr_writer.py pick LOG                     a time between the middle commit and the next
    pitr_writer.py check BUCKET DB LOG AS_OF PORT
                                                the server on PORT holds exactly the rows committed before
                                                AS_OF and the lake pointer of then; the bucket holds exactly
                                                the objects (bytes) of then
    pitr_writer.py buckets                      the endpoint's bucket names, as JSON
    pitr_writer.py fingerprint BUCKET DB [PORT]  the rows, the pointer and every version and delete marker
                                                of the bucket (- for none), as JSON: equal before and after
                                                means nothing in them changed

Commit n: a row in pitr_rows (its own transaction, clock_timestamp), data object t/data/<n>.bin, metadata
t/metadata/v<n>.json naming the live data files with their sha256, the pointer row in PostgreSQL (and the
JDBC catalog's entry, iceberg_tables, in the same transaction), the version-hint object, then expiry of
commit n-2's data. The log line holds the bucket's expected state after the commit ({key: sha256}).
Settings from RAT_LAB_* in the environment.
"""

import datetime
import hashlib
import json
import math
import os
import subprocess
import sys
import time

import boto3
import botocore.config

HINT = "t/metadata/version-hint.text"
KEEP = 2


def s3_client():
    os.environ.pop("AWS_CA_BUNDLE", None)
    return boto3.client("s3", endpoint_url=os.environ["RAT_LAB_S3_ENDPOINT"], region_name="us-east-1",
                        aws_access_key_id=os.environ["RAT_LAB_S3_ACCESS_KEY"],
                        aws_secret_access_key=os.environ["RAT_LAB_S3_SECRET_KEY"],
                        config=botocore.config.Config(s3={"addressing_style": "path"}))


def psql(db, sql, port=None):
    env = dict(os.environ, PGPASSWORD=os.environ["RAT_LAB_PG_PASSWORD"])
    out = subprocess.run(
        [os.path.join(os.environ["RAT_LAB_PG_BIN"], "psql"), "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1",
         "-h", os.environ["RAT_LAB_PG_HOST"], "-p", str(port or os.environ["RAT_LAB_PG_PORT"]),
         "-U", os.environ["RAT_LAB_PG_USER"], "-d", db, "-c", sql], env=env, check=True, capture_output=True, text=True)
    return out.stdout.split()


def sha(body):
    return hashlib.sha256(body).hexdigest()


def run(bucket, db, log_path, count, gap):
    s3 = s3_client()
    state = {}
    with open(log_path, "w") as log:
        for n in range(1, count + 1):
            start = time.time()
            psql(db, f"INSERT INTO pitr_rows VALUES ({n}, clock_timestamp())")
            body = os.urandom(256) + b"%d" % n
            data = f"t/data/{n:06d}.bin"
            s3.put_object(Bucket=bucket, Key=data, Body=body)
            state[data] = sha(body)
            meta_key = f"t/metadata/v{n:06d}.json"
            meta = json.dumps({"n": n, "data": {k: v for k, v in state.items() if k.startswith("t/data/")}}).encode()
            s3.put_object(Bucket=bucket, Key=meta_key, Body=meta)
            state[meta_key] = sha(meta)
            psql(db, f"UPDATE lake_pointer SET n = {n}, metadata = '{meta_key}'; UPDATE iceberg_tables SET "
                     f"previous_metadata_location = metadata_location, metadata_location = 's3://{bucket}/{meta_key}'")
            s3.put_object(Bucket=bucket, Key=HINT, Body=b"%d" % n)
            state[HINT] = sha(b"%d" % n)
            if n > KEEP:
                gone = f"t/data/{n - KEEP:06d}.bin"
                s3.delete_object(Bucket=bucket, Key=gone)
                state.pop(gone)
            log.write(json.dumps({"n": n, "start": start, "end": time.time(), "state": state}) + "\n")
            log.flush()
            if n < count:
                time.sleep(gap)


def commits(log_path):
    with open(log_path) as log:
        return [json.loads(line) for line in log]


def pick(log_path):
    """A time in a whole second of its own after the middle commit (S3 stamps whole seconds) and before the next."""
    done = commits(log_path)
    middle = done[len(done) // 2 - 1]
    moment = math.floor(middle["end"]) + 1.5
    after = done[len(done) // 2]
    assert moment < math.floor(after["start"]), (moment, after["start"])
    print(datetime.datetime.fromtimestamp(moment, datetime.timezone.utc).isoformat().replace("+00:00", "Z"))


def check(bucket, db, log_path, as_of, port):
    moment = datetime.datetime.fromisoformat(as_of.replace("Z", "+00:00")).timestamp()
    done = commits(log_path)
    before = [c for c in done if c["end"] < moment]
    assert before and len(before) < len(done), "the time must lie between two commits"
    want = before[-1]
    rows = [int(x) for x in psql(db, "SELECT n FROM pitr_rows ORDER BY n", port)]
    assert rows == [c["n"] for c in before], f"rows {rows}, expected {[c['n'] for c in before]}"
    pointer = psql(db, "SELECT n || ' ' || metadata FROM lake_pointer", port)
    assert pointer == [str(want["n"]), f"t/metadata/v{want['n']:06d}.json"], pointer
    s3 = s3_client()
    listed = {}
    # The table's keys (the bucket fixture writes its own beside them, before the writer starts).
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix="t/"):
        for item in page.get("Contents", []):
            listed[item["Key"]] = sha(s3.get_object(Bucket=bucket, Key=item["Key"])["Body"].read())
    assert listed == want["state"], f"bucket {sorted(listed)} != state after commit {want['n']} {sorted(want['state'])}"
    hint = s3.get_object(Bucket=bucket, Key=HINT)["Body"].read().decode()
    print(json.dumps({"commit": want["n"], "rows": rows, "hint": hint, "objects": len(listed)}))


def fingerprint(bucket, db, port=None):
    out = {"rows": psql(db, "SELECT n || '@' || extract(epoch FROM at) FROM pitr_rows ORDER BY n", port),
           "pointer": psql(db, "SELECT n || ' ' || coalesce(metadata, '-') FROM lake_pointer", port),
           "catalog": psql(db, "SELECT coalesce(metadata_location, '-') FROM iceberg_tables", port)}
    if bucket != "-":
        versions, markers = [], []
        for page in s3_client().get_paginator("list_object_versions").paginate(Bucket=bucket):
            versions += [[v["Key"], v["VersionId"], v["ETag"], v["IsLatest"]] for v in page.get("Versions", [])]
            markers += [[m["Key"], m["VersionId"], m["IsLatest"]] for m in page.get("DeleteMarkers", [])]
        out.update(versions=sorted(versions), markers=sorted(markers))
    print(json.dumps(out, sort_keys=True))


def main():
    cmd, args = sys.argv[1], sys.argv[2:]
    if cmd == "reset":
        # iceberg_tables: the JDBC catalog's table, whose metadata location a drill checks against the lake.
        psql(args[0], "DROP TABLE IF EXISTS pitr_rows, lake_pointer, iceberg_tables; CREATE TABLE pitr_rows "
                      "(n int PRIMARY KEY, at timestamptz); CREATE TABLE lake_pointer (n int, metadata text); "
                      "INSERT INTO lake_pointer VALUES (0, NULL); CREATE TABLE iceberg_tables (catalog_name text, "
                      "table_namespace text, table_name text, metadata_location text, previous_metadata_location text, "
                      "PRIMARY KEY (catalog_name, table_namespace, table_name)); "
                      "INSERT INTO iceberg_tables VALUES ('rat', 'pitr', 't', NULL, NULL)")
    elif cmd == "run":
        run(args[0], args[1], args[2], int(args[3]), float(args[4]))
    elif cmd == "pick":
        pick(args[0])
    elif cmd == "check":
        check(args[0], args[1], args[2], args[3], int(args[4]))
    elif cmd == "buckets":
        print(json.dumps(sorted(b["Name"] for b in s3_client().list_buckets()["Buckets"])))
    elif cmd == "fingerprint":
        fingerprint(args[0], args[1], int(args[2]) if len(args) > 2 else None)
    else:
        raise SystemExit(__doc__)


if __name__ == "__main__":
    main()
