# -*- coding: utf-8 -*-
# Copyright: rat.backup contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""A bucket of the awkward-key corpus (the unit tests' s3_servers.CORPUS) on an S3 server, and `rclone
serve s3` as a second server, for the s3_awkward_keys target.

    awkward.py serve PORT                  starts rclone serve s3 (the lab's keys); prints {"pid", "dir"}
    awkward.py stop PID DIR                ends it and removes its directory
    awkward.py fill ENDPOINT BUCKET        the corpus, each key with its own bytes, content type, metadata;
                                           prints {key: error code} of the keys the server refuses
    awkward.py damage ENDPOINT BUCKET      deletes three keys, rewrites one, adds two
    awkward.py state ENDPOINT BUCKET       {key: [sha256, content type, metadata]} as JSON
    awkward.py remove ENDPOINT BUCKET      empties and removes the bucket
Credentials from RAT_LAB_S3_ACCESS_KEY / RAT_LAB_S3_SECRET_KEY.
"""

import hashlib
import json
import os
import shutil
import signal
import sys

import boto3
import botocore.config
import botocore.exceptions


def _unit_helpers():
    """The unit tests' helper directory: ansible-test runs a copy of this target elsewhere, so the
    collection root is found as the nearest parent directory holding it."""
    here = os.path.dirname(os.path.abspath(__file__))
    while True:
        candidate = os.path.join(here, "tests", "unit", "plugins", "module_utils")
        if os.path.exists(os.path.join(candidate, "s3_servers.py")):
            return candidate
        if os.path.dirname(here) == here:
            raise SystemExit("awkward.py: tests/unit/plugins/module_utils/s3_servers.py not found above " + __file__)
        here = os.path.dirname(here)


sys.path.insert(0, _unit_helpers())
import s3_servers  # noqa: E402  pylint: disable=wrong-import-position

KEY, SECRET = os.environ["RAT_LAB_S3_ACCESS_KEY"], os.environ["RAT_LAB_S3_SECRET_KEY"]


def client(endpoint):
    os.environ.pop("AWS_CA_BUNDLE", None)
    return boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1", aws_access_key_id=KEY,
                        aws_secret_access_key=SECRET, config=botocore.config.Config(s3={"addressing_style": "path"}))


def keys(s3, bucket):
    return [o["Key"] for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket)
            for o in page.get("Contents", ())]


def remove(s3, bucket):
    if bucket in [b["Name"] for b in s3.list_buckets()["Buckets"]]:
        for key in keys(s3, bucket):
            s3.delete_object(Bucket=bucket, Key=key)
        s3.delete_bucket(Bucket=bucket)


def put(s3, bucket, key, salt=b""):
    s3.put_object(Bucket=bucket, Key=key, Body=salt + hashlib.sha256(key.encode()).digest() * 30 + key.encode(),
                  ContentType="text/x-rat; k=%d" % len(key), Metadata={"owner": "rat", "n": str(len(key))})


def main(command, *args):
    if command == "serve":
        server = s3_servers.Rclone(int(args[0]), KEY, SECRET, detach=True)
        print(json.dumps({"pid": server.proc.pid, "dir": server.dir}))
        return
    if command == "stop":
        try:
            os.kill(int(args[0]), signal.SIGTERM)
        except ProcessLookupError:
            pass
        shutil.rmtree(args[1], ignore_errors=True)
        if os.path.exists(args[1] + ".log"):
            os.unlink(args[1] + ".log")
        return
    s3, bucket = client(args[0]), args[1]
    if command == "fill":
        remove(s3, bucket)
        s3.create_bucket(Bucket=bucket)
        refused = {}
        for key in s3_servers.CORPUS:
            try:
                put(s3, bucket, key)
            except botocore.exceptions.ClientError as exc:
                # Where the server takes no such key (rclone: "//", a trailing "/").
                refused[key] = exc.response["Error"]["Code"]
        print(json.dumps(refused))
    elif command == "damage":
        for key in ("landing/a b+c=d&e.csv", "sp ace", "ünïcødé/ключ/鍵.bin"):
            s3.delete_object(Bucket=bucket, Key=key)
        put(s3, bucket, "plus+only", salt=b"changed")
        put(s3, bucket, "added after backup+1.csv")
        put(s3, bucket, "landing/added b+c")
    elif command == "state":
        state = {}
        for key in keys(s3, bucket):
            got = s3.get_object(Bucket=bucket, Key=key)
            state[key] = [hashlib.sha256(got["Body"].read()).hexdigest(), got.get("ContentType"),
                          {k.lower(): v for k, v in got.get("Metadata", {}).items()}]
        print(json.dumps(state, sort_keys=True))
    elif command == "remove":
        remove(s3, bucket)


if __name__ == "__main__":
    main(*sys.argv[1:])
