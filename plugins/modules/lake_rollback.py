#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: rat.backup contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: lake_rollback
short_description: Roll versioned S3 buckets back in place to their state at a point in time
version_added: 0.1.0
description:
  - "Gives each bucket of O(buckets) (only keys under O(prefix)) the state it had at O(as_of), from the
    bucket's own versions (MinIO keeps noncurrent versions when versioning is on): a key whose current
    content differs gets a server-side copy of its version at that time, a key created later gets a
    delete marker. No version is deleted, so the state before the rollback stays in the bucket."
  - Before the first change it writes the pre-change record O(record) (one JSON line per key it changes,
    with the version it had), fsynced. O(undo) with that record puts every key back to that version,
    which is how a rollback is undone.
  - "The state at O(as_of): per key the newest version stamped at or before it. Servers that stamp
    whole seconds (AWS S3, moto) leave the order inside a second unknown: writes stamped in the second
    of O(as_of) count, deletions stamped in it do not. Give a time a second before a change to undo it."
  - Every bucket must be versioned; the rollback refuses before any change otherwise.
  - "It also refuses before any change when O(as_of) cannot be reached, naming how far back each bucket
    reaches: a time before the bucket was created (every key would get a delete marker), and keys whose
    version at O(as_of) may have expired (the bucket's lifecycle removes noncurrent versions after N days;
    a key with no version at O(as_of) whose oldest remaining version was written more than N days ago may
    have replaced one that is gone, and would be deleted instead of brought back). The error names the keys."
  - A change of metadata alone (same bytes and ETag, new Content-Type or user metadata) is rolled back too.
    Where two versions have the same ETag and size, their metadata is compared (one HEAD each).
  - With O(bucket_map), nothing is rolled back in place - each bucket's state at O(as_of) (every key's version
    at that time, a server-side copy with its metadata) is copied into the bucket it maps to, which must exist
    (a drill's scratch bucket); the buckets of O(buckets) are only read. The same refusals apply.
extends_documentation_fragment:
  - rat.backup.attributes
  - rat.backup.s3
  - rat.backup.s3.DEST
options:
  buckets:
    description: Buckets to roll back (with O(as_of)).
    type: list
    elements: str
    default: []
  prefix:
    description: Only keys under this prefix are rolled back.
    type: str
    default: ""
  as_of:
    description: ISO 8601 time to roll back to; a time without a zone is UTC. Must not be in the future.
    type: str
  undo:
    description: A pre-change record written by an earlier run; every key in it is put back to the version it had.
    type: path
  bucket_map:
    description:
      - "Copy the state at O(as_of) of each bucket of O(buckets) into another bucket (C({bucket: target})) instead
        of rolling it back in place. Every bucket of O(buckets) must be mapped, to a bucket not in O(buckets)."
      - The record then lists the copies; it cannot be undone (O(undo) refuses it) and is not needed to.
    type: dict
    default: {}
    version_added: 0.2.0
  record:
    description: Where to write the pre-change record of this run (not written in check mode or when nothing changes).
    type: path
    required: true
  plan_limit:
    description: How many changes RV(plan.changes) lists; the counts are always complete.
    type: int
    default: 1000
attributes:
  check_mode:
    support: full
    details:
      - Lists the versions and returns the exact plan in RV(plan); changes nothing and writes no record.
  diff_mode:
    support: none
  idempotent:
    support: full
    details:
      - A key whose current version is a copy of its old version (same ETag, size and metadata) is left alone,
        so a second rollback to the same time changes nothing.
notes:
  - Stop the writers (RAT's runner) first; a key written between the plan and the copy keeps the newer write
    as a noncurrent version.
  - How far back each bucket can go is shown by M(rat.backup.lake_versions_info).
requirements:
  - boto3 (with botocore) on the managed host
seealso:
  - module: rat.backup.lake_versions_info
author:
  - rat.backup maintainers (@rat-backup)
"""

EXAMPLES = r"""
- name: Roll the lake back to 09:30 UTC
  rat.backup.lake_rollback:
    buckets: [rat]
    as_of: "2026-11-27T09:30:00Z"
    record: /var/backups/rat/pre-restore/lake-20261127_101500.jsonl
    dest_endpoint: http://127.0.0.1:9000
    dest_access_key: "{{ rat_minio_access_key }}"
    dest_secret_key: "{{ rat_minio_secret_key }}"

- name: The state at 09:30 UTC copied into a drill's scratch bucket (bucket rat only read)
  rat.backup.lake_rollback:
    buckets: [rat]
    as_of: "2026-11-27T09:30:00Z"
    bucket_map: {rat: rat-drill-20261127-101500-rat}
    record: /var/tmp/rat-pitr-drill/lake-copy.jsonl
    dest_endpoint: http://127.0.0.1:9000
    dest_access_key: "{{ rat_minio_access_key }}"
    dest_secret_key: "{{ rat_minio_secret_key }}"

- name: Undo that rollback
  rat.backup.lake_rollback:
    undo: /var/backups/rat/pre-restore/lake-20261127_101500.jsonl
    record: /var/backups/rat/pre-restore/lake-20261127_102000.jsonl
    dest_endpoint: http://127.0.0.1:9000
    dest_access_key: "{{ rat_minio_access_key }}"
    dest_secret_key: "{{ rat_minio_secret_key }}"
"""

RETURN = r"""
plan:
  description: What the rollback changes (changed, in check mode what it would change).
  returned: always
  type: dict
  contains:
    to_restore:
      description: Keys given a copy of an old version.
      type: int
    to_delete:
      description: Keys removed (a delete marker) because they did not exist at that time.
      type: int
    to_copy:
      description: With O(bucket_map), keys copied (their version at that time) into the mapped buckets.
      type: int
      version_added: 0.2.0
    changes:
      description:
        - The first O(plan_limit) changes, each with C(bucket), C(key), C(action) (C(restore) or C(delete)),
          C(version_id) (restored), C(size), C(before) (version id before; null when absent), C(before_size).
        - With O(bucket_map), C(action) is C(copy) and C(dest) names the bucket copied into.
      type: list
      elements: dict
    truncated:
      description: Whether RV(plan.changes) lists fewer changes than the counts.
      type: bool
  sample: {"to_restore": 1, "to_delete": 1, "to_copy": 0, "truncated": false, "changes": [
           {"bucket": "rat", "key": "t/metadata/v2.json", "action": "restore", "version_id": "3HL4kqtJlcpXroDTDmJ",
            "size": 812, "before": "Q8v2E4y", "before_size": 901}]}
record:
  description: The pre-change record written (null when nothing changed or in check mode).
  returned: always
  type: str
  sample: /var/backups/rat/pre-restore/lake-20261127_101500.jsonl
as_of:
  description: The time rolled back to, ISO 8601 UTC (null with O(undo)).
  returned: always
  type: str
  sample: "2026-11-27T09:30:00Z"
"""

import datetime
import itertools
import os

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.rat.backup.plugins.module_utils import fs, lake_pitr, s3
from ansible_collections.rat.backup.plugins.module_utils.errors import RatBackupError, exit_with


def argument_spec():
    spec = {
        "buckets": {"type": "list", "elements": "str", "default": []},
        "bucket_map": {"type": "dict", "default": {}},
        "prefix": {"type": "str", "default": ""},
        "as_of": {"type": "str"},
        "undo": {"type": "path"},
        "record": {"type": "path", "required": True},
        "plan_limit": {"type": "int", "default": 1000},
    }
    spec.update(s3.connection_argspec("dest_"))
    spec.update(s3.transport_argspec())
    return spec


def _changes(p, client, endpoint):
    """The planned changes (a stream) and the header of their record."""
    if p["undo"]:
        if os.path.abspath(p["undo"]) == os.path.abspath(p["record"]):
            raise RatBackupError(f"record must not be the record being undone ({p['undo']})")
        return lake_pitr.undo_plan(client, endpoint, p["undo"]), {"undo": p["undo"]}
    moment = lake_pitr.parse_time(p["as_of"])
    now = datetime.datetime.now(datetime.timezone.utc)
    if moment > now:
        raise RatBackupError(f"as_of {p['as_of']} is in the future")
    if not p["buckets"]:
        raise RatBackupError("buckets is empty: name the buckets to roll back")
    limits = []
    for bucket in p["buckets"]:
        lake_pitr.require_versioned(client, endpoint, bucket)
        limits.append(lake_pitr.limits(client, endpoint, bucket, now))
        lake_pitr.check_reachable(limits[-1], moment)
    # The plan is streamed into the record before anything is applied, so a key found unreachable
    # anywhere stops the run with nothing changed.
    targets = lake_pitr.copy_targets(p["buckets"], p["bucket_map"])
    if targets:
        changes = itertools.chain.from_iterable(
            lake_pitr.copy_plan(client, endpoint, limit["bucket"], p["prefix"], moment, targets[limit["bucket"]],
                                limit["horizon"]) for limit in limits)
    else:
        changes = itertools.chain.from_iterable(
            lake_pitr.plan(client, endpoint, limit["bucket"], p["prefix"], moment, limit["horizon"])
            for limit in limits)
    return changes, {"as_of": fs.iso(moment), "buckets": p["buckets"], "prefix": p["prefix"], "bucket_map": targets}


def run(module):
    p = module.params
    if bool(p["as_of"]) == bool(p["undo"]):
        raise RatBackupError("give exactly one of as_of (a time to roll back to) and undo (a record to undo)")
    if p["undo"] and p["bucket_map"]:
        raise RatBackupError("bucket_map copies the state at as_of; it does not go with undo")
    side = s3.connect(p, "dest_")
    client, endpoint = side.client, side.endpoint
    changes, header = _changes(p, client, endpoint)
    result = {"as_of": header.get("as_of"), "record": None}
    if module.check_mode:
        result["plan"] = lake_pitr.summarize(changes, p["plan_limit"])
        result["changed"] = bool(result["plan"]["to_restore"] or result["plan"]["to_delete"] or result["plan"]["to_copy"])
        return result
    header["written_at"] = fs.iso(fs.utcnow())
    lake_pitr.write_record(p["record"], header, changes)
    result["plan"] = lake_pitr.summarize(lake_pitr.read_record(p["record"]), p["plan_limit"])
    result["changed"] = bool(result["plan"]["to_restore"] or result["plan"]["to_delete"] or result["plan"]["to_copy"])
    if not result["changed"]:
        lake_pitr.remove_record(p["record"])
        return result
    lake_pitr.apply(client, endpoint, lake_pitr.read_record(p["record"]))
    result["record"] = p["record"]
    return result


def main():
    # Without boto3, s3.connect fails naming it.
    exit_with(AnsibleModule(argument_spec=argument_spec(), supports_check_mode=True), run)


if __name__ == "__main__":
    main()
