#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: rat.backup contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: backup_capture
short_description: Dump PostgreSQL and mirror the S3 buckets of one backup at one consistency point, in one run
version_added: 0.2.0
description:
  - The capture step of the M(rat.backup.backup) role, between M(rat.backup.backup_start) and
    M(rat.backup.backup_run) with O(rat.backup.backup_run#module:state=commit). It does what M(rat.backup.pg_dump)
    and M(rat.backup.bucket_mirror) do for a backup, in one module run and overlapped.
  - PostgreSQL's session exports its snapshot first; its moment is the consistency point. pg_dump then
    writes C(postgres/rat.dump) under O(dest) at that snapshot while, in the same run, S3's clock is
    measured against PostgreSQL's (the skew over O(max_clock_skew) fails the run, naming both clocks'
    difference) and the buckets are mirrored into C(minio/) with their object manifest C(minio.json),
    versioned buckets as of the snapshot (O(use_versions)). Then the rows of every dumped table are
    counted at the snapshot and the dump's result is written beside it (C(postgres/rat.dump.json)).
  - Everything else as the two modules do it. The dump becomes a hard link to the previous backup's when
    only its creation time differs; unchanged objects are hard-linked from the previous backup; every
    object is hashed; objects of unversioned buckets that change meanwhile are listed in RV(changed_during)
    (the backup is then best-effort).
  - When pg_dump fails while the buckets are mirrored, the mirror stops at its next object and the run
    fails with pg_dump's error; when the mirror fails, pg_dump is stopped (terminated and reaped, or
    in container mode its exec connection closed) and the run fails with the mirror's error. The partial
    dump is removed; the rest of O(dest) is left for O(rat.backup.backup_run#module:state=abort).
  - The PostgreSQL options come from the C(rat.backup.postgres) action group, the S3 source's from the
    O(src_endpoint) options, as for M(rat.backup.backup_start).
extends_documentation_fragment:
  - rat.backup.attributes
  - rat.backup.postgres
  - rat.backup.s3.src
attributes:
  check_mode:
    support: full
    details:
      - Connects to PostgreSQL (server and pg_dump versions, its clock), compares S3's clock with it
        when O(use_versions), lists the buckets and returns the mirror's plan in RV(mirror); dumps and
        writes nothing.
  diff_mode:
    support: none
  idempotent:
    support: none
    details:
      - Every run captures a new backup.
options:
  dest:
    description:
      - The backup directory being written (M(rat.backup.backup_start)'s RV(rat.backup.backup_start#module:partial)).
        It must hold a C(postgres/) directory.
      - In check mode any existing directory (nothing is written there).
    type: path
    required: true
  link_dest:
    description:
      - The previous complete backup (M(rat.backup.backup_start)'s RV(rat.backup.backup_start#module:previous)).
        Its C(postgres/rat.dump) is O(rat.backup.pg_dump#module:link_dest) of the dump, its C(minio/)
        O(rat.backup.bucket_mirror#module:link_dest) of the mirror (with its C(manifest.json)).
    type: path
  buckets:
    description: The buckets to mirror, as O(rat.backup.bucket_mirror#module:buckets) with C(src=s3://).
    type: list
    elements: str
    default: []
  use_versions:
    description:
      - Capture versioned buckets as of the dump's snapshot (the clock skew is measured and checked);
        as O(rat.backup.bucket_mirror#module:use_versions) with the dump's
        RV(rat.backup.pg_dump#module:consistency_point).
    type: bool
    default: false
  max_clock_skew:
    description: Seconds the S3 and PostgreSQL clocks may differ with O(use_versions).
    type: float
    default: 2.0
  fail_on_best_effort:
    description: Fail when a bucket to mirror is not versioned (it could only be captured best-effort).
    type: bool
    default: false
  concurrency:
    description: As O(rat.backup.bucket_mirror#module:concurrency).
    type: int
    default: 8
  processes:
    description: As O(rat.backup.bucket_mirror#module:processes) (default two per CPU core).
    type: int
  min_free_bytes:
    description: As O(rat.backup.bucket_mirror#module:min_free_bytes).
    type: int
    default: 0
notes:
  - pg_dump writes custom format (C(-Fc)), the format RAT's C(make backup) writes, streamed from the
    container in container mode (O(container)).
  - On this host pg_dump's output goes straight into the dump file (no copy through Python), so the
    mirror's worker processes are forked with no other thread running; in container mode one thread
    copies the exec's output meanwhile.
requirements:
  - boto3 (with botocore) on the managed host
  - the PostgreSQL client programs as for M(rat.backup.pg_dump)
seealso:
  - module: rat.backup.backup_start
  - module: rat.backup.backup_run
  - module: rat.backup.pg_dump
  - module: rat.backup.bucket_mirror
author:
  - rat.backup maintainers (@rat-backup)
"""

EXAMPLES = r"""
- name: Dump PostgreSQL and mirror the buckets at one consistency point
  rat.backup.backup_capture:
    dest: "{{ run.partial }}"
    link_dest: "{{ run.previous or omit }}"
    password: "{{ vault_rat_postgres_password }}"
    src_endpoint: http://127.0.0.1:9000
    src_access_key: rat
    src_secret_key: "{{ vault_rat_minio_secret_key }}"
    buckets: [rat, rat-scratch]
    use_versions: true
  register: captured
"""

RETURN = r"""
dump:
  description:
    - M(rat.backup.pg_dump)'s result for C(postgres/rat.dump) (C(size), C(sha256), C(row_counts), C(linked),
      C(snapshot), C(consistency_point), C(duration), C(cmd), versions), also written beside the dump.
    - In check mode what M(rat.backup.backup_start) returns as C(checked.postgres) (versions, C(clock)).
  returned: always
  type: dict
  sample: {"dest": "/var/backups/rat/20260216_093000.partial/postgres/rat.dump", "size": 2428800, "linked": true,
           "sha256": "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08", "snapshot": "00000003-0000001B-1",
           "row_counts": {"public.runs": 48000}, "duration": 0.8}
mirror:
  description: M(rat.backup.bucket_mirror)'s result for C(minio/) (C(copied), C(linked), C(unchanged), C(bytes),
    C(plan), C(changed_during), C(consistency), C(manifest), C(seconds)); in check mode its plan.
  returned: always
  type: dict
  sample: {"copied": 3, "linked": 1292, "unchanged": 0, "bytes": 73400, "changed_during": [], "seconds": 0.9,
           "plan": {"to_copy": {"count": 3, "bytes": 73400, "first": ["rat/a.csv"]}}}
consistency:
  description: How the buckets were pinned to the dump's snapshot, as
    RV(rat.backup.bucket_mirror#module:consistency) (null without O(use_versions)).
  returned: always
  type: dict
  sample: {"level": "snapshot", "time": "2026-11-27T18:30:00.123456Z", "clock_skew": [-0.08, 0.05]}
changed_during:
  description: Objects that changed between listing and fetching, as
    RV(rat.backup.bucket_mirror#module:changed_during).
  returned: always
  type: list
  elements: dict
  sample: []
timings:
  description: Seconds from the start of the capture until the snapshot was exported, the mirror ended and the
    dump was complete (the last two overlap).
  returned: success and not check mode
  type: dict
  sample: {"snapshot": 0.09, "mirror": 1.2, "dump": 1.25}
"""

from ansible.module_utils.basic import AnsibleModule, missing_required_lib

from ansible_collections.rat.backup.plugins.module_utils import capture
from ansible_collections.rat.backup.plugins.module_utils import postgres
from ansible_collections.rat.backup.plugins.module_utils import s3
from ansible_collections.rat.backup.plugins.module_utils.errors import exit_with


def argument_spec():
    spec = postgres.connection_argspec()
    spec.update(s3.connection_argspec("src_"))
    spec.update(
        dest=dict(type="path", required=True),
        link_dest=dict(type="path"),
        buckets=dict(type="list", elements="str", default=[]),
        use_versions=dict(type="bool", default=False),
        max_clock_skew=dict(type="float", default=2.0),
        fail_on_best_effort=dict(type="bool", default=False),
        concurrency=dict(type="int", default=8),
        processes=dict(type="int"),
        min_free_bytes=dict(type="int", default=0),
    )
    return spec


def run(module):
    return capture.run(module.params, module.check_mode, module.log)


def main():
    module = AnsibleModule(argument_spec=argument_spec(), supports_check_mode=True)
    if not s3.HAS_BOTO3:
        module.fail_json(msg=missing_required_lib("boto3"), exception=s3.BOTO3_IMPORT_ERROR)
    exit_with(module, run)


if __name__ == "__main__":
    main()
