# -*- coding: utf-8 -*-
# Copyright: rat.backup contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Buckets for a target: create/fill, remove, keep rewriting objects, check versions.

    s3_fixture.py create BUCKET --versioned --objects N --size BYTES
    s3_fixture.py exists BUCKET           prints present or absent
    s3_fixture.py put BUCKET KEY SIZE
    s3_fixture.py remove BUCKET...
    s3_fixture.py writer BUCKET SECONDS      rewrites w/0..w/9 as fast as it can
    s3_fixture.py check-versions MANIFEST    every object of a versioned bucket in the manifest
                                             equals the bytes of its recorded version id
Credentials from RAT_LAB_S3_* in the environment.
"""

import hashlib
import json
import os
import sys
import time

import boto3
import botocore.config


def client():
    os.environ.pop("AWS_CA_BUNDLE", None)
    return boto3.client("s3", endpoint_url=os.environ["RAT_LAB_S3_ENDPOINT"], region_name="us-east-1",
                        aws_access_key_id=os.environ["RAT_LAB_S3_ACCESS_KEY"],
                        aws_secret_access_key=os.environ["RAT_LAB_S3_SECRET_KEY"],
                        config=botocore.config.Config(s3={"addressing_style": "path"}))


def remove(s3, bucket):
    # Deleting while paginating skips versions past the first page: list the first page again until empty.
    try:
        while True:
            page = s3.list_object_versions(Bucket=bucket)
            items = page.get("Versions", []) + page.get("DeleteMarkers", [])
            if not items:
                break
            s3.delete_objects(Bucket=bucket, Delete={"Objects": [{"Key": i["Key"], "VersionId": i["VersionId"]}
                                                                 for i in items[:1000]], "Quiet": True})
        s3.delete_bucket(Bucket=bucket)
    except s3.exceptions.NoSuchBucket:
        pass


def main():
    s3 = client()
    cmd, args = sys.argv[1], sys.argv[2:]
    if cmd == "create":
        bucket = args[0]
        count = int(args[args.index("--objects") + 1]) if "--objects" in args else 10
        size = int(args[args.index("--size") + 1]) if "--size" in args else 1000
        remove(s3, bucket)
        s3.create_bucket(Bucket=bucket)
        if "--versioned" in args:
            s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
        for i in range(count):
            s3.put_object(Bucket=bucket, Key="data/%04d.bin" % i, Body=os.urandom(size),
                          ContentType="application/octet-stream", Metadata={"n": str(i)})
        for i in range(10):
            s3.put_object(Bucket=bucket, Key="w/%d" % i, Body=b"initial %d" % i)
    elif cmd == "put":
        s3.put_object(Bucket=args[0], Key=args[1], Body=os.urandom(int(args[2])))
    elif cmd == "exists":
        try:
            s3.head_bucket(Bucket=args[0])
            print("present")
        except s3.exceptions.ClientError:
            print("absent")
    elif cmd == "remove":
        for bucket in args:
            remove(s3, bucket)
    elif cmd == "writer":
        bucket, deadline, n = args[0], time.monotonic() + float(args[1]), 0
        while time.monotonic() < deadline:
            n += 1
            s3.put_object(Bucket=bucket, Key="w/%d" % (n % 10), Body=b"rewrite %d " % n * 100)
        print(n)
    elif cmd == "check-versions":
        with open(args[0]) as handle:
            manifest = json.load(handle)
        checked = 0
        for obj in manifest["minio"]["objects"]:
            if not obj.get("version_id"):
                continue
            body = s3.get_object(Bucket=obj["bucket"], Key=obj["key"], VersionId=obj["version_id"])["Body"].read()
            if hashlib.sha256(body).hexdigest() != obj["sha256"]:
                print("MISMATCH %s/%s %s" % (obj["bucket"], obj["key"], obj["version_id"]))
                return 1
            checked += 1
        print("checked %d versioned objects" % checked)
        return 0 if checked else 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
