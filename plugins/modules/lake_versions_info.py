#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: rat.backup contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: lake_versions_info
short_description: Show how far back the versions of S3 buckets reach
version_added: 0.1.0
description:
  - For each bucket, its versioning status, how many versions and delete markers it keeps, the oldest
    version's time and the bucket's noncurrent-version expiry, so an operator knows whether a time is
    still recoverable with M(rat.backup.lake_rollback).
  - Lists every version once, streamed (memory does not grow with the bucket).
extends_documentation_fragment:
  - rat.backup.attributes
  - rat.backup.attributes.INFO_MODULE
  - rat.backup.s3
  - rat.backup.s3.DEST
options:
  buckets:
    description: Buckets to look at; empty means every bucket of the endpoint.
    type: list
    elements: str
    default: []
notes:
  - C(recoverable_since) is the later of the oldest version kept and now minus the noncurrent expiry; a
    version replaced longer ago than the expiry is gone even when older ones of other keys remain, so a time
    before it can only be restored partially.
requirements:
  - boto3 (with botocore) on the managed host
seealso:
  - module: rat.backup.lake_rollback
author:
  - rat.backup maintainers (@rat-backup)
"""

EXAMPLES = r"""
- name: How far back can the lake be rolled?
  rat.backup.lake_versions_info:
    dest_endpoint: http://127.0.0.1:9000
    dest_access_key: "{{ rat_minio_access_key }}"
    dest_secret_key: "{{ rat_minio_secret_key }}"
  register: reach
"""

RETURN = r"""
buckets:
  description: One entry per bucket.
  returned: always
  type: list
  elements: dict
  contains:
    bucket:
      description: Bucket name.
      type: str
    versioning:
      description: C(enabled) (versioning enabled or suspended, so versions are kept) or C(disabled).
      type: str
    versions:
      description: Versions kept (current and noncurrent).
      type: int
    noncurrent_versions:
      description: Versions that are not the current one.
      type: int
    delete_markers:
      description: Delete markers kept.
      type: int
    oldest_version:
      description: Time of the oldest version kept, ISO 8601 UTC.
      type: str
    noncurrent_expiry_days:
      description: Days after which the bucket's lifecycle removes noncurrent versions (null when none).
      type: int
    recoverable_since:
      description: The earliest time a rollback can reach (null for an unversioned bucket).
      type: str
  sample: [{"bucket": "rat", "versioning": "enabled", "versions": 1200, "noncurrent_versions": 310,
            "delete_markers": 12, "oldest_version": "2026-11-20T10:00:00Z", "noncurrent_expiry_days": 7,
            "recoverable_since": "2026-11-20T10:00:00Z"}]
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.rat.backup.plugins.module_utils import fs, lake_pitr, s3
from ansible_collections.rat.backup.plugins.module_utils.errors import exit_with


def argument_spec():
    spec = {"buckets": {"type": "list", "elements": "str", "default": []}}
    spec.update(s3.connection_argspec("dest_"))
    spec.update(s3.transport_argspec())
    return spec


def run(module):
    p = module.params
    side = s3.connect(p, "dest_")
    client, endpoint = side.client, side.endpoint
    buckets = p["buckets"] or sorted(s3.bucket_names(client, endpoint))
    now = fs.utcnow()
    return {"changed": False, "buckets": [lake_pitr.reach(client, endpoint, b, now) for b in buckets]}


def main():
    # Without boto3, s3.connect fails naming it.
    exit_with(AnsibleModule(argument_spec=argument_spec(), supports_check_mode=True), run)


if __name__ == "__main__":
    main()
