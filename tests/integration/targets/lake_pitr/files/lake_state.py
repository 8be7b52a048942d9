# -*- coding: utf-8 -*-
# Copyright: rat.backup contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""A bucket's current objects as JSON: key -> sha256, size, content type, user metadata.

    lake_state.py BUCKET       settings from RAT_LAB_* in the environment
"""

import hashlib
import json
import os
import sys

import boto3
import botocore.config


def main():
    os.environ.pop("AWS_CA_BUNDLE", None)
    s3 = boto3.client("s3", endpoint_url=os.environ["RAT_LAB_S3_ENDPOINT"], region_name="us-east-1",
                      aws_access_key_id=os.environ["RAT_LAB_S3_ACCESS_KEY"],
                      aws_secret_access_key=os.environ["RAT_LAB_S3_SECRET_KEY"],
                      config=botocore.config.Config(s3={"addressing_style": "path"}))
    state = {}
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=sys.argv[1]):
        for item in page.get("Contents", ()):
            got = s3.get_object(Bucket=sys.argv[1], Key=item["Key"])
            body = got["Body"].read()
            state[item["Key"]] = {"sha256": hashlib.sha256(body).hexdigest(), "size": len(body),
                                  "content_type": got.get("ContentType"), "metadata": got.get("Metadata")}
    print(json.dumps(state, sort_keys=True))


if __name__ == "__main__":
    main()
