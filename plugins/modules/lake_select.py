#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: rat.backup contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: lake_select
short_description: Plan a selective lake restore (bucket prefixes, Iceberg tables) and move an Iceberg table's catalog entry back
version_added: 0.2.0
description:
  - Reads one backup's C(manifest.json) and finds what each selection names, before anything is changed.
    A prefix C(bucket/prefix) must name a bucket of the backup, and a non-empty prefix must hold objects in it;
    otherwise the module fails naming every selection at fault ("not in backup", "outside backup").
  - An Iceberg table C(namespace.table) is looked up in the JDBC catalog table (O(catalog_table)) as the backup's
    dump holds it; the metadata file its entry names is read from the backup (checked against the manifest) for
    the table's C(location), and the objects under that location become one more selection. The live catalog
    entry is read too (C(live_metadata_location) in RV(tables)).
  - With O(commit=true), moves each table's live entry to the backup's metadata file through the JDBC catalog's
    own commit, a compare-and-swap C(UPDATE ... WHERE metadata_location = <expected>) (a dropped table is
    registered again by an C(INSERT), as the catalog's C(registerTable) does). Run it only after the table's
    files are back in the lake, so the catalog never names a metadata file the lake lacks. When the entry is no
    longer O(expected_metadata) (another writer committed since the plan), nothing is changed and the module
    fails saying so.
  - No other catalog table is written.
options:
  path:
    description: The backup directory (C(<root>/<name>)) whose manifest, dump and files are read.
    type: path
    required: true
  prefixes:
    description: Selections C(bucket/prefix) (C(rat/ecommerce/)); C(bucket/) alone is the whole bucket.
    type: list
    elements: str
    default: []
  tables:
    description: Iceberg tables C(namespace.table) (a nested namespace as C(a.b.table)).
    type: list
    elements: str
    default: []
  catalog_name:
    description:
      - The JDBC catalog's name (column C(catalog_name)). Unset, the table's one entry in the backup is used;
        a table held by several catalogs is refused until this names one.
    type: str
  catalog_table:
    description: The JDBC catalog's table in the database, C(name) or C(schema.name).
    type: str
    default: iceberg_tables
  commit:
    description: Move the tables' catalog entries to the backup's metadata files (compare-and-swap).
    type: bool
    default: false
  expected_metadata:
    description:
      - "With O(commit), C({namespace.table: metadata location}) as the plan read it (null for a table missing
        from the live catalog); the commit succeeds only from there."
    type: dict
    default: {}
extends_documentation_fragment:
  - rat.backup.attributes
  - rat.backup.postgres
attributes:
  check_mode:
    support: full
    details:
      - With O(commit), reports which entries would move; changes nothing.
  diff_mode:
    support: none
  idempotent:
    support: full
    details:
      - An entry already at the backup's metadata file is left alone and reported unchanged.
notes:
  - The PostgreSQL connection is used only for O(tables); the catalog must live in the database the backup dumped.
  - "RAT's Nessie catalog has no JDBC table: its entry moves through Nessie's REST API (see the selective restore
    page of the docs)."
requirements:
  - C(psql) and C(pg_restore) on the managed host (or in the container, in container mode) for O(tables)
seealso:
  - module: rat.backup.bucket_mirror
author:
  - rat.backup maintainers (@rat-backup)
"""

EXAMPLES = r"""
- name: What the selections name in the backup (refuses unknown buckets, prefixes outside it)
  rat.backup.lake_select:
    path: /var/backups/rat/20260216_093000
    prefixes: [rat/ecommerce/landing/]
    tables: [ecommerce.orders]
    password: "{{ rat_postgres_password }}"
  register: plan

- name: Move the table's catalog entry back (after its files were put back)
  rat.backup.lake_select:
    path: /var/backups/rat/20260216_093000
    tables: [ecommerce.orders]
    commit: true
    expected_metadata: "{{ dict(plan.tables | map(attribute='name') | zip(plan.tables | map(attribute='live_metadata_location'))) }}"
    password: "{{ rat_postgres_password }}"
"""

RETURN = r"""
selections:
  description: Every prefix to restore (the tables' locations included), with what the backup holds under it.
  returned: always
  type: list
  elements: dict
  sample: [{"bucket": "rat", "prefix": "ecommerce/landing/", "objects": 40, "bytes": 81920, "table": null},
           {"bucket": "rat", "prefix": "ecommerce/warehouse/orders/", "objects": 12, "bytes": 4096,
            "table": "ecommerce.orders"}]
tables:
  description: Each Iceberg table with its catalog entry in the backup and live.
  returned: always
  type: list
  elements: dict
  sample: [{"name": "ecommerce.orders", "catalog_name": "rat", "namespace": "ecommerce", "table": "orders",
            "bucket": "rat", "prefix": "ecommerce/warehouse/orders/",
            "metadata_location": "s3://rat/ecommerce/warehouse/orders/metadata/00003-a.metadata.json",
            "live_metadata_location": "s3://rat/ecommerce/warehouse/orders/metadata/00004-b.metadata.json",
            "moved": true}]
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.rat.backup.plugins.module_utils import lake_select, postgres
from ansible_collections.rat.backup.plugins.module_utils.errors import exit_with


def argument_spec():
    spec = postgres.connection_argspec()
    spec.update(
        path=dict(type="path", required=True),
        prefixes=dict(type="list", elements="str", default=[]),
        tables=dict(type="list", elements="str", default=[]),
        catalog_name=dict(type="str"),
        catalog_table=dict(type="str", default=lake_select.CATALOG_TABLE),
        commit=dict(type="bool", default=False),
        expected_metadata=dict(type="dict", default={}),
    )
    return spec


def run(module):
    p = module.params
    plan = lake_select.Plan(p["path"], [lake_select.parse_prefix(t) for t in p["prefixes"]],
                            [lake_select.parse_table(t) for t in p["tables"]], p["catalog_name"], p["catalog_table"])
    if not p["tables"]:
        return plan.run(None)
    client = postgres.client_from_params(p)
    session = client.open_session()
    try:
        result = plan.run(lake_select.Catalog(session, p["catalog_table"]), client)
        if p["commit"]:
            result["changed"] = plan.commit(p["expected_metadata"], module.check_mode)
    finally:
        session.close()
    return result


def main():
    exit_with(AnsibleModule(argument_spec=argument_spec(), supports_check_mode=True), run)


if __name__ == "__main__":
    main()
