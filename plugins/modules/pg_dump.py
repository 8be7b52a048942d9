#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: rat.backup contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: pg_dump
short_description: Dump a PostgreSQL database with row counts taken at the dump's snapshot
version_added: 0.1.0
description:
  - Runs C(pg_dump) on this host, writing the archive itself into O(dest) (its output is the file, opened
    0600), or inside the database's Docker container, its output streamed into O(dest) with bounded memory.
    The archive's SHA-256 is computed once it is on disk.
  - Holds a C(REPEATABLE READ) transaction open in a C(psql) session, exports its snapshot, dumps at that
    snapshot and counts the rows of every table the dump holds in the same transaction, so the counts
    describe exactly the data in the archive.
  - Picks the client matching the server's major version, and refuses to dump with a client older than
    the server.
  - Writes O(dest).partial, fsyncs it and renames it to O(dest) only when the dump is complete; on any failure
    the partial file is removed and an existing O(dest) is left as it was.
extends_documentation_fragment:
  - rat.backup.postgres
  - rat.backup.attributes
attributes:
  check_mode:
    support: full
    details:
      - Connects (read-only) to learn the server version and check the client, then reports the planned
        command with C(changed=true); writes nothing.
  diff_mode:
    support: none
  idempotent:
    support: none
    details:
      - Every run produces a new dump and reports a change.
options:
  dest:
    description:
      - Path of the archive to write. A file for O(format=custom), a directory for O(format=directory).
      - Its parent directory must exist. An existing O(dest) is replaced once the new dump is complete.
    type: path
    required: true
  format:
    description:
      - C(custom) (C(pg_dump -Fc)) is one file, what RAT's C(make backup) writes, and works in container mode.
      - C(directory) (C(pg_dump -Fd)) is one file per table and allows parallel dumps with O(jobs); host mode only.
    type: str
    choices: [custom, directory]
    default: custom
  jobs:
    description:
      - Number of tables dumped in parallel. More than 1 needs O(format=directory).
    type: int
    default: 1
  compress:
    description:
      - Compression level 0 (none) to 9. Default is pg_dump's own.
    type: int
  schemas:
    description:
      - Dump only these schemas (C(--schema), patterns as pg_dump understands them).
    type: list
    elements: str
    default: []
  exclude_schemas:
    description:
      - Do not dump these schemas (C(--exclude-schema)).
    type: list
    elements: str
    default: []
  tables:
    description:
      - Dump only these tables (C(--table)).
    type: list
    elements: str
    default: []
  exclude_tables:
    description:
      - Do not dump these tables (C(--exclude-table)).
    type: list
    elements: str
    default: []
  exclude_table_data:
    description:
      - Dump the definition but not the rows of these tables (C(--exclude-table-data)).
    type: list
    elements: str
    default: []
  link_dest:
    description:
      - A previous custom-format dump, typically the same database's dump in the previous backup.
      - When the new dump equals it byte for byte except for the creation time pg_dump writes into the
        archive header, the new dump is replaced by a hard link to it, so an unchanged database costs no
        extra disk. The result then says RV(linked=true) and RV(sha256) is the linked file's.
      - The row counts are still those of the new snapshot, which holds the same rows.
      - Nothing is linked (the new dump is kept) when O(link_dest) does not exist, is a symbolic link, is not a
        custom-format archive, differs in anything else, or is on another filesystem.
      - Needs O(format=custom).
    type: path
notes:
  - Each list item is passed to pg_dump as one argument, so names with spaces or quotes need no shell quoting.
  - When the dump is hard-linked to O(link_dest), C(pg_restore --list) shows the creation time of that older
    dump (C(Archive created at)), and the file keeps its modification time; the data is the new snapshot's.
  - The returned result is also written beside the dump as C(<dest>.json) (0600), so a later step
    (M(rat.backup.backup_run) with O(rat.backup.backup_run#module:state=commit)) reads it from disk.
requirements:
  - the PostgreSQL client programs C(pg_dump) and C(psql) on the managed host, of the server's major version
    or newer (Debian/Ubuntu C(postgresql-client-<major>), found under C(/usr/lib/postgresql/<major>/bin), else
    on PATH, or O(client_bin_dir))
  - in container mode (O(container)) instead, the Docker SDK for Python (C(docker)) on the managed host (the
    client programs run in the container)
seealso:
  - module: rat.backup.pg_restore
  - name: pg_dump
    description: PostgreSQL's pg_dump reference.
    link: https://www.postgresql.org/docs/current/app-pgdump.html
author:
  - rat.backup maintainers (@rat-backup)
"""

EXAMPLES = r"""
- name: Dump the RAT database on the host
  rat.backup.pg_dump:
    host: 127.0.0.1
    port: 5432
    user: rat
    password: "{{ rat_postgres_password }}"
    database: rat
    dest: /var/backups/rat/20260216_093000.partial/postgres/rat.dump
  register: dump

- name: Dump through the PostgreSQL container of RAT's compose stack
  rat.backup.pg_dump:
    container: rat-postgres-1
    user: rat
    password: "{{ rat_postgres_password }}"
    dest: /var/backups/rat/rat.dump

- name: Dump into a new backup, hard-linked to the previous backup's dump when the data is unchanged
  rat.backup.pg_dump:
    password: "{{ rat_postgres_password }}"
    dest: /var/backups/rat/20260217_093000.partial/postgres/rat.dump
    link_dest: /var/backups/rat/20260216_093000/postgres/rat.dump
  register: dump

- name: Parallel directory-format dump without the run logs' rows
  rat.backup.pg_dump:
    password: "{{ rat_postgres_password }}"
    dest: /var/backups/rat/rat.dir
    format: directory
    jobs: 4
    exclude_table_data:
      - public.run_logs
"""

RETURN = r"""
dest:
  description: Path of the archive written.
  returned: always
  type: str
  sample: /var/backups/rat/rat.dump
format:
  description: Archive format.
  returned: always
  type: str
  sample: custom
size:
  description: Size of the archive in bytes (all files for the directory format).
  returned: success and not check mode
  type: int
  sample: 1048576
sha256:
  description: SHA-256 of the archive file as written to disk (of O(link_dest) when RV(linked)).
  returned: success, not check mode, format=custom
  type: str
  sample: 9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08
files:
  description: SHA-256 of each file of a directory-format archive, by file name.
  returned: success, not check mode, format=directory
  type: dict
  sample: {"toc.dat": "2c26b46b68ffc68ff99b453c1d30413413422d706483bfa0f98a5e886266e7ae"}
duration:
  description: Seconds the dump took, including the row counts.
  returned: success and not check mode
  type: float
  sample: 4.2
server_version:
  description: Version of the PostgreSQL server.
  returned: always
  type: str
  sample: 15.18 (Debian 15.18-0+deb12u1)
client_version:
  description: Version of the pg_dump that ran.
  returned: always
  type: str
  sample: "15.18"
row_counts:
  description: Rows of every table whose data the archive holds, counted at the dump's snapshot, keyed C(schema.table).
  returned: success and not check mode
  type: dict
  sample: {"public.pipelines": 120, "public.runs": 48000}
linked:
  description: Whether O(dest) is a hard link to O(link_dest) because the new dump differed from it only in its creation time.
  returned: success, not check mode, when O(link_dest) is given
  type: bool
  sample: true
snapshot:
  description: Id of the exported snapshot the dump and the row counts were taken at.
  returned: success and not check mode
  type: str
  sample: 00000003-0000001B-1
consistency_point:
  description:
    - The moment of the dump's snapshot on PostgreSQL's clock, read in the statement that exported it
      (C(statement_timestamp()) before, C(clock_timestamp()) after the snapshot was taken), and PostgreSQL's
      clock against this host's. M(rat.backup.bucket_mirror) takes it as O(rat.backup.bucket_mirror#module:consistency_point).
    - C(time) and C(earliest) are ISO 8601 UTC, C(time_epoch) and C(earliest_epoch) the same as Unix seconds,
      C(host_offset) the interval in which PostgreSQL's clock minus this host's lies.
  returned: success and not check mode
  type: dict
  sample: {"time": "2026-11-27T18:30:00.123456Z", "time_epoch": 1795804200.123456,
           "earliest": "2026-11-27T18:30:00.122001Z", "earliest_epoch": 1795804200.122001,
           "obtained": "PostgreSQL clock_timestamp() read in the statement that exported snapshot 00000003-0000001B-1
                        (REPEATABLE READ); the snapshot lies between earliest and time",
           "host_offset": [-0.0004, 0.0002]}
clock:
  description: PostgreSQL's clock against this host's (C(time), C(host_offset) as in RV(consistency_point)), read
    in check mode so the S3 clock can be compared before anything is dumped.
  returned: check mode
  type: dict
  sample: {"time": "2026-11-27T18:29:58.000101Z", "host_offset": [-0.0004, 0.0002]}
cmd:
  description: The pg_dump argv (planned in check mode), secrets masked.
  returned: always
  type: list
  elements: str
  sample: ["/usr/lib/postgresql/15/bin/pg_dump", "--host", "127.0.0.1", "--port", "5432", "--username", "rat",
           "--dbname", "rat", "--no-password", "--format=custom", "--snapshot=00000003-0000001B-1"]
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.rat.backup.plugins.module_utils import postgres
from ansible_collections.rat.backup.plugins.module_utils.errors import exit_with


def argument_spec():
    spec = postgres.connection_argspec()
    spec.update(
        dest=dict(type="path", required=True),
        format=dict(type="str", choices=["custom", "directory"], default="custom"),
        jobs=dict(type="int", default=1),
        compress=dict(type="int"),
        schemas=dict(type="list", elements="str", default=[]),
        exclude_schemas=dict(type="list", elements="str", default=[]),
        tables=dict(type="list", elements="str", default=[]),
        exclude_tables=dict(type="list", elements="str", default=[]),
        exclude_table_data=dict(type="list", elements="str", default=[]),
        link_dest=dict(type="path"),
    )
    return spec


def run(module):
    p = module.params
    spec = postgres.DumpSpec(
        p["dest"], p["format"], p["jobs"], p["compress"], p["schemas"], p["exclude_schemas"], p["tables"],
        p["exclude_tables"], p["exclude_table_data"], p["link_dest"])
    result = postgres.dump(postgres.client_from_params(p), spec, check_mode=module.check_mode)
    result["changed"] = True
    return result


def main():
    module = AnsibleModule(argument_spec=argument_spec(), supports_check_mode=True)
    # exit_json would add file facts of dest, overwriting `size` (the whole archive) with the
    # inode size of a directory-format dump's directory.
    module.add_path_info = lambda kwargs: kwargs
    exit_with(module, run)


if __name__ == "__main__":
    main()
