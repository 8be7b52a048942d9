# -*- coding: utf-8 -*-
# Copyright: rat.backup contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Fingerprint of a database and some buckets, to prove a restore equals the backup.

    state.py --db NAME --buckets a,b  >state.json

Database: per table, row count and md5 of the ordered rows' text (row-level checksum); the
large objects too. Buckets: per object, size, sha256, content type and user metadata.
Connection from the RAT_LAB_* environment (the password as PGPASSWORD, never in argv).
"""

import argparse
import concurrent.futures
import hashlib
import json
import os
import subprocess
import sys

import boto3
import botocore.config

TABLES_SQL = """
SELECT n.nspname || '.' || c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE c.relkind IN ('r', 'p') AND n.nspname NOT IN ('pg_catalog', 'information_schema')
  AND n.nspname NOT LIKE 'pg_toast%' ORDER BY 1
"""


def psql(db, sql):
    env = dict(os.environ, PGPASSWORD=os.environ["RAT_LAB_PG_PASSWORD"])
    argv = [os.path.join(os.environ["RAT_LAB_PG_BIN"], "psql"), "-X", "-q", "-A", "-t", "-w", "-v", "ON_ERROR_STOP=1",
            "-h", os.environ["RAT_LAB_PG_HOST"], "-p", os.environ["RAT_LAB_PG_PORT"],
            "-U", os.environ["RAT_LAB_PG_USER"], "-d", db, "-c", sql]
    return subprocess.run(argv, env=env, check=True, capture_output=True, text=True).stdout.splitlines()


def db_state(db):
    state = {}
    for table in psql(db, TABLES_SQL):
        schema, name = table.split(".", 1)
        ident = '"%s"."%s"' % (schema.replace('"', '""'), name.replace('"', '""'))
        row = psql(db, "SELECT count(*) || ' ' || coalesce(md5(string_agg(t::text, E'\\n' ORDER BY t::text)), '-') "
                       "FROM %s t" % ident)[0]
        count, digest = row.split(" ", 1)
        state[table] = {"rows": int(count), "md5": digest}
    state["<large objects>"] = psql(db, "SELECT coalesce(md5(string_agg(oid::text || ':' || md5(lo_get(oid)), ',' "
                                        "ORDER BY oid)), '-') FROM pg_largeobject_metadata")[0]
    return state


def s3_state(buckets, endpoint):
    client = boto3.client("s3", endpoint_url=endpoint, aws_access_key_id=os.environ["RAT_LAB_S3_ACCESS_KEY"],
                          aws_secret_access_key=os.environ["RAT_LAB_S3_SECRET_KEY"], region_name="us-east-1",
                          config=botocore.config.Config(s3={"addressing_style": "path"}))

    def fingerprint(bucket, item):
        obj = client.get_object(Bucket=bucket, Key=item["Key"])
        digest = hashlib.sha256()
        for chunk in iter(lambda: obj["Body"].read(1 << 20), b""):
            digest.update(chunk)
        return "%s/%s" % (bucket, item["Key"]), {
            "size": item["Size"], "sha256": digest.hexdigest(),
            "content_type": obj.get("ContentType"), "metadata": obj.get("Metadata") or {}}

    listed = [(bucket, item) for bucket in buckets
              for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket)
              for item in page.get("Contents", [])]
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        return dict(pool.map(lambda pair: fingerprint(*pair), listed))


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--db")
    parser.add_argument("--buckets", default="")
    parser.add_argument("--endpoint", default=os.environ.get("RAT_LAB_S3_ENDPOINT"))
    args = parser.parse_args()
    os.environ.pop("AWS_CA_BUNDLE", None)
    out = {}
    if args.db:
        out["db"] = db_state(args.db)
    if args.buckets:
        out["s3"] = s3_state([b for b in args.buckets.split(",") if b], args.endpoint)
    json.dump(out, sys.stdout, sort_keys=True)


if __name__ == "__main__":
    main()
