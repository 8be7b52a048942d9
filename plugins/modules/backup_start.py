#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: rat.backup contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: backup_start
short_description: Check that a RAT host can be backed up, then lock it and start its backup directory
version_added: 0.2.0
description:
  - The first step of the M(rat.backup.backup) role, in one module run (every task is a process start
    on the host and a round trip; a fleet backed up at the same hour pays it per host).
  - Checks the host as M(rat.backup.backup_run) with O(rat.backup.backup_run#module:state=begin) does
    (Python packages, a writable O(root), room for the dump), then the services the backup reads.
    PostgreSQL answers with these credentials, its pg_dump is new enough for the server, and its
    clock is read. S3 answers with these credentials and every bucket of O(buckets) exists (their
    versioning is read; no object is listed). With O(clock_skew), S3's clock is measured against
    PostgreSQL's and a difference over O(max_clock_skew) is refused.
  - Only then does it take the host lock, remove C(.partial) directories of dead runs and create
    C(<root>/<YYYYmmdd_HHMMSS>.partial/), exactly as O(rat.backup.backup_run#module:state=begin). A host
    that fails a check is left as it was (O(root) itself may have been created).
  - The PostgreSQL options come from the C(rat.backup.postgres) action group, the S3 source's from the
    O(src_endpoint) options, as for M(rat.backup.pg_dump) and M(rat.backup.bucket_mirror).
extends_documentation_fragment:
  - rat.backup.attributes
  - rat.backup.postgres
  - rat.backup.s3.src
attributes:
  check_mode:
    support: full
    details:
      - Makes every check and reports the name the backup would get; takes no lock, creates nothing.
  diff_mode:
    support: none
  idempotent:
    support: none
    details:
      - Every run starts a new backup.
options:
  root:
    description: The backup root of this host (C(rat_backup_root)).
    type: path
    required: true
  lease_hours:
    description: As O(rat.backup.backup_run#module:lease_hours).
    type: float
    default: 24
  idle_minutes:
    description: As O(rat.backup.backup_run#module:idle_minutes).
    type: float
    default: 60
  required_bytes:
    description: Fail when fewer bytes are free in O(root), plus the newest complete backup's dump size and 25%.
    type: int
    default: 0
  python_modules:
    description: Python packages that must be installed on the managed host (fails naming the missing ones).
    type: list
    elements: str
    default: []
  buckets:
    description: The buckets that must exist on the S3 source; empty means every bucket of the endpoint.
    type: list
    elements: str
    default: []
  clock_skew:
    description: Measure S3's clock against PostgreSQL's (the backup role does for versioned capture).
    type: bool
    default: true
  max_clock_skew:
    description: The largest difference between the two clocks accepted with O(clock_skew), in seconds.
    type: float
    default: 2.0
  fail_on_best_effort:
    description: Refuse when a bucket is not versioned (it could only be captured best-effort).
    type: bool
    default: false
notes:
  - A failed check returns RV(failed_check), so the role records the run as failed (log line, metrics)
    with O(rat.backup.backup_run#module:state=abort); a refused lock or host check does not.
seealso:
  - module: rat.backup.backup_run
  - module: rat.backup.pg_dump
  - module: rat.backup.bucket_mirror
author:
  - rat.backup maintainers (@rat-backup)
"""

EXAMPLES = r"""
- name: Check PostgreSQL, S3 and the host, take the lock and start the backup directory
  rat.backup.backup_start:
    root: /var/backups/rat
    host: 127.0.0.1
    password: "{{ vault_rat_postgres_password }}"
    src_endpoint: http://127.0.0.1:9000
    src_access_key: rat
    src_secret_key: "{{ vault_rat_minio_secret_key }}"
    buckets: [rat, rat-scratch]
    python_modules: [boto3]
  register: run
"""

RETURN = r"""
name:
  description: Backup name (UTC timestamp).
  returned: success
  type: str
  sample: 20260216_093000
backup_dir:
  description: Final path of the backup.
  returned: success
  type: str
  sample: /var/backups/rat/20260216_093000
partial:
  description: The work directory to fill.
  returned: success
  type: str
  sample: /var/backups/rat/20260216_093000.partial
previous:
  description: As RV(rat.backup.backup_run#module:previous) (link_dest for unchanged objects and dump), or null.
  returned: success
  type: str
  sample: /var/backups/rat/20260215_093000
previous_name:
  description: Name of RV(previous).
  returned: success
  type: str
  sample: 20260215_093000
previous_skipped:
  description: Newer complete backups not linked from because they are damaged, each with the reason.
  returned: success
  type: dict
  sample: {}
previous_dump_bytes:
  description: Size of the newest complete backup's database dump according to its manifest (0 without one).
  returned: success
  type: int
  sample: 2428800
required_bytes:
  description: Bytes that had to be free in O(root).
  returned: success
  type: int
  sample: 69537792
free_bytes:
  description: Free bytes in O(root).
  returned: success
  type: int
  sample: 10737418240
lock_token:
  description: Token proving ownership of the lock; pass it to backup_run's commit and abort. Null in check mode.
  returned: success
  type: str
  sample: rat-lab-4242-9f0c2d1e55aa01b3
lock:
  description: The lock record, as RV(rat.backup.backup_run#module:lock) (C(run_id) marks the run's processes).
  returned: success, not in check mode
  type: dict
  sample: {"host": "rat-lab", "pid": 4243, "purpose": "backup", "run_id": "5f0c2d1e55aa01b3c4d5e6f7", "anchor": "ssh"}
recovered_lock:
  description: The record of a dead run's lock that this run took over, or null.
  returned: success, not in check mode
  type: dict
  sample: null
removed_partials:
  description: C(.partial) directories of dead runs removed.
  returned: success, not in check mode
  type: list
  elements: str
  sample: []
would_remove:
  description: C(.partial) directories of dead runs that would be removed.
  returned: check mode
  type: list
  elements: str
  sample: []
existing_dir:
  description: O(root), or its nearest existing parent when it does not exist yet.
  returned: check mode
  type: str
  sample: /var/backups
checked:
  description:
    - What the checks found. C(postgres) has C(server_version), C(client_version) and C(clock) (PostgreSQL's
      clock against this host's); C(s3) has C(buckets) (each with C(versioned)) and C(clock_skew) (S3's clock
      minus PostgreSQL's as an interval in seconds, or null without O(clock_skew)) and C(clock) (C(offset), S3's
      clock minus this host's as an interval in seconds; null without O(clock_skew)).
  returned: success
  type: dict
  sample: {"postgres": {"server_version": "15.8", "client_version": "15.8",
                        "clock": {"time": "2026-02-16T09:30:00.120000Z", "host_offset": [-0.002, 0.001]}},
           "s3": {"buckets": {"rat": {"versioned": true}}, "clock_skew": [-0.08, 0.03],
                  "clock": {"offset": [-0.081, 0.029]}}}
failed_check:
  description: The service whose check failed (V(postgres) or V(s3)).
  returned: failure of a check
  type: str
  sample: s3
"""

import contextlib
import threading

from ansible.module_utils.basic import AnsibleModule, missing_required_lib

from ansible_collections.rat.backup.plugins.module_utils import fs
from ansible_collections.rat.backup.plugins.module_utils import postgres
from ansible_collections.rat.backup.plugins.module_utils import s3
from ansible_collections.rat.backup.plugins.module_utils import s3_source
from ansible_collections.rat.backup.plugins.module_utils.backup_root import backup_dir
from ansible_collections.rat.backup.plugins.module_utils.errors import RatBackupError, exit_with


def argument_spec():
    spec = postgres.connection_argspec()
    spec.update(s3.connection_argspec("src_"))
    spec.update(backup_dir.begin_argspec())
    spec.update(
        buckets=dict(type="list", elements="str", default=[]),
        clock_skew=dict(type="bool", default=True),
        max_clock_skew=dict(type="float", default=2.0),
        fail_on_best_effort=dict(type="bool", default=False),
    )
    return spec


def check_services(p):
    """{"postgres": ..., "s3": ...}: what the checks found. A failure names its service (failed_check),
    PostgreSQL's first when both fail.

    The two services are asked at the same time: S3's clock is read at its Date header's tick (half
    a second on average), which is time enough for PostgreSQL's check.
    """
    s3_checked = {}

    def check_s3():
        try:
            s3_checked["found"] = check_source(p)
        except Exception as exc:  # pylint: disable=broad-except
            # Raised again in the module's thread, below: a thread's exception would only be printed.
            s3_checked["error"] = exc

    s3_thread = threading.Thread(target=check_s3, name="check-s3", daemon=True)
    s3_thread.start()
    try:
        with _checking("postgres"):
            pg_checked = postgres.check(postgres.client_from_params(p))
    finally:
        s3_thread.join()
    with _checking("s3"):
        if "error" in s3_checked:
            raise s3_checked["error"]
        found = s3_checked["found"]
        clock = found["clock"]
        skew = s3_source.skew(clock, pg_checked["clock"], p["max_clock_skew"]) if clock else None
    return {"postgres": pg_checked, "s3": dict(found, clock_skew=skew)}


def check_source(p):
    """s3_source.check of the S3 source ``p`` names. On an endpoint given by URL with keys every
    request goes through the fast transport, and boto3 (0.3-0.45 s to import and make a client,
    contending with PostgreSQL's check for the one interpreter) is never imported."""
    if not s3.HAS_BOTO3:
        raise RatBackupError(missing_required_lib("boto3"))
    side = s3.connect(p, "src_", fast=True)
    return s3_source.check(side.client, side.endpoint, p["buckets"], p["clock_skew"], p["fail_on_best_effort"],
                           side.fast)


@contextlib.contextmanager
def _checking(service):
    """Names the service in a RatBackupError raised while checking it (failed_check)."""
    try:
        yield
    except RatBackupError as exc:
        exc.details.setdefault("failed_check", service)
        raise


def run(module):
    p = module.params
    result = backup_dir.begin(p["root"], "backup", "backup", p["required_bytes"], int(p["lease_hours"] * 3600),
                              module.check_mode, fs.utcnow(), modules=p["python_modules"],
                              idle_seconds=int(p["idle_minutes"] * 60), check=lambda: check_services(p))
    for warning in backup_dir.skipped_warnings(result):
        module.warn(warning)
    return result


def main():
    module = AnsibleModule(argument_spec=argument_spec(), supports_check_mode=True)
    exit_with(module, run)


if __name__ == "__main__":
    main()
