# -*- coding: utf-8 -*-
# Copyright: rat.backup contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""What the drill test reads from the fleet, printed as JSON.

    fleet_state.py scratch PORT [NETNS|-] ...   {port: [rat_drill_* databases]} and the rat-drill-* buckets
    fleet_state.py junit FILE                   {host: failure message or null} of a JUnit report

Databases are listed as the cluster's superuser over its socket directory (FLEET_PGROOT); the
namespaced cluster is asked from inside its namespace. The container's cluster through docker exec.
"""

import json
import os
import subprocess
import sys
import xml.etree.ElementTree as ET

import boto3
import botocore.config

SQL = "SELECT datname FROM pg_database WHERE datname LIKE 'rat_drill_%' ORDER BY 1"


def databases(port, where):
    if where.startswith("container:"):
        argv = ["docker", "-H", os.environ["RAT_LAB_DOCKER_HOST"], "exec", where.split(":", 1)[1],
                "psql", "-X", "-A", "-t", "-p", port, "-U", "postgres", "-d", "postgres", "-c", SQL]
    else:
        argv = ["runuser", "-u", "postgres", "--", os.path.join(os.environ["RAT_LAB_PG_BIN"], "psql"), "-X", "-A",
                "-t", "-h", os.environ["FLEET_PGROOT"], "-p", port, "-U", "postgres", "-d", "postgres", "-c", SQL]
        if where != "-":
            argv = ["ip", "netns", "exec", where] + argv
    return subprocess.run(argv, check=True, capture_output=True, text=True, cwd="/").stdout.split()


def buckets():
    os.environ.pop("AWS_CA_BUNDLE", None)
    client = boto3.client("s3", endpoint_url=os.environ["RAT_LAB_S3_ENDPOINT"], region_name="us-east-1",
                          aws_access_key_id=os.environ["RAT_LAB_S3_ACCESS_KEY"],
                          aws_secret_access_key=os.environ["RAT_LAB_S3_SECRET_KEY"],
                          config=botocore.config.Config(s3={"addressing_style": "path"}))
    return sorted(b["Name"] for b in client.list_buckets()["Buckets"] if b["Name"].startswith("rat-drill-"))


def junit(path):
    cases = ET.parse(path).getroot().iter("testcase")
    return {c.get("name"): (c.find("failure").get("message") if c.find("failure") is not None else None)
            for c in cases}


if __name__ == "__main__":
    if sys.argv[1] == "scratch":
        pairs = sys.argv[2:]
        print(json.dumps({"databases": {p: databases(p, w) for p, w in zip(pairs[::2], pairs[1::2])},
                          "buckets": buckets()}))
    else:
        print(json.dumps(junit(sys.argv[2])))
