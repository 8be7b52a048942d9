# -*- coding: utf-8 -*-
# Copyright: rat.backup contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""A small lake with two namespaces and two Iceberg tables in a JDBC catalog, its damage, and the checks.

    lake.py seed BUCKET DB             bucket (versioned) and Iceberg's iceberg_tables in DB
    lake.py damage BUCKET DB           delete/overwrite/add/re-attribute under ecommerce/landing/; commit orders onward
    lake.py move BUCKET DB TABLE       another writer commits TABLE onward (a new metadata file and pointer)
    lake.py state BUCKET DB            JSON: every object (size, ETag, type, metadata), every catalog row
    lake.py check BEFORE AFTER BACKUP [--prefix P]... [--table T]...
                                       selected prefixes equal the backup, everything else equals before
    lake.py check-scratch SCRATCH BACKUP --prefix P...
                                       a scratch bucket holds exactly the backup's objects under the prefixes
Settings from RAT_LAB_* in the environment.
"""

import argparse
import json
import os
import subprocess
import sys

import boto3
import botocore.config

ROOT = "ecommerce/warehouse"
# Iceberg's JdbcCatalog schema (JdbcUtil, V1 with iceberg_type).
DDL = ("DROP TABLE IF EXISTS iceberg_tables; CREATE TABLE iceberg_tables (catalog_name VARCHAR(255) NOT NULL, "
       "table_namespace VARCHAR(255) NOT NULL, table_name VARCHAR(255) NOT NULL, metadata_location VARCHAR(1000), "
       "previous_metadata_location VARCHAR(1000), iceberg_type VARCHAR(5), "
       "PRIMARY KEY (catalog_name, table_namespace, table_name))")


def s3_client():
    os.environ.pop("AWS_CA_BUNDLE", None)
    return boto3.client("s3", endpoint_url=os.environ["RAT_LAB_S3_ENDPOINT"], region_name="us-east-1",
                        aws_access_key_id=os.environ["RAT_LAB_S3_ACCESS_KEY"],
                        aws_secret_access_key=os.environ["RAT_LAB_S3_SECRET_KEY"],
                        config=botocore.config.Config(s3={"addressing_style": "path"}))


def psql(db, sql):
    env = dict(os.environ, PGPASSWORD=os.environ["RAT_LAB_PG_PASSWORD"])
    argv = [os.path.join(os.environ["RAT_LAB_PG_BIN"], "psql"), "-X", "-q", "-A", "-t", "-w", "-v", "ON_ERROR_STOP=1",
            "-h", os.environ["RAT_LAB_PG_HOST"], "-p", os.environ["RAT_LAB_PG_PORT"],
            "-U", os.environ["RAT_LAB_PG_USER"], "-d", db, "-c", sql]
    return subprocess.run(argv, env=env, check=True, capture_output=True, text=True).stdout.splitlines()


def location(bucket, table):
    return "s3://%s/%s/%s" % (bucket, ROOT, table)


def commit(s3, bucket, db, table, n):
    """One Iceberg-style commit: a data file, a metadata file naming it, then the catalog's CAS."""
    base = "%s/%s" % (ROOT, table)
    s3.put_object(Bucket=bucket, Key="%s/data/%05d-part.parquet" % (base, n), Body=b"PAR1" + os.urandom(40) + b"PAR1")
    meta = "%s/metadata/%05d-%s.metadata.json" % (base, n, table)
    s3.put_object(Bucket=bucket, Key=meta, ContentType="application/json",
                  Body=json.dumps({"format-version": 2, "location": location(bucket, table), "n": n}).encode())
    new = "s3://%s/%s" % (bucket, meta)
    if n == 1:
        psql(db, "INSERT INTO iceberg_tables VALUES ('rat', 'ecommerce', '%s', '%s', NULL, 'TABLE')" % (table, new))
        return
    rows = psql(db, "UPDATE iceberg_tables SET metadata_location = '%s', previous_metadata_location = metadata_location "
                    "WHERE catalog_name = 'rat' AND table_namespace = 'ecommerce' AND table_name = '%s' "
                    "RETURNING 1" % (new, table))
    assert rows == ["1"], rows


def seed(bucket, db):
    s3 = s3_client()
    s3.create_bucket(Bucket=bucket)
    s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
    for key in ("ecommerce/landing/orders/a.csv", "ecommerce/landing/orders/b.csv", "ecommerce/landing/orders/d.csv",
                "ecommerce/landing/c.csv",
                "ecommerce/landingx/z.csv", "finance/landing/f.csv", "finance/pipelines/p.sql"):
        s3.put_object(Bucket=bucket, Key=key, Body=("%s\n" % key).encode() * 3, ContentType="text/csv",
                      Metadata={"namespace": key.split("/", 1)[0]})
    psql(db, DDL)
    for table in ("orders", "customers"):
        commit(s3, bucket, db, table, 1)
        commit(s3, bucket, db, table, 2)


def damage(bucket, db):
    s3 = s3_client()
    s3.delete_object(Bucket=bucket, Key="ecommerce/landing/orders/a.csv")
    s3.put_object(Bucket=bucket, Key="ecommerce/landing/orders/b.csv", Body=b"overwritten by a bad run\n",
                  ContentType="application/octet-stream")
    s3.put_object(Bucket=bucket, Key="ecommerce/landing/orders/late.csv", Body=b"written after the backup\n")
    # Same bytes (same ETag), other attributes: only a HEAD tells them from the backup's objects. d.csv
    # is inside the selection (put back), c.csv outside (left as it is now).
    for key in ("ecommerce/landing/orders/d.csv", "ecommerce/landing/c.csv"):
        s3.put_object(Bucket=bucket, Key=key, Body=("%s\n" % key).encode() * 3, ContentType="application/x-rewritten",
                      Metadata={"namespace": "rewritten"})
    commit(s3, bucket, db, "orders", 3)
    commit(s3, bucket, db, "orders", 4)


def state(bucket, db):
    s3 = s3_client()
    objects = {}
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket):
        for item in page.get("Contents", ()):
            head = s3.head_object(Bucket=bucket, Key=item["Key"])
            objects[item["Key"]] = [item["Size"], item["ETag"], head.get("ContentType"), head.get("Metadata")]
    rows = psql(db, "SELECT json_build_object('t', table_namespace || '.' || table_name, 'r', "
                    "json_build_array(catalog_name, metadata_location, previous_metadata_location, iceberg_type)) "
                    "FROM iceberg_tables ORDER BY 1::text") if db != "-" else []
    catalog = {item["t"]: item["r"] for item in map(json.loads, rows)}
    return {"objects": objects, "catalog": catalog}


def check(before, after, backup, prefixes, tables):
    problems = []
    selected = list(prefixes)
    for key in sorted(set(before["objects"]) | set(after["objects"]) | set(backup["objects"])):
        want = backup if any(key.startswith(p) for p in selected) else before
        if want["objects"].get(key) != after["objects"].get(key):
            problems.append("%s: %s, expected %s (%s)" % (key, after["objects"].get(key), want["objects"].get(key),
                                                          "backup" if want is backup else "before"))
    for name in sorted(set(before["catalog"]) | set(after["catalog"])):
        got = after["catalog"].get(name)
        if name in tables:
            if got is None or got[1] != backup["catalog"][name][1]:
                problems.append("catalog %s: %s, expected the backup's %s" % (name, got, backup["catalog"][name][1]))
        elif got != before["catalog"].get(name):
            problems.append("catalog %s: %s, expected %s as before" % (name, got, before["catalog"].get(name)))
    print(json.dumps({"objects": len(after["objects"]), "problems": problems[:20]}))
    return 1 if problems else 0


def check_scratch(scratch, backup, prefixes):
    want = {k: v for k, v in backup["objects"].items() if any(k.startswith(p) for p in prefixes)}
    got = {k: v for k, v in scratch["objects"].items() if k != ".rat-backup-drill.json"}
    problems = ["%s: %s, expected %s" % (k, got.get(k), want.get(k)) for k in sorted(set(want) | set(got))
                if got.get(k) != want.get(k)]
    print(json.dumps({"objects": len(got), "problems": problems[:20]}))
    return 1 if problems or not want else 0


def main():
    cmd, args = sys.argv[1], sys.argv[2:]
    if cmd == "seed":
        seed(*args)
    elif cmd == "damage":
        damage(*args)
    elif cmd == "move":
        commit(s3_client(), args[0], args[1], args[2], int(args[3]))
    elif cmd == "state":
        print(json.dumps(state(*args), sort_keys=True))
    elif cmd == "check":
        parser = argparse.ArgumentParser()
        parser.add_argument("before")
        parser.add_argument("after")
        parser.add_argument("backup")
        parser.add_argument("--prefix", action="append", default=[])
        parser.add_argument("--table", action="append", default=[])
        opts = parser.parse_args(args)
        docs = []
        for path in (opts.before, opts.after, opts.backup):
            with open(path) as handle:
                docs.append(json.load(handle))
        return check(docs[0], docs[1], docs[2], opts.prefix, opts.table)
    elif cmd == "check-scratch":
        docs = []
        for path in args[:2]:
            with open(path) as handle:
                docs.append(json.load(handle))
        return check_scratch(docs[0], docs[1], [a for a in args[2:] if a != "--prefix"])
    return 0


if __name__ == "__main__":
    sys.exit(main())
