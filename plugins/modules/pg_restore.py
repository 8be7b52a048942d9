#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: rat.backup contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: pg_restore
short_description: Restore a pg_dump archive into PostgreSQL, verified first and all-or-nothing by default
version_added: 0.1.0
description:
  - Verifies the archive before anything in the database is touched - O(src) exists, its SHA-256 matches
    O(expected_sha256) when given, C(pg_restore --list) reads its table of contents and every data block
    can be read and decompressed - then runs C(pg_restore) on this host or inside the database's Docker container.
  - Defaults match RAT's C(make restore) (C(--clean --if-exists --no-owner)), in one transaction so that
    a restore that fails midway leaves the database exactly as it was.
  - Errors are never swallowed - "errors ignored on restore" fails the task unless every error matches
    O(allowed_warnings).
extends_documentation_fragment:
  - rat.backup.postgres
  - rat.backup.attributes
attributes:
  check_mode:
    support: full
    details:
      - Verifies the archive and connects (read-only), then reports what would be restored in RV(restored)
        with C(changed=true); the database is not touched.
  diff_mode:
    support: full
    details:
      - With O(tables) or O(schemas), the diff shows the selected tables' rows in the target (before) and in the
        archive (after), the sequences whose position is set and the large objects restored.
  idempotent:
    support: none
    details:
      - Every run restores the archive again and reports a change.
options:
  src:
    description:
      - The archive - a custom-format file (C(pg_dump -Fc)) or a directory-format directory (host mode only).
      - Plain SQL dumps are refused (restore those with C(psql)).
    type: path
    required: true
  clean:
    description:
      - Drop database objects before recreating them (C(--clean)).
    type: bool
    default: true
  if_exists:
    description:
      - With O(clean), drop with C(IF EXISTS) so objects missing from the database are not errors (C(--if-exists)).
    type: bool
    default: true
  no_owner:
    description:
      - Do not restore object ownership; objects belong to O(user) (C(--no-owner)).
    type: bool
    default: true
  single_transaction:
    description:
      - Restore in one transaction (C(--single-transaction)). The first error rolls everything back, so the
        database is either fully restored or unchanged.
      - Must be V(false) to use O(jobs) greater than 1.
    type: bool
    default: true
  jobs:
    description:
      - Number of parallel restore jobs (C(--jobs)). Faster on large databases but B(not atomic) - a failure
        leaves the database partly restored. Needs O(single_transaction=false).
      - In container mode the archive is first copied into a private temporary directory of the container
        (parallel restore cannot read a pipe) and removed afterwards.
    type: int
    default: 1
  create_database:
    description:
      - Create O(database) first when it does not exist, connecting to O(maintenance_database) to do so.
      - Without it, a missing database is an error.
    type: bool
    default: false
  maintenance_database:
    description:
      - Database to connect to for checking that O(database) exists and creating it (O(create_database)).
    type: str
    default: postgres
  expected_sha256:
    description:
      - SHA-256 the O(src) file must have (for example from a backup's manifest). A mismatch fails before
        the database is touched. Custom-format files only.
      - Outside check mode O(src) is copied into a private directory under O(work_dir) and hashed while it
        is copied; every pg_restore run (table of contents, read-through, restore; on the host or streamed
        into the container) reads that copy. So the bytes restored are the bytes checked, even when O(src)
        changes after the check, and a copy that does not match fails before the database is touched.
    type: str
  work_dir:
    description:
      - Directory for the private copy of O(src) made with O(expected_sha256) (removed afterwards). Needs room
        for the whole dump; the task fails before copying when there is not.
      - Default is the system's temporary directory (C(TMPDIR), else C(/tmp)).
    type: path
  allowed_warnings:
    description:
      - Regular expressions (Python C(re.search)) of pg_restore errors to accept. When every error of a restore
        matches one, the task succeeds, returns them in RV(accepted_errors) and shows each as a warning;
        any other error fails it.
      - Only meaningful with O(single_transaction=false) - in a single transaction the first error already
        rolled the restore back.
    type: list
    elements: str
    default: []
  tables:
    description:
      - Restore only these tables (C(pg_restore -t) semantics), each C(schema.table) or a table name found in one
        schema only. Sequences, views and standalone sequences can be named too.
      - Each comes with what belongs to it in the archive - its owned sequences (serial, identity) and their
        positions, defaults, indexes, constraints, triggers, rules, policies, comments, ACLs - and the large
        objects its oid columns reference. Views that depend on a table whose definition is restored are
        re-created with it (listed in RV(selection.views)).
      - Refused, naming each foreign key, when a foreign key would cross the selection's edge (a selected table
        referencing an unselected one, or an unselected table referencing a selected one), unless
        O(with_referenced). A name the archive lacks is refused naming it. Nothing is touched on a refusal.
      - The selection is restored as the script of its entries piped into C(psql) in one transaction
        (O(single_transaction) and O(jobs) do not apply); the first error rolls it back.
    type: list
    elements: str
    default: []
    version_added: 0.2.0
  schemas:
    description:
      - Restore every relation of these schemas (C(pg_restore -n) semantics), as O(tables) does for one table;
        combinable with O(tables).
    type: list
    elements: str
    default: []
    version_added: 0.2.0
  data_only:
    description:
      - With O(tables)/O(schemas), restore only the rows (and sequence positions, referenced large objects),
        keeping the tables' definitions. The selected tables are emptied first (C(TRUNCATE ONLY)) in the same
        transaction; every one of them must exist in the target.
    type: bool
    default: false
    version_added: 0.2.0
  with_referenced:
    description:
      - With O(tables)/O(schemas), add the tables on the other side of each foreign key that would break, again
        until none would (RV(selection.added) says which and why), instead of refusing.
    type: bool
    default: false
    version_added: 0.2.0
  with_dependencies:
    description:
      - With O(tables)/O(schemas), also restore the types, functions, schemas, extensions and standalone
        sequences the selection needs - for an empty database, such as a scratch database. Always on when
        O(create_database) creates the database.
    type: bool
    default: false
    version_added: 0.2.0
requirements:
  - the PostgreSQL client programs C(pg_restore) and C(psql) on the managed host, of the server's major
    version or newer and no older than the C(pg_dump) that wrote the archive (Debian/Ubuntu
    C(postgresql-client-<major>), found under C(/usr/lib/postgresql/<major>/bin), else on PATH, or
    O(client_bin_dir))
  - in container mode (O(container)) instead, the Docker SDK for Python (C(docker)) on the managed host (the
    client programs run in the container)
seealso:
  - module: rat.backup.pg_dump
  - name: pg_restore
    description: PostgreSQL's pg_restore reference.
    link: https://www.postgresql.org/docs/current/app-pgrestore.html
author:
  - rat.backup maintainers (@rat-backup)
"""

EXAMPLES = r"""
- name: Restore a backup's dump, verified against its manifest
  rat.backup.pg_restore:
    password: "{{ rat_postgres_password }}"
    database: rat
    src: /var/backups/rat/20260216_093000/postgres/rat.dump
    expected_sha256: "{{ manifest.postgres.sha256 }}"

- name: Restore through the PostgreSQL container of RAT's compose stack
  rat.backup.pg_restore:
    container: rat-postgres-1
    user: rat
    password: "{{ rat_postgres_password }}"
    src: /var/backups/rat/20260216_093000/postgres/rat.dump

- name: Fast parallel restore into a fresh database (not atomic)
  rat.backup.pg_restore:
    user: postgres
    password: "{{ admin_password }}"
    database: rat_drill
    create_database: true
    src: /var/backups/rat/20260216_093000/postgres/rat.dump
    single_transaction: false
    jobs: 4
    allowed_warnings:
      - 'extension "plpgsql" already exists'

- name: Preview restoring one table (run with --check --diff)
  rat.backup.pg_restore:
    password: "{{ rat_postgres_password }}"
    src: /var/backups/rat/20260216_093000/postgres/rat.dump
    tables: [public.ownership]
  check_mode: true
  register: preview

- name: Put back the rows of the run history and the tables its foreign keys need
  rat.backup.pg_restore:
    password: "{{ rat_postgres_password }}"
    src: /var/backups/rat/20260216_093000/postgres/rat.dump
    tables: [public.runs]
    data_only: true
    with_referenced: true
"""

RETURN = r"""
src:
  description: The archive restored.
  returned: always
  type: str
  sample: /var/backups/rat/20260216_093000/postgres/rat.dump
database:
  description: Database restored into.
  returned: always
  type: str
  sample: rat
database_created:
  description: Whether the database was created (would be, in check mode).
  returned: always
  type: bool
  sample: false
duration:
  description: Seconds the verification and restore took.
  returned: success and not check mode
  type: float
  sample: 12.5
restored:
  description: Summary of the archive's table of contents - what was (or in check mode would be) restored.
  returned: always
  type: dict
  contains:
    format:
      description: Archive format.
      type: str
      sample: CUSTOM
    dumped_from:
      description: Server version the archive was dumped from.
      type: str
      sample: 15.18 (Debian 15.18-0+deb12u1)
    dumped_by:
      description: pg_dump version that wrote the archive.
      type: str
      sample: 15.18 (Debian 15.18-0+deb12u1)
    source_database:
      description: Name of the database that was dumped.
      type: str
      sample: rat
    entries:
      description: Number of TOC entries.
      type: int
      sample: 42
    counts:
      description: Number of entries by kind (TABLE, TABLE DATA, INDEX, ...).
      type: dict
      sample: {"TABLE": 7, "TABLE DATA": 7, "INDEX": 5}
    tables:
      description: The tables, as C(schema.table).
      type: list
      elements: str
      sample: ["public.pipelines", "public.runs"]
  sample: {"format": "CUSTOM", "entries": 42, "counts": {"TABLE": 7}, "tables": ["public.runs"]}
sha256_checked:
  description: The SHA-256 the restored bytes were checked against (O(expected_sha256)), or null.
  returned: always
  type: str
  sample: 9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08
selection:
  description: With O(tables)/O(schemas), what the selective restore brings back (would, in check mode).
  returned: when O(tables) or O(schemas) is set
  type: dict
  contains:
    tables:
      description: Relations restored, C(schema.name), with those added by O(with_referenced) and dependent views.
      type: list
      elements: str
      sample: ["public.ownership"]
    added:
      description: Tables added by O(with_referenced), each with the foreign key that brought it in.
      type: list
      elements: dict
      sample: [{"table": "public.pipelines", "reason": "runs_pipeline_id_fkey on public.runs references public.pipelines"}]
    views:
      description: Views re-created because they depend on a table whose definition is restored.
      type: list
      elements: str
      sample: ["public.pipeline_run_stats"]
    sequences:
      description: Sequences whose position is restored.
      type: list
      elements: str
      sample: ["public.runs_id_seq"]
    large_objects:
      description: OIDs of the large objects restored (those the selected tables' oid columns reference).
      type: list
      elements: int
      sample: [18351]
    rows:
      description: Rows per table, read from the archive (check mode) or restored.
      type: dict
      sample: {"public.ownership": 54}
    data_only:
      description: Whether only rows were restored.
      type: bool
      sample: false
    supporting:
      description: Types, functions, schemas restored for a new database (O(with_dependencies)).
      type: list
      elements: str
      sample: ["type public.run_status"]
    entries:
      description: Number of TOC entries restored.
      type: int
      sample: 3
    existing:
      description: Selected relations the target database has.
      type: list
      elements: str
      sample: ["public.ownership"]
    missing:
      description: Selected relations the target database lacks (created by the restore).
      type: list
      elements: str
      sample: []
    dump_patterns:
      description: C(pg_dump --table) patterns of RV(selection.existing), for a safety dump of what is replaced.
      type: list
      elements: str
      sample: ['"public"."ownership"']
diff:
  description: With O(tables)/O(schemas), the selected tables' rows in the target (before) and the archive (after).
  returned: when O(tables) or O(schemas) is set and in diff mode
  type: dict
  sample: {"before": "public.ownership: 0 rows\n", "after": "public.ownership: 54 rows\n"}
accepted_errors:
  description: pg_restore errors accepted through O(allowed_warnings).
  returned: always
  type: list
  elements: str
  sample: []
server_version:
  description: Version of the PostgreSQL server.
  returned: always
  type: str
  sample: 15.18 (Debian 15.18-0+deb12u1)
client_version:
  description: Version of the client programs used.
  returned: always
  type: str
  sample: "15.18"
cmd:
  description: The pg_restore argv (planned in check mode), secrets masked.
  returned: always
  type: list
  elements: str
  sample: ["/usr/lib/postgresql/15/bin/pg_restore", "--host", "127.0.0.1", "--port", "5432", "--username", "rat",
           "--dbname", "rat", "--no-password", "--clean", "--if-exists", "--no-owner", "--single-transaction",
           "/var/backups/rat/20260216_093000/postgres/rat.dump"]
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.rat.backup.plugins.module_utils import postgres, postgres_restore
from ansible_collections.rat.backup.plugins.module_utils.errors import exit_with


def argument_spec():
    spec = postgres.connection_argspec()
    spec.update(
        src=dict(type="path", required=True),
        clean=dict(type="bool", default=True),
        if_exists=dict(type="bool", default=True),
        no_owner=dict(type="bool", default=True),
        single_transaction=dict(type="bool", default=True),
        jobs=dict(type="int", default=1),
        create_database=dict(type="bool", default=False),
        maintenance_database=dict(type="str", default="postgres"),
        expected_sha256=dict(type="str"),
        work_dir=dict(type="path"),
        allowed_warnings=dict(type="list", elements="str", default=[]),
        tables=dict(type="list", elements="str", default=[]),
        schemas=dict(type="list", elements="str", default=[]),
        data_only=dict(type="bool", default=False),
        with_referenced=dict(type="bool", default=False),
        with_dependencies=dict(type="bool", default=False),
    )
    return spec


def run(module):
    p = module.params
    spec = postgres_restore.RestoreSpec(
        p["src"], p["clean"], p["if_exists"], p["no_owner"], p["single_transaction"], p["jobs"],
        p["create_database"], p["expected_sha256"], p["allowed_warnings"], p["maintenance_database"],
        p["work_dir"], postgres_restore.selection_from_params(p))
    result = postgres_restore.restore(postgres.client_from_params(p), spec, check_mode=module.check_mode)
    if not module._diff:
        result.pop("diff", None)
    for error in result["accepted_errors"]:
        module.warn(f"pg_restore error accepted by allowed_warnings: {error}")
    result["changed"] = True
    return result


def main():
    module = AnsibleModule(argument_spec=argument_spec(), supports_check_mode=True)
    exit_with(module, run)


if __name__ == "__main__":
    main()
