#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: rat.backup contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: pitr_verify
short_description: Check a database recovered as of a time against that time and the lake copied as of it
version_added: 0.2.0
description:
  - The verdict of a point-in-time drill (the C(rat.backup.restore_drill) role with C(rat_drill_as_of)); it only
    reads.
  - "The recovery point brackets O(as_of): O(reached) (the last transaction replayed) is at or before it, and
    O(next_commit) (the commit recovery stopped before), when known, after it."
  - Every table of the recovered database (the server at O(host):O(port)) is read to its end (exact row counts).
  - Every entry of the Iceberg JDBC catalog table O(catalog_table) in the recovered database points at a metadata
    object that exists in the scratch copy of its bucket (O(bucket_map)), so the database and the lake are of
    the same time. A database without that table has no entry to check.
  - Fails naming every problem found; the tables and catalog entries read are returned either way.
extends_documentation_fragment:
  - rat.backup.postgres
  - rat.backup.attributes
  - rat.backup.attributes.INFO_MODULE
  - rat.backup.s3
  - rat.backup.s3.DEST
options:
  as_of:
    description: The time recovered to, ISO 8601 (a time without a zone is UTC).
    type: str
    required: true
  reached:
    description: The recovery point reached (the C(reached) that M(rat.backup.pitr_recover) returns); empty when unknown.
    type: str
  next_commit:
    description: The commit recovery stopped before (the C(next_commit) of M(rat.backup.pitr_recover)); empty when unknown.
    type: str
  bucket_map:
    description: "The scratch bucket holding the lake as of O(as_of), per live bucket (C({bucket: scratch bucket}))."
    type: dict
    default: {}
  catalog_table:
    description: The Iceberg JDBC catalog's table in the recovered database, C(name) or C(schema.name).
    type: str
    default: iceberg_tables
requirements:
  - boto3 (with botocore) on the managed host, when the catalog has entries
seealso:
  - module: rat.backup.pitr_recover
  - module: rat.backup.lake_rollback
author:
  - rat.backup maintainers (@rat-backup)
"""

EXAMPLES = r"""
- name: The drill's verdict on the scratch server and buckets
  rat.backup.pitr_verify:
    host: 127.0.0.1
    port: "{{ recovered.port }}"
    user: rat
    password: "{{ rat_postgres_password }}"
    as_of: "{{ recovered.as_of }}"
    reached: "{{ recovered.reached }}"
    next_commit: "{{ recovered.next_commit }}"
    bucket_map: {rat: rat-drill-20261206-140500-rat}
    dest_endpoint: http://127.0.0.1:9000
    dest_access_key: "{{ rat_minio_access_key }}"
    dest_secret_key: "{{ rat_minio_secret_key }}"
"""

RETURN = r"""
tables:
  description: Exact rows of every table of the recovered database, by C(schema.table).
  returned: always
  type: dict
  sample: {"public.pipelines": 12, "public.runs": 3400}
catalog:
  description: The catalog's entries, each with C(catalog_name), C(namespace), C(name), C(metadata_location).
  returned: always
  type: list
  elements: dict
  sample: [{"catalog_name": "rat", "namespace": "ecommerce", "name": "orders",
            "metadata_location": "s3://rat/ecommerce/orders/metadata/00003-1b2c.metadata.json"}]
problems:
  description: What does not hold, in words (empty when the drill passes).
  returned: always
  type: list
  elements: str
  sample: []
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.rat.backup.plugins.module_utils import compare, lake_pitr, lake_select, postgres, s3
from ansible_collections.rat.backup.plugins.module_utils.pitr import verify
from ansible_collections.rat.backup.plugins.module_utils.errors import RatBackupError, exit_with


def argument_spec():
    spec = postgres.connection_argspec()
    spec.update(
        as_of=dict(type="str", required=True),
        reached=dict(type="str"),
        next_commit=dict(type="str"),
        bucket_map=dict(type="dict", default={}),
        catalog_table=dict(type="str", default=lake_select.CATALOG_TABLE),
    )
    spec.update(s3.connection_argspec("dest_"))
    spec.update(s3.transport_argspec())
    return spec


def _time(text, name):
    return lake_pitr.parse_time(text, name) if text else None


def run(module):
    p = module.params
    problems = verify.recovery_problems(_time(p["as_of"], "as_of"), _time(p["reached"], "reached"),
                                        _time(p["next_commit"], "next_commit"))
    session = postgres.client_from_params(p).open_session()
    try:
        tables = postgres.count_rows(session, session.query(compare.USER_TABLES_SQL))
        entries = lake_select.Catalog(session, p["catalog_table"]).entries()
    finally:
        session.close()
    if entries:
        side = s3.connect(p, "dest_")

        def exists(bucket, key):
            found = s3.get_object(side.client, side.endpoint, bucket, key, missing_ok=True)
            if found is not None:
                found["Body"].close()
            return found is not None
        problems += verify.catalog_problems(entries, {str(k): str(v) for k, v in p["bucket_map"].items()}, exists)
    result = {"changed": False, "tables": tables, "catalog": entries, "problems": problems}
    if problems:
        raise RatBackupError("; ".join(problems), **result)
    return result


def main():
    exit_with(AnsibleModule(argument_spec=argument_spec(), supports_check_mode=True), run)


if __name__ == "__main__":
    main()
