#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: rat.backup contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: backup_capture
short_description: Back up a RAT host in one run, its PostgreSQL dump and S3 buckets at one consistency point
version_added: 0.2.0
description:
  - The backup of one RAT host, from its checks to its commit, in one module run. The M(rat.backup.backup)
    role runs it, and M(rat.backup.backup_run) with O(rat.backup.backup_run#module:state=abort) after a
    failure. Every task is a process start on the host and a round trip; a fleet backed up at the same
    hour pays it per host.
  - First the checks, before anything is created. The host as M(rat.backup.backup_run) with
    O(rat.backup.backup_run#module:state=begin) checks it (O(python_modules), a writable O(root), room
    for O(min_free_bytes) plus the newest complete backup's dump grown by a quarter); then PostgreSQL
    answers with these credentials, its pg_dump is new enough for the server and its clock is read, and
    at the same time S3 answers with these credentials and every bucket of O(buckets) exists (their
    versioning is read; no object is listed). A host that fails a check is left as it was (O(root)
    itself may have been created) and the failure names the service in RV(failed_check).
  - Then it takes the host lock, removes C(.partial) directories of dead runs, creates
    C(<root>/<YYYYmmdd_HHMMSS>.partial/) and runs O(quiesce_before).
  - PostgreSQL's session exports its snapshot; its moment is the consistency point. pg_dump writes
    C(postgres/rat.dump) at that snapshot while, in the same run, S3's clock is measured against
    PostgreSQL's (a skew over O(max_clock_skew) fails the run, naming both clocks' difference) and the
    buckets are mirrored into C(minio/) with their object manifest C(minio.json), versioned buckets as
    of the snapshot (O(use_versions)). Then the rows of every dumped table are counted at the snapshot
    and the dump's result is written beside it (C(postgres/rat.dump.json)). O(quiesce_after) runs when
    the capture has ended, also after a failure.
  - Then the commit, as O(rat.backup.backup_run#module:state=commit) does it. Every file the object manifest
    promises must be present with its size; C(manifest.json) is written last, the directory is renamed to
    C(<root>/<name>), the lock is released, and the run's log line (O(log_file), syslog) and metrics
    (O(metrics_dir)) are written. Its result is RV(committed).
  - Everything else as M(rat.backup.pg_dump) and M(rat.backup.bucket_mirror) do it. With O(incremental)
    the dump becomes a hard link to the previous backup's when only its creation time differs, and
    unchanged objects are hard-linked from it; every object is hashed; objects of unversioned buckets
    that change meanwhile are listed in RV(changed_during) (the backup is then best-effort).
  - When pg_dump fails while the buckets are mirrored, the mirror stops at its next object and the run
    fails with pg_dump's error; when the mirror fails, pg_dump is stopped (terminated and reaped, or
    in container mode its exec connection closed) and the run fails with the mirror's error. The partial
    dump is removed. A failure once the lock is held (the commit's too, until its rename) returns RV(name),
    RV(partial) and RV(lock_token) with the error, for O(rat.backup.backup_run#module:state=abort) to remove the rest,
    release the lock and record the failed run.
  - The PostgreSQL options come from the C(rat.backup.postgres) action group, the S3 source's from the
    O(src_endpoint) options.
extends_documentation_fragment:
  - rat.backup.attributes
  - rat.backup.postgres
  - rat.backup.s3.src
attributes:
  check_mode:
    support: full
    details:
      - Makes every check, compares S3's clock with PostgreSQL's when O(use_versions), lists the buckets
        and returns the name the backup would get and the mirror's plan in RV(mirror); takes no lock, runs
        no quiesce command, dumps, writes and commits nothing.
  diff_mode:
    support: none
  idempotent:
    support: none
    details:
      - Every run captures a new backup.
options:
  root:
    description: The backup root of this host (C(rat_backup_root)).
    type: path
    required: true
  host_name:
    description:
      - The host's name in the manifest, the log line and the metrics (the role passes C(inventory_hostname)).
        Without it, this host's hostname. (O(host) is PostgreSQL's.)
    type: str
  metrics_dir:
    description: As O(rat.backup.backup_run#module:metrics_dir).
    type: path
  log_file:
    description: As O(rat.backup.backup_run#module:log_file).
    type: path
  incremental:
    description:
      - Hard-link the dump and every unchanged object from the newest good complete backup (RV(previous)).
        Without it every object is downloaded.
    type: bool
    default: true
  lease_hours:
    description: As O(rat.backup.backup_run#module:lease_hours).
    type: float
    default: 24
  idle_minutes:
    description: As O(rat.backup.backup_run#module:idle_minutes).
    type: float
    default: 60
  python_modules:
    description: Python packages that must be installed on the managed host (fails naming the missing ones).
    type: list
    elements: str
    default: []
  min_free_bytes:
    description:
      - Bytes that must stay free in O(root). Checked before the lock, with room for the newest complete
        backup's dump grown by a quarter, and kept by the mirror as it writes
        (O(rat.backup.bucket_mirror#module:min_free_bytes)).
    type: int
    default: 0
  buckets:
    description:
      - The buckets to mirror, as O(rat.backup.bucket_mirror#module:buckets) with C(src=s3://); each must exist.
        Empty means every bucket of the endpoint but restore drills' scratch buckets.
    type: list
    elements: str
    default: []
  use_versions:
    description:
      - Capture versioned buckets as of the dump's snapshot (the clock skew is measured and checked when a
        bucket is versioned);
        as O(rat.backup.bucket_mirror#module:use_versions) with the dump's
        RV(rat.backup.pg_dump#module:consistency_point).
    type: bool
    default: false
  max_clock_skew:
    description: Seconds the S3 and PostgreSQL clocks may differ with O(use_versions) and a versioned bucket.
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
  quiesce_before:
    description:
      - A command (argv, no shell) run once the lock is held, before the snapshot, for example stopping
        RAT's runner. It fails the run when it exits non-zero. Empty runs nothing.
    type: list
    elements: str
    default: []
  quiesce_after:
    description:
      - A command (argv, no shell) run when the capture has ended, also after a failure (and after a failed
        O(quiesce_before)). It fails the run when it exits non-zero; what it did is in RV(quiesce).
      - Failing after a good capture, it does not cost the backup, which was taken between the two commands.
        The backup is committed, then the run fails saying it is complete (RV(committed)) and that the platform
        may still be quiesced, and a second log line and the metrics record the run as failed (with this
        backup as the last success).
    type: list
    elements: str
    default: []
notes:
  - pg_dump writes custom format (C(-Fc)), the format RAT's C(make backup) writes, streamed from the
    container in container mode (O(container)).
  - On this host pg_dump's output goes straight into the dump file (no copy through Python), so the
    mirror's worker processes are forked with no other thread running; in container mode one thread
    copies the exec's output meanwhile.
  - SIGTERM while the lock is held (the schedule role's timeout, C(rat_schedule_timeout_minutes), sends it to
    the whole process group) stops the capture as a failure does, O(quiesce_after) runs and the run fails with
    its result.
  - The quiesce commands and pg_dump carry the run's lock marker (C(RAT_BACKUP_RUN)) in their environment,
    and this process took the lock, so the lock is held while any of them runs (see M(rat.backup.backup_run)).
requirements:
  - boto3 (with botocore) on the managed host
  - the PostgreSQL client programs as for M(rat.backup.pg_dump)
seealso:
  - module: rat.backup.backup_run
  - module: rat.backup.pg_dump
  - module: rat.backup.bucket_mirror
author:
  - rat.backup maintainers (@rat-backup)
"""

EXAMPLES = r"""
- name: Back up the host
  rat.backup.backup_capture:
    root: /var/backups/rat
    log_file: /var/backups/rat/backup.log
    host: 127.0.0.1
    password: "{{ vault_rat_postgres_password }}"
    src_endpoint: http://127.0.0.1:9000
    src_access_key: rat
    src_secret_key: "{{ vault_rat_minio_secret_key }}"
    buckets: [rat, rat-scratch]
    use_versions: true
    python_modules: [boto3]
    quiesce_before: [docker, compose, -f, /opt/rat/docker-compose.yml, stop, runner]
    quiesce_after: [docker, compose, -f, /opt/rat/docker-compose.yml, start, runner]
  register: captured

- name: After a failure, remove its .partial directory, release the lock and record the failed run
  rat.backup.backup_run:
    state: abort
    root: /var/backups/rat
    log_file: /var/backups/rat/backup.log
    name: "{{ captured.name | default(omit) }}"
    lock_token: "{{ captured.lock_token | default(omit) }}"
    reason: "{{ captured.msg }}"
  when: captured is failed and (captured.partial is defined or captured.failed_check is defined)
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
    - What the checks before the lock found. C(postgres) has C(server_version), C(client_version) and C(clock)
      (PostgreSQL's clock against this host's); C(s3) has C(buckets), each with C(versioned).
  returned: success
  type: dict
  sample: {"postgres": {"server_version": "15.8", "client_version": "15.8",
                        "clock": {"time": "2026-02-16T09:30:00.120000Z", "host_offset": [-0.002, 0.001]}},
           "s3": {"buckets": {"rat": {"versioned": true}}}}
dump:
  description:
    - M(rat.backup.pg_dump)'s result for C(postgres/rat.dump) (C(size), C(sha256), C(row_counts), C(linked),
      C(snapshot), C(consistency_point), C(duration), C(cmd), versions), also written beside the dump.
    - In check mode what RV(checked) has as C(postgres) (versions, C(clock)).
  returned: success
  type: dict
  sample: {"dest": "/var/backups/rat/20260216_093000.partial/postgres/rat.dump", "size": 2428800, "linked": true,
           "sha256": "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08", "snapshot": "00000003-0000001B-1",
           "row_counts": {"public.runs": 48000}, "duration": 0.8}
mirror:
  description: M(rat.backup.bucket_mirror)'s result for C(minio/) (C(copied), C(linked), C(unchanged), C(bytes),
    C(plan), C(changed_during), C(consistency), C(manifest), C(seconds)); in check mode its plan.
  returned: success
  type: dict
  sample: {"copied": 3, "linked": 1292, "unchanged": 0, "bytes": 73400, "changed_during": [], "seconds": 0.9,
           "plan": {"to_copy": {"count": 3, "bytes": 73400, "first": ["rat/a.csv"]}}}
consistency:
  description: How the buckets were pinned to the dump's snapshot, as
    RV(rat.backup.bucket_mirror#module:consistency) (null without O(use_versions)).
  returned: success
  type: dict
  sample: {"level": "snapshot", "time": "2026-11-27T18:30:00.123456Z", "clock_skew": [-0.08, 0.05]}
changed_during:
  description: Objects that changed between listing and fetching, as
    RV(rat.backup.bucket_mirror#module:changed_during).
  returned: success
  type: list
  elements: dict
  sample: []
quiesce:
  description:
    - What the quiesce commands did, C(before) and C(after) (each its C(cmd), C(rc), C(seconds) and the last
      2000 characters of C(stdout) and C(stderr)); empty when none ran.
    - Returned with a failure too once the lock is held, so a caller knows whether O(quiesce_after) ran.
  returned: always but a failed check
  type: dict
  sample: {"before": {"cmd": ["systemctl", "stop", "rat-runner"], "rc": 0, "seconds": 0.4, "stdout": "",
                      "stderr": ""}}
committed:
  description:
    - What O(rat.backup.backup_run#module:state=commit) returns for the backup (C(name), C(backup_dir),
      C(manifest), C(bytes), C(new_bytes), C(objects), C(tables), C(rows), C(duration),
      C(best_effort_buckets), C(log_line), C(metrics_file), ...).
    - With a failure after the rename (the backup is complete; its log line, metrics or the lock's release
      failed), at least C(name) and C(backup_dir), and RV(name), RV(partial) and RV(lock_token) are not returned.
  returned: success and not check mode, failure after the commit's rename
  type: dict
  sample: {"name": "20260216_093000", "backup_dir": "/var/backups/rat/20260216_093000", "bytes": 75829200,
           "new_bytes": 73400, "objects": 1295, "tables": 12, "rows": 40348, "duration": 2.9,
           "log_line": "2026-02-16T09:30:03Z rat-backup host=rat-lab status=ok name=20260216_093000 ..."}
timings:
  description: Seconds from the start of the capture until the snapshot was exported, the mirror ended and the
    dump was complete (the dump is completed as soon as pg_dump exits, while the mirror runs, so either may
    end first).
  returned: success and not check mode
  type: dict
  sample: {"snapshot": 0.03, "mirror": 1.0, "dump": 0.38}
failed_check:
  description: The service whose check failed (V(postgres) or V(s3)).
  returned: failure of a check
  type: str
  sample: s3
"""

from ansible.module_utils.basic import AnsibleModule

# errors first: it brings payload_import, so every file after it is compiled once, not twice.
from ansible_collections.rat.backup.plugins.module_utils.errors import exit_with
from ansible_collections.rat.backup.plugins.module_utils import capture
from ansible_collections.rat.backup.plugins.module_utils import postgres
from ansible_collections.rat.backup.plugins.module_utils import s3
from ansible_collections.rat.backup.plugins.module_utils.backup_root import backup_dir


def argument_spec():
    spec = postgres.connection_argspec()
    spec.update(s3.connection_argspec("src_"))
    spec.update(backup_dir.begin_argspec())
    # One free-space bound for the whole capture, as min_free_bytes (begin's required_bytes).
    del spec["required_bytes"]
    spec.update(
        host_name=dict(type="str"),
        metrics_dir=dict(type="path"),
        log_file=dict(type="path"),
        incremental=dict(type="bool", default=True),
        buckets=dict(type="list", elements="str", default=[]),
        use_versions=dict(type="bool", default=False),
        max_clock_skew=dict(type="float", default=2.0),
        fail_on_best_effort=dict(type="bool", default=False),
        concurrency=dict(type="int", default=8),
        processes=dict(type="int"),
        min_free_bytes=dict(type="int", default=0),
        quiesce_before=dict(type="list", elements="str", default=[]),
        quiesce_after=dict(type="list", elements="str", default=[]),
    )
    return spec


def run(module):
    result = capture.run(module.params, module.check_mode, module.log)
    for warning in backup_dir.skipped_warnings(result):
        module.warn(warning)
    return result


def main():
    module = AnsibleModule(argument_spec=argument_spec(), supports_check_mode=True)
    exit_with(module, run)


if __name__ == "__main__":
    main()
