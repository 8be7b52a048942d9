#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: rat.backup contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: backup_info
short_description: List the backups of a RAT host, with size, age and verified state
version_added: 0.1.0
description:
  - Lists the backups under O(root) in three groups, oldest first, without contacting any server
    C(complete) (bare timestamp directory with C(manifest.json)), C(partial) (a run in progress or
    the leftover of one that died; never restorable) and C(pre_restore) (safety dumps taken before
    a restore).
  - For complete backups it reads the manifest (objects, bytes, tables, origin host) and the last
    verification, drill and off-site state recorded by M(rat.backup.backup_verify), the restore_drill
    role and M(rat.backup.backup_offsite).
  - With O(name), also resolves one complete backup (a name or V(latest)) and fails, listing what
    exists, when there is none of that name. Names with C(/) or C(..) are refused.
extends_documentation_fragment:
  - rat.backup.attributes
  - rat.backup.attributes.INFO_MODULE
options:
  root:
    description: The backup root of the host (C(rat_backup_root)).
    type: path
    required: true
  name:
    description: A backup name (C(YYYYmmdd_HHMMSS)) or V(latest) to resolve into RV(selected).
    type: str
  sizes:
    description:
      - Walk each directory for its size and the bytes it alone holds (files not hard-linked with
        another backup). Costs a directory walk per backup.
    type: bool
    default: true
  max_age_hours:
    description: When set, RV(stale) tells whether the newest complete backup is older than this.
    type: float
notes:
  - A root that does not exist yet is reported as having no backups, not as an error.
requirements:
  - nothing but Python 3.9 or newer on the managed host (it reads the backup root only)
seealso:
  - module: rat.backup.backup_verify
  - module: rat.backup.backup_run
author:
  - rat.backup maintainers (@rat-backup)
"""

EXAMPLES = r"""
- name: List the backups of this host
  rat.backup.backup_info:
    root: /var/backups/rat
    max_age_hours: 26
  register: info

- name: Resolve the newest complete backup
  rat.backup.backup_info:
    root: /var/backups/rat
    name: latest
    sizes: false
  register: chosen
"""

RETURN = r"""
complete:
  description: Complete backups, oldest first.
  returned: always
  type: list
  elements: dict
  contains:
    name:
      description: Backup name (UTC timestamp).
      type: str
      sample: 20260216_093000
    path:
      description: Directory of the backup.
      type: str
      sample: /var/backups/rat/20260216_093000
    created_at:
      description: Time the name stands for (UTC, ISO 8601).
      type: str
      sample: "2026-02-16T09:30:00Z"
    age_seconds:
      description: Age in seconds.
      type: int
      sample: 3600
    size:
      description: Bytes of all its files (when O(sizes)).
      type: int
      sample: 52428800
    unique_bytes:
      description: Bytes held only by this backup, not hard-linked with another (when O(sizes)).
      type: int
      sample: 4096
    host:
      description: Host recorded in the manifest.
      type: str
      sample: rat-lab
    objects:
      description: Objects in the backup.
      type: int
      sample: 1043
    bytes:
      description: Dump bytes plus object bytes, from the manifest.
      type: int
      sample: 52428800
    new_bytes:
      description:
        - Bytes this backup added to the disk when it was made (files not hard-linked from the previous
          backup), from the manifest; null for backups made before it was recorded.
      type: int
      sample: 694272
    copied:
      description: Files written by the run that made it (the rest were hard-linked); null as for RV(complete[].new_bytes).
      type: int
      sample: 12
    linked:
      description: Files hard-linked from the previous backup; null as for RV(complete[].new_bytes).
      type: int
      sample: 1032
    best_effort_buckets:
      description: Unversioned buckets that made the backup's consistency V(best-effort) (enable versioning on them).
      type: list
      elements: str
      sample: [rat-scratch]
    dump_bytes:
      description: Size of the database dump, from the manifest.
      type: int
      sample: 2428800
    object_bytes:
      description: Bytes of the objects, from the manifest.
      type: int
      sample: 50000000
    tables:
      description: Tables with row counts in the manifest.
      type: int
      sample: 9
    buckets:
      description: Buckets captured.
      type: list
      elements: str
      sample: [rat]
    consistency:
      description:
        - How the lake was captured against the database snapshot, from the manifest. C(snapshot) every bucket
          as of the dump's snapshot (versions); C(best-effort) an unversioned bucket was copied as it was while the
          run went on (see RV(complete[].changed_during)); null for a backup that recorded none.
      type: str
      sample: snapshot
    consistency_time:
      description: The database snapshot's moment (PostgreSQL's clock), ISO 8601 UTC.
      type: str
      sample: "2026-11-27T18:30:00.123456Z"
    changed_during:
      description: Objects of unversioned buckets that changed while they were copied (best-effort backups).
      type: int
      sample: 0
    verified:
      description: Last recorded verification (C(verified_at), C(mode), C(ok), C(bad)), or null.
      type: dict
      sample: {"verified_at": "2026-02-16T10:00:00Z", "mode": "full", "ok": true}
    drilled:
      description: Last recorded restore drill, or null.
      type: dict
      sample: null
    offsite:
      description:
        - Per off-site target (its label), where the copy is and whether it was shipped and verified
          (C(location), C(shipped), C(shipped_at), C(verified), C(verified_at), C(verify_mode), C(ok),
          C(error), C(bad), C(encrypted), C(bytes_sent)); null when the backup was never shipped.
        - Written by M(rat.backup.backup_offsite).
      type: dict
      sample: {"s3": {"location": "s3://rat-offsite/fleet/rat-lab/20260216_093000/", "shipped": true, "verified": true,
               "ok": true, "verify_mode": "quick", "verified_at": "2026-02-16T09:41:00Z"}}
    error:
      description: Why the manifest could not be read (the backup is then not trustworthy).
      type: str
      sample: "manifest.json is not valid JSON"
partial:
  description: C(.partial) directories (running or dead runs), oldest first; same keys as RV(complete) without the manifest ones.
  returned: always
  type: list
  elements: dict
  sample: []
pre_restore:
  description: Pre-restore safety dumps, oldest first; same keys as RV(complete).
  returned: always
  type: list
  elements: dict
  sample: []
future:
  description:
    - Complete backups and safety dumps named more than 10 minutes ahead of this host's clock (a clock that was
      wrong, a directory copied in) are suspect, so they are in none of the lists above, never RV(latest), never
      counted or deleted by retention, and each gets a warning. Same keys as RV(complete); C(kind) says
      which it is, C(age_seconds) is negative.
  returned: always
  type: list
  elements: dict
  sample: []
latest:
  description: The newest complete backup, or null. Never one named in the future (RV(future)).
  returned: always
  type: dict
  sample: {"name": "20260216_093000", "path": "/var/backups/rat/20260216_093000"}
newest_age_hours:
  description: Age of the newest complete backup in hours, or null when there is none.
  returned: always
  type: float
  sample: 1.5
stale:
  description: True when there is no complete backup or the newest is older than O(max_age_hours).
  returned: when O(max_age_hours) is set
  type: bool
  sample: false
lock:
  description: The lock of the root (C(held) and its record); a held lock means a backup or restore is running.
  returned: always
  type: dict
  sample: {"held": false}
selected:
  description: The backup O(name) resolved to.
  returned: when O(name) is set
  type: dict
  sample: {"name": "20260216_093000", "path": "/var/backups/rat/20260216_093000"}
"""

import os

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.rat.backup.plugins.module_utils import fs
from ansible_collections.rat.backup.plugins.module_utils.backup_root import layout
from ansible_collections.rat.backup.plugins.module_utils.backup_root import lock
from ansible_collections.rat.backup.plugins.module_utils.backup_root import manifest as mf
from ansible_collections.rat.backup.plugins.module_utils.errors import RatBackupError, exit_with


def argument_spec():
    return dict(
        root=dict(type="path", required=True),
        name=dict(type="str"),
        sizes=dict(type="bool", default=True),
        max_age_hours=dict(type="float"),
    )


def describe(root, entry):
    """Add what the manifest and status records say to a listing entry."""
    try:
        data = mf.read(entry["path"])
        stats = mf.summary(data)
        entry.update(host=data.get("host"), objects=stats["objects"], bytes=stats["bytes"],
                     new_bytes=stats["new_bytes"], copied=stats["copied"], linked=stats["linked"],
                     best_effort_buckets=stats["best_effort_buckets"],
                     dump_bytes=stats["dump_bytes"], object_bytes=stats["object_bytes"],
                     tables=stats["tables"], buckets=stats["buckets"], consistency=stats["consistency"],
                     consistency_time=stats["consistency_time"], changed_during=stats["changed_during"])
    except RatBackupError as exc:
        entry["error"] = exc.msg
    status = layout.read_status(root, entry["name"]) if entry["kind"] == "complete" else {}
    entry["verified"] = status.get("verify")
    entry["drilled"] = status.get("drill")
    entry["offsite"] = (status.get("offsite") or {}).get("targets")
    return entry


def run(module):
    p = module.params
    root = p["root"]
    now = fs.utcnow()
    if p["name"] and p["name"] != "latest":
        layout.check_name(p["name"], "name")
    found = layout.list_backups(root, now, sizes=p["sizes"])
    for group in ("complete", "pre_restore", "future"):
        for entry in found[group]:
            describe(root, entry)
    for entry in found["future"]:
        module.warn(f"{entry['path']} is named {-entry['age_seconds'] / 3600.0:.1f} h ahead of this host's clock: "
                    "suspect (a wrong clock or a copied directory); it is never 'latest' and retention neither counts "
                    "nor deletes it")
    held, record = lock.lock_state(root) if os.path.isdir(root) else (False, {})
    record = {k: v for k, v in record.items() if k != "token"}
    latest = found["complete"][-1] if found["complete"] else None
    result = dict(found, changed=False, latest=latest, lock=dict(record, held=held),
                  newest_age_hours=round(latest["age_seconds"] / 3600.0, 2) if latest else None)
    if p["max_age_hours"] is not None:
        result["stale"] = latest is None or latest["age_seconds"] > p["max_age_hours"] * 3600
    if p["name"]:
        chosen = layout.select(root, p["name"], "name")
        result["selected"] = next((e for e in found["complete"] if e["name"] == chosen["name"]), chosen)
    return result


def main():
    module = AnsibleModule(argument_spec=argument_spec(), supports_check_mode=True)
    exit_with(module, run)


if __name__ == "__main__":
    main()
