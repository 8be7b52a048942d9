#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: rat.backup contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: backup_run
short_description: Lock, start, commit or abort one backup directory of a RAT host
version_added: 0.1.0
description:
  - Drives the life of one backup directory under O(root), around the M(rat.backup.pg_dump) and
    M(rat.backup.bucket_mirror) tasks that fill it. The M(rat.backup.backup) and restore roles use it;
    call it directly only to build your own backup flow.
  - O(state=preflight) checks that required Python packages import, that O(root) is writable and that
    O(required_bytes) are free. It changes nothing.
  - O(state=begin) makes the same checks first (for a backup, the space needed includes the newest
    complete backup's dump plus a quarter, as the database grows). Only then does it take the
    per-host lock (C(<root>/.lock)), remove C(.partial) directories left by runs that died, create
    C(<root>/<YYYYmmdd_HHMMSS>.partial/) (mode 0700) and return the newest complete backup to
    hard-link unchanged objects from. A host that fails a check is left exactly as it was.
  - O(state=commit) checks that every file the manifest promises is present, merges the result
    M(rat.backup.pg_dump) left beside the dump (C(postgres/rat.dump.json)) and the object manifest
    M(rat.backup.bucket_mirror) wrote into C(manifest.json), writes it last, records its size and
    sha256 in C(<root>/.status/<name>.commit.json) (for a V(backup)), fsyncs, renames the C(.partial)
    directory to its final name and releases the lock. The next backup proves the one it links from
    by that record instead of reading its whole manifest.
  - O(state=abort) removes the C(.partial) directory and releases the lock, so a failed run leaves
    nothing that looks complete. O(state=lock) and O(state=unlock) hold the lock around other work
    (the restore role).
  - The lock is held by a small detached keeper process that refreshes a heartbeat in the lock file
    every few seconds. The kernel drops its lock when it dies, even by C(kill -9). It gives the lock
    up by itself after O(lease_hours), or when the Ansible run that took it is gone. With a local
    connection that is when the ansible-playbook process ends. Over SSH no process on the host lives
    as long as the run (each task may come over its own connection, and a shared connection closes
    while the host waits for the other hosts of a play), so the run is gone once no process whose
    environment carries C(RAT_BACKUP_RUN=<lock.run_id>) has been seen for O(idle_minutes). The
    backup and restore roles set that variable on every task after the lock is taken.
  - A run whose lock was given up for idleness takes it back at O(state=commit) if no other run took
    it meanwhile; otherwise it refuses to touch the backup.
extends_documentation_fragment:
  - rat.backup.attributes
  - rat.backup.consistency
attributes:
  check_mode:
    support: full
    details:
      - Reports the name the backup would get and the stale directories it would remove; takes no lock.
  diff_mode:
    support: none
  idempotent:
    support: none
    details:
      - Every O(state=begin) starts a new backup.
options:
  state:
    description: What to do.
    type: str
    choices: [preflight, begin, commit, abort, lock, unlock]
    required: true
  root:
    description: The backup root of this host (C(rat_backup_root)).
    type: path
    required: true
  kind:
    description:
      - V(backup) works in O(root); V(pre_restore) in C(<root>/pre-restore/) (safety dumps taken
        before a restore, not offered as backups to restore by default).
    type: str
    choices: [backup, pre_restore]
    default: backup
  name:
    description:
      - Name of the backup being committed or aborted, as returned by O(state=begin).
      - Required for O(state=commit). O(state=abort) without it records a run that failed before its
        backup directory existed (a failed check of M(rat.backup.backup_capture)), writing only its log line and
        metrics.
    type: str
  lock_token:
    description:
      - Token returned by O(state=begin) or O(state=lock). Commit, abort and unlock only touch the
        lock when it still carries this token.
      - With O(state=begin), reuse a lock taken earlier with O(state=lock) instead of taking a new one.
    type: str
  release_lock:
    description: Release the lock after O(state=commit) or O(state=abort).
    type: bool
    default: true
  purpose:
    description: Shown to a second run that finds the lock held.
    type: str
    default: backup
  lease_hours:
    description: The keeper gives up the lock after this many hours whatever happens.
    type: float
    default: 24
  idle_minutes:
    description:
      - For a run from another machine (not a local ansible-playbook), give the lock up once no
        process of the run (environment C(RAT_BACKUP_RUN=<lock.run_id>)) has been seen on the host
        for this many minutes. This is how the lock of a run killed on the controller comes free.
      - Must exceed the longest time a host waits between two tasks of the run, for example while a
        play runs a long task on the other hosts. V(0) leaves such a lock to O(lease_hours).
    type: float
    default: 60
  required_bytes:
    description:
      - Fail O(state=preflight) and O(state=begin) when fewer bytes are free in O(root).
      - O(state=begin) of a backup adds the newest complete backup's dump size plus 25%.
    type: int
    default: 0
  python_modules:
    description:
      - Python packages that must be installed on the managed host.
      - O(state=preflight) lists the missing ones; O(state=begin) fails naming them and how to install them.
    type: list
    elements: str
    default: []
  components:
    description: What the backup holds; decides what O(state=commit) expects.
    type: list
    elements: str
    choices: [postgres, minio]
    default: [postgres, minio]
  host:
    description: Name recorded in the manifest, normally C(inventory_hostname).
    type: str
  tools:
    description:
      - Tool versions recorded in the manifest's C(tools), besides those the module adds itself (C(python),
        C(rat.backup), C(pg_dump) from the dump's result).
    type: dict
    default: {}
    suboptions:
      ansible_core:
        description: Version of ansible-core that ran the backup (C(ansible_version.full)).
        type: str
  metrics_dir:
    description:
      - Directory of the node_exporter textfile collector. O(state=commit) and O(state=abort) of a
        V(backup) write C(rat_backup.prom) there atomically.
    type: path
  log_file:
    description: O(state=commit) and O(state=abort) of a V(backup) append one line about the run here.
    type: path
  reason:
    description: Why the run is aborted; goes to the log line and metrics, never a secret.
    type: str
notes:
  - Directories are created 0700 and files 0600; C(manifest.json) is written last, so a directory
    is a complete backup if and only if its name is a bare timestamp and C(manifest.json) exists.
requirements:
  - Python 3.9 or newer on the managed host; what the backup itself needs (boto3, C(docker) for container
    mode) is checked by O(state=preflight) and O(state=begin) through O(python_modules)
seealso:
  - module: rat.backup.backup_info
  - module: rat.backup.backup_verify
author:
  - rat.backup maintainers (@rat-backup)
"""

EXAMPLES = r"""
- name: Start a backup
  rat.backup.backup_run:
    state: begin
    root: /var/backups/rat
  register: run

- name: Commit it once pg_dump and bucket_mirror have filled run.partial
  rat.backup.backup_run:
    state: commit
    root: /var/backups/rat
    name: "{{ run.name }}"
    lock_token: "{{ run.lock_token }}"
    host: "{{ inventory_hostname }}"
    metrics_dir: /var/lib/node_exporter/textfile

- name: Give up, leaving nothing that looks complete
  rat.backup.backup_run:
    state: abort
    root: /var/backups/rat
    name: "{{ run.name }}"
    lock_token: "{{ run.lock_token }}"
    reason: pg_dump failed

- name: Check a host before its first backup (Python packages, free space); changes nothing
  rat.backup.backup_run:
    state: preflight
    root: /var/backups/rat
    python_modules: [boto3, docker]
    required_bytes: "{{ 10 * 1024 ** 3 }}"
  register: preflight

- name: Hold the host lock around work of your own (the restore role does this)
  rat.backup.backup_run:
    state: lock
    root: /var/backups/rat
    purpose: restore
  register: held

- name: Release it
  rat.backup.backup_run:
    state: unlock
    root: /var/backups/rat
    lock_token: "{{ held.lock_token }}"
"""

RETURN = r"""
name:
  description: Backup name (UTC timestamp).
  returned: begin, commit
  type: str
  sample: 20260216_093000
backup_dir:
  description: Final path of the backup.
  returned: begin, commit
  type: str
  sample: /var/backups/rat/20260216_093000
partial:
  description: The work directory to fill.
  returned: begin
  type: str
  sample: /var/backups/rat/20260216_093000.partial
previous:
  description:
    - Newest good complete backup (link_dest for unchanged objects and an unchanged dump), or null. Never one
      whose last verify failed or whose C(manifest.json) cannot be read (RV(previous_skipped)), nor one named in
      the future.
  returned: preflight, begin
  type: str
  sample: /var/backups/rat/20260215_093000
previous_skipped:
  description: Newer complete backups not linked from because they are damaged, each with the reason.
  returned: preflight, begin
  type: dict
  sample: {"20260216_093000": "its last verify (2026-02-16T10:00:00Z) failed: minio/rat/a.csv: sha256 differs"}
previous_name:
  description: Name of RV(previous).
  returned: preflight, begin
  type: str
  sample: 20260215_093000
lock_token:
  description: Token proving ownership of the lock; pass it to commit, abort and unlock.
  returned: begin, lock
  type: str
  sample: rat-lab-4242-9f0c2d1e55aa01b3
lock:
  description:
    - The lock record (host, pid of the keeper, started_at, heartbeat_at, lease_until, run_id, anchor).
    - Set C(RAT_BACKUP_RUN) to C(run_id) in the environment of the run's later tasks (see O(idle_minutes)).
  returned: begin, lock
  type: dict
  sample: {"host": "rat-lab", "pid": 4243, "purpose": "backup", "run_id": "5f0c2d1e55aa01b3c4d5e6f7", "anchor": "ssh"}
recovered_lock:
  description: The record of a dead run's lock that this run took over, or null.
  returned: begin, lock
  type: dict
  sample: {"host": "rat-lab", "pid": 4001, "released_because": "run ended without releasing"}
removed_partials:
  description: C(.partial) directories of dead runs removed by O(state=begin).
  returned: begin
  type: list
  elements: str
  sample: [/var/backups/rat/20260216_080000.partial]
required_bytes:
  description: Bytes that had to be free in O(root) for the check to pass.
  returned: preflight, begin
  type: int
  sample: 3103739904
would_remove:
  description: C(.partial) directories of dead runs that O(state=begin) would remove.
  returned: begin in check mode
  type: list
  elements: str
  sample: [/var/backups/rat/20260216_080000.partial]
free_bytes:
  description: Free bytes in O(root).
  returned: preflight, begin
  type: int
  sample: 10737418240
missing_modules:
  description: Python modules that failed to import.
  returned: preflight
  type: list
  elements: str
  sample: [boto3]
root_exists:
  description: Whether O(root) exists already.
  returned: preflight
  type: bool
  sample: true
existing_dir:
  description: O(root), or its nearest existing parent when it does not exist yet (where it will be created).
  returned: preflight, begin in check mode
  type: str
  sample: /var/backups
enough_space:
  description: Whether O(required_bytes) are free.
  returned: preflight
  type: bool
  sample: true
previous_dump_bytes:
  description: Size of the newest complete backup's database dump according to its manifest (0 without one).
  returned: preflight, begin
  type: int
  sample: 2428800
manifest:
  description: Path of the manifest written.
  returned: commit
  type: str
  sample: /var/backups/rat/20260216_093000/manifest.json
bytes:
  description: Bytes captured (dump + objects).
  returned: commit
  type: int
  sample: 52428800
new_bytes:
  description:
    - Bytes this backup added to the disk, the files written by this run and not hard-linked from the
      previous backup (also recorded in manifest.json under C(stored)).
  returned: commit
  type: int
  sample: 694272
copied:
  description: Files of the backup written by this run (objects fetched, the dump when it changed).
  returned: commit
  type: int
  sample: 12
linked:
  description: Files of the backup hard-linked from the previous complete backup (unchanged objects and dump).
  returned: commit
  type: int
  sample: 1032
best_effort_buckets:
  description: Buckets that could not be pinned to the database snapshot (unversioned); empty when none.
  returned: commit
  type: list
  elements: str
  sample: [rat-scratch]
objects:
  description: Objects captured.
  returned: commit
  type: int
  sample: 1043
object_bytes:
  description: Bytes of the objects captured.
  returned: commit
  type: int
  sample: 50000000
dump_bytes:
  description: Size of the database dump.
  returned: commit
  type: int
  sample: 2428800
tables:
  description: Tables whose row counts the manifest records.
  returned: commit
  type: int
  sample: 9
rows:
  description: Total rows at the dump's snapshot.
  returned: commit
  type: int
  sample: 50210
buckets:
  description: Buckets captured.
  returned: commit
  type: list
  elements: str
  sample: [rat, rat-scratch]
duration:
  description: Seconds from begin to commit.
  returned: commit
  type: float
  sample: 12.5
removed:
  description: The C(.partial) directory removed by O(state=abort), or null.
  returned: abort
  type: str
  sample: /var/backups/rat/20260216_093000.partial
lock_released:
  description: Whether the lock was released.
  returned: commit, abort
  type: bool
  sample: true
log_line:
  description: The line appended to O(log_file) (also sent to syslog).
  returned: commit, abort of a backup
  type: str
  sample: >-
    2026-02-16T09:30:12Z rat-backup host=rat-lab status=ok name=20260216_093000 duration=12.5s bytes=52428800
    new_bytes=694272 copied=12 linked=1032 objects=1043
metrics_file:
  description: The Prometheus textfile written.
  returned: commit, abort of a backup when O(metrics_dir) is set
  type: str
  sample: /var/lib/node_exporter/textfile/rat_backup.prom
"""

import socket

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.rat.backup.plugins.module_utils import consistency, fs
from ansible_collections.rat.backup.plugins.module_utils.backup_root import layout
from ansible_collections.rat.backup.plugins.module_utils.backup_root import lock
from ansible_collections.rat.backup.plugins.module_utils.backup_root import reporting
from ansible_collections.rat.backup.plugins.module_utils.backup_root import backup_dir
from ansible_collections.rat.backup.plugins.module_utils.errors import RatBackupError, exit_with


def argument_spec():
    return dict(
        backup_dir.begin_argspec(),
        state=dict(type="str", required=True, choices=["preflight", "begin", "commit", "abort", "lock", "unlock"]),
        kind=dict(type="str", default="backup", choices=["backup", "pre_restore"]),
        name=dict(type="str"),
        lock_token=dict(type="str", no_log=False),
        release_lock=dict(type="bool", default=True),
        purpose=dict(type="str", default="backup"),
        components=dict(type="list", elements="str", choices=["postgres", "minio"], default=["postgres", "minio"]),
        host=dict(type="str"),
        tools=dict(type="dict", default={}, options=dict(ansible_core=dict(type="str"))),
        consistency=dict(type="dict", default={}, options=consistency.record_argspec()),
        metrics_dir=dict(type="path"),
        log_file=dict(type="path"),
        reason=dict(type="str"),
    )


def _report(module, p, ok, now, stats, reason=None):
    """Metrics and the one log line of a backup run (not of pre-restore dumps)."""
    if p["kind"] != "backup" or module.check_mode:
        return {}
    out = reporting.report(p["host"] or socket.gethostname(), ok, p["name"], now, stats, reason, p["log_file"],
                           p["metrics_dir"])
    module.log(out["log_line"])
    return out


def _given(options):
    """A dict option as the caller gave it: Ansible fills unset suboptions with None, the manifest records none of them."""
    return {k: v for k, v in options.items() if v is not None}


def run(module):
    p = module.params
    now = fs.utcnow()
    state = p["state"]
    if state == "commit" and not p["name"]:
        raise RatBackupError("name is required with state=commit")
    if state == "preflight":
        result = backup_dir.preflight(p["root"], p["required_bytes"], p["python_modules"])
        result["changed"] = False
        return result
    if state == "begin":
        result = backup_dir.begin(p["root"], p["kind"], p["purpose"], p["required_bytes"],
                                  int(p["lease_hours"] * 3600), module.check_mode, now, p["lock_token"],
                                  p["python_modules"], int(p["idle_minutes"] * 60))
        for warning in backup_dir.skipped_warnings(result):
            module.warn(warning)
        return result
    if state == "lock":
        if module.check_mode:
            held, record = lock.lock_state(p["root"])
            return {"changed": not held, "lock_token": None}
        layout.ensure_root(p["root"])
        record, stale = lock.acquire(p["root"], p["purpose"], int(p["lease_hours"] * 3600), now,
                                     int(p["idle_minutes"] * 60))
        return {"changed": True, "lock_token": record["token"],
                "lock": {k: v for k, v in record.items() if k != "token"},
                "recovered_lock": {k: v for k, v in (stale or {}).items() if k != "token"} or None}
    if state == "unlock":
        return backup_dir.unlock(p["root"], p["lock_token"], module.check_mode)
    if state == "commit":
        try:
            result = backup_dir.commit(p["root"], p["kind"], p["name"], p["lock_token"], p["host"],
                                       p["components"], _given(p["tools"]),
                                       _given(p["consistency"]), p["release_lock"], module.check_mode, now)
        except RatBackupError as exc:
            _report(module, p, False, now, None, exc.msg)
            raise
        result.update(_report(module, p, True, now, result))
        return result
    if p["name"]:
        result = backup_dir.abort(p["root"], p["kind"], p["name"], p["lock_token"], p["release_lock"], module.check_mode)
    else:
        # A run whose start failed (M(rat.backup.backup_capture)'s checks): nothing to remove, only its end to record.
        result = {"changed": False, "removed": None, "lock_released": False}
    result.update(_report(module, p, False, now, None, p["reason"]))
    return result


def main():
    module = AnsibleModule(argument_spec=argument_spec(), supports_check_mode=True)
    exit_with(module, run)


if __name__ == "__main__":
    main()
