# -*- coding: utf-8 -*-
# Copyright: rat.backup contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Buckets and checks for the bucket_mirror target. Object bodies derive from their key, so a
test can tell a complete file from a truncated one without asking the server.

    mirror_fixture.py seed BUCKET [--versioned] [--tricky] [--small N] [--size BYTES] [--large N]
    mirror_fixture.py rewrite BUCKET KEY          same size, new bytes
    mirror_fixture.py compare BUCKET_A BUCKET_B   same keys, bytes, attributes (JSON report)
    mirror_fixture.py complete DIR BUCKET         every file under DIR/BUCKET holds its key's bytes
    mirror_fixture.py keys BUCKET                 JSON list of the keys
    mirror_fixture.py delete BUCKET KEY
    mirror_fixture.py remove BUCKET...
    mirror_fixture.py serve PORT LOG [--auth]     start a moto_server, print its pid
    mirror_fixture.py kill-when DIR N PID SECS    kill -9 PID once DIR holds N files (bounded wait)
Endpoint and credentials from MIRROR_ENDPOINT, RAT_LAB_S3_ACCESS_KEY, RAT_LAB_S3_SECRET_KEY.
"""

import hashlib
import json
import os
import socket
import subprocess
import sys
import time

TRICKY = ["a", "a/b", "../escape", "x/../../y", "/lead", "trail/", "dbl//slash", "s" * 300,
          ".rat-keys/z", "space name/ü.txt", "empty", "ctl\x01char", "deep/" * 20 + "leaf.csv"]


def client():
    os.environ.pop("AWS_CA_BUNDLE", None)
    import boto3
    import botocore.config
    return boto3.client("s3", endpoint_url=os.environ["MIRROR_ENDPOINT"], region_name="us-east-1",
                        aws_access_key_id=os.environ["RAT_LAB_S3_ACCESS_KEY"],
                        aws_secret_access_key=os.environ["RAT_LAB_S3_SECRET_KEY"],
                        config=botocore.config.Config(s3={"addressing_style": "path"}))


def body(key, size, salt=b""):
    if key == "empty":
        return b""
    block = hashlib.sha256(salt + key.encode("utf-8")).digest()
    return (block * (size // len(block) + 1))[:size]


def seed(s3, args):
    bucket = args[0]
    s3.create_bucket(Bucket=bucket)
    if "--versioned" in args:
        s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})

    def option(name, default):
        return int(args[args.index(name) + 1]) if name in args else default

    size = option("--size", 100)
    keys = ["obj/{0:05d}.bin".format(i) for i in range(option("--small", 0))]
    # moto cannot list versions of keys with control characters (it does not URL-encode them).
    keys += [k for k in TRICKY if "--versioned" not in args or "\x01" not in k] if "--tricky" in args else []
    for key in keys:
        s3.put_object(Bucket=bucket, Key=key, Body=body(key, size), ContentType="text/csv",
                      CacheControl="max-age=60", ContentDisposition="inline", Metadata={"origin": "fixture"})
    from boto3.s3.transfer import TransferConfig
    import io
    for i in range(option("--large", 0)):
        key = "large/{0}.bin".format(i)
        s3.upload_fileobj(io.BytesIO(body(key, 20 << 20)), bucket, key, ExtraArgs={"ContentType": "application/x-bin"},
                          Config=TransferConfig(multipart_threshold=8 << 20, multipart_chunksize=8 << 20))


def attributes(s3, bucket, key):
    got = s3.get_object(Bucket=bucket, Key=key)
    return {"sha256": hashlib.sha256(got["Body"].read()).hexdigest(), "type": got.get("ContentType"),
            "cache": got.get("CacheControl"), "disposition": got.get("ContentDisposition"),
            "metadata": got.get("Metadata")}


def listing(s3, bucket):
    keys = []
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket):
        keys.extend(o["Key"] for o in page.get("Contents", []))
    return keys


def compare(s3, a, b):
    keys_a, keys_b = listing(s3, a), listing(s3, b)
    differ = [k for k in set(keys_a) & set(keys_b) if attributes(s3, a, k) != attributes(s3, b, k)]
    print(json.dumps({"only_a": sorted(set(keys_a) - set(keys_b)), "only_b": sorted(set(keys_b) - set(keys_a)),
                      "differ": sorted(differ), "count": len(keys_a)}))


def complete(root, bucket):
    """Files present must be whole; the count of them is printed."""
    base = os.path.join(root, bucket)
    count = 0
    bad = []
    for dirpath, dummy, files in os.walk(base):
        for name in files:
            path = os.path.join(dirpath, name)
            key = os.path.relpath(path, base)
            size = 20 << 20 if key.startswith("large/") else int(os.environ.get("MIRROR_SIZE", "100"))
            with open(path, "rb") as handle:
                if handle.read() != body(key, size):
                    bad.append(key)
            count += 1
    print(json.dumps({"files": count, "bad": bad}))


def remove(s3, buckets):
    for bucket in buckets:
        try:
            for page in s3.get_paginator("list_object_versions").paginate(Bucket=bucket):
                for item in page.get("Versions", []) + page.get("DeleteMarkers", []):
                    s3.delete_object(Bucket=bucket, Key=item["Key"], VersionId=item["VersionId"])
            s3.delete_bucket(Bucket=bucket)
        except s3.exceptions.NoSuchBucket:
            pass


def serve(port, log, extra_env):
    env = dict(os.environ, **extra_env)
    moto = os.path.join(os.path.dirname(sys.executable), "moto_server")
    with open(log, "ab") as out:
        proc = subprocess.Popen([moto, "-H", "127.0.0.1", "-p", port], stdout=out, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, env=env, start_new_session=True)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", int(port))) == 0:
                print(proc.pid)
                return
        time.sleep(0.2)
    proc.kill()
    sys.exit("moto_server did not start on port {0}".format(port))


def kill_when(directory, count, pid, seconds):
    """Kill the server the moment transfers are under way; Ansible retries would react too late."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        found = sum(len(files) for dummy, dummy2, files in os.walk(directory))
        if found >= count:
            os.kill(pid, 9)
            print(found)
            return
        time.sleep(0.02)
    sys.exit("{0} never held {1} files".format(directory, count))


def main():
    cmd, args = sys.argv[1], sys.argv[2:]
    if cmd == "kill-when":
        return kill_when(args[0], int(args[1]), int(args[2]), float(args[3]))
    if cmd == "serve":
        extra = {"INITIAL_NO_AUTH_ACTION_COUNT": "0"} if "--auth" in args else {}
        return serve(args[0], args[1], extra)
    if cmd == "complete":
        return complete(args[0], args[1])
    s3 = client()
    if cmd == "seed":
        seed(s3, args)
    elif cmd == "rewrite":
        old = s3.get_object(Bucket=args[0], Key=args[1])["Body"].read()
        s3.put_object(Bucket=args[0], Key=args[1], Body=body(args[1], len(old), b"rewritten"))
    elif cmd == "keys":
        print(json.dumps(sorted(listing(s3, args[0]))))
    elif cmd == "delete":
        s3.delete_object(Bucket=args[0], Key=args[1])
    elif cmd == "compare":
        compare(s3, args[0], args[1])
    elif cmd == "remove":
        remove(s3, args)
    else:
        sys.exit("unknown command " + cmd)
    return None


if __name__ == "__main__":
    main()
