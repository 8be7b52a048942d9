#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: rat.backup contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: backup_retention
short_description: Delete the backups of a RAT host that a retention policy no longer keeps
version_added: 0.1.0
description:
  - Applies a retention O(policy) to the backups under O(root) with the meaning of borg / borgmatic
    C(prune) (periods in UTC, the names' time zone); every backup gets a decision and the rule that
    kept it.
  - Whatever the policy, the newest complete backup stays, and only complete backups (a bare
    timestamp directory with C(manifest.json)) count toward a rule, so a job failing for weeks never
    makes retention eat the good backups.
  - A damaged backup (its last verification recorded in C(.status/) failed, or its C(manifest.json) cannot
    be read) counts toward no rule, so a rotten newest backup never takes the place of the last good one;
    it is kept while no good backup is newer. The newest backup whose verification passed always stays.
  - A backup named more than 10 minutes ahead of the host's clock (a wrong clock, a copied directory) is
    kept and counted by no rule; its reason says so.
  - C(.partial) directories are removed only when older than C(policy.partial_max_age) and never
    while a backup or restore holds the lock. Pre-restore safety dumps follow their own rule
    (C(policy.pre_restore)), or stay. Symlinks, timestamp directories without C(manifest.json) and
    anything else are left alone.
  - A backup is first renamed into C(.deleting/) (out of what listing and restore see), then
    removed, so a crash never leaves a half-deleted backup that looks complete; the next run
    finishes such leftovers. Status records of a deleted backup go with it.
  - Takes the host lock while deleting, so it never runs beside a backup or restore (it fails naming
    the holder instead, deleting nothing), and the off-site lock (C(<root>/.offsite/.lock)), so it never
    deletes a backup while M(rat.backup.backup_offsite) ships it (it fails, deleting nothing).
extends_documentation_fragment:
  - rat.backup.attributes
attributes:
  check_mode:
    support: full
    details:
      - Returns the exact keep/delete lists with reasons, deletes nothing and takes no lock.
  diff_mode:
    support: full
    details:
      - The entries of the root before and after, one a line.
  idempotent:
    support: full
    details:
      - At the same O(now), a second run deletes nothing.
options:
  root:
    description: The backup root of the host (C(rat_backup_root)). A root that does not exist has nothing to prune.
    type: path
    required: true
  policy:
    description:
      - Retention rules (C(rat_backup_retention)). At least one C(keep_*) rule is required, and at least one
        above zero. A policy of zeros (C(keep_daily=0)) would keep nothing but the newest backup, so it is
        refused before anything is touched, like a policy with no rule.
      - C(keep_within) (V(30d), V(12h); units H or h, d, w, m = 31 days, y = 365 days) keeps every backup younger
        than that.
      - C(keep_last), C(keep_hourly), C(keep_daily), C(keep_weekly) (ISO weeks), C(keep_monthly), C(keep_yearly)
        keep the newest backup of each of the N most recent periods that have one (borg's rules, in that
        order; a period whose newest backup an earlier rule kept is not counted again; with fewer
        periods than N the oldest backup is kept too).
      - C(protect_drilled) (default 0) keeps the N newest backups whose restore drill passed
        (C(<root>/.status/<name>.drill.json) with C(status) V(passed)).
      - C(partial_max_age) (default V(1d)) is the age after which an unlocked C(.partial) directory is removed.
      - C(pre_restore) is a policy of C(keep_*) rules for C(<root>/pre-restore/); without it those dumps stay.
    type: dict
    required: true
  now:
    description:
      - Evaluate the policy as of this time (ISO 8601 UTC, C(2026-11-27T12:00:00Z)) instead of the current time.
        For what-if questions and tests.
    type: str
notes:
  - The same policy engine (module_utils/backup_root/retention.py) decides for off-site copies.
requirements:
  - nothing but Python 3.9 or newer on the managed host (it works on the backup root only)
seealso:
  - module: rat.backup.backup_info
author:
  - rat.backup maintainers (@rat-backup)
"""

EXAMPLES = r"""
- name: Production, every 6 hours, keep 30 days (what would go?)
  rat.backup.backup_retention:
    root: /var/backups/rat
    policy:
      keep_within: 30d
  check_mode: true
  diff: true
  register: plan

- name: Critical production, 7 days + weekly for 90 days, keep the last drilled backup
  rat.backup.backup_retention:
    root: /var/backups/rat
    policy:
      keep_within: 7d
      keep_weekly: 13
      protect_drilled: 1
      pre_restore:
        keep_last: 3
"""

RETURN = r"""
kept:
  description: Entries kept, oldest first, with the rule that kept each.
  returned: always
  type: list
  elements: dict
  contains:
    name:
      description: Directory name.
      type: str
      sample: 20261127_120000
    kind:
      description: V(complete), V(partial) or V(pre_restore).
      type: str
      sample: complete
    path:
      description: Directory.
      type: str
      sample: /var/backups/rat/20261127_120000
    reason:
      description: Why it stays.
      type: str
      sample: keep_daily (1/7)
deleted:
  description: Entries deleted (in check mode, to be deleted), oldest first; same keys as RV(kept).
  returned: always
  type: list
  elements: dict
  sample: [{"name": "20261020_000000", "kind": "complete", "path": "/var/backups/rat/20261020_000000",
            "reason": "not kept by any rule"}]
left_alone:
  description: Timestamp directories without manifest.json, which retention never touches.
  returned: always
  type: list
  elements: str
  sample: []
leftovers:
  description: Remains of an interrupted deletion found in C(.deleting/) and removed (in check mode, to be removed).
  returned: always
  type: list
  elements: str
  sample: []
policy:
  description: The policy as applied, defaults filled in.
  returned: always
  type: dict
  sample: {"keep_within": "30d", "partial_max_age": "1d", "protect_drilled": 0}
now:
  description: The time the policy was evaluated at.
  returned: always
  type: str
  sample: "2026-11-27T12:00:00Z"
"""

import os

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.rat.backup.plugins.module_utils import fs
from ansible_collections.rat.backup.plugins.module_utils.backup_root import lock
from ansible_collections.rat.backup.plugins.module_utils.backup_root import prune
from ansible_collections.rat.backup.plugins.module_utils.backup_root import retention
from ansible_collections.rat.backup.plugins.module_utils.errors import RatBackupError, exit_with

LEASE_SECONDS = 6 * 3600
IDLE_SECONDS = 600


def argument_spec():
    return dict(
        root=dict(type="path", required=True),
        policy=dict(type="dict", required=True),
        now=dict(type="str"),
    )


def run(module):
    p = module.params
    policy = retention.check_policy(p["policy"], "policy")
    now = fs.parse_time(p["now"]) if p["now"] else fs.utcnow()
    if now is None:
        raise RatBackupError(f"now={p['now']!r} is not an ISO 8601 UTC time like 2026-11-27T12:00:00Z")
    root = p["root"]
    found = {"items": [], "left_alone": [], "leftovers": []}
    if os.path.isdir(root) and module.check_mode:
        found = prune.survey(root, policy, now, busy=lock.lock_state(root)[0])
    elif os.path.isdir(root):
        record, _stale = lock.acquire(root, "retention", LEASE_SECONDS, idle_seconds=IDLE_SECONDS)
        shipping = None
        try:
            # An off-site run reads the backups it ships for as long as the upload takes.
            shipping = lock.hold_offsite(root, f"an off-site run is shipping backups of {root}; retention deletes "
                                               "nothing meanwhile: try again when it has finished", create=False)
            found = prune.survey(root, policy, now, busy=False)
            prune.finish_leftovers(found["leftovers"])
            for item in found["items"]:
                if not item["keep"]:
                    prune.delete(root, item)
        finally:
            if shipping is not None:
                os.close(shipping)
            lock.release(root, record["token"])
    deleted = _entries(found["items"], keep=False)
    result = dict(changed=bool(deleted or found["leftovers"]), kept=_entries(found["items"], keep=True),
                  deleted=deleted, left_alone=found["left_alone"], leftovers=found["leftovers"],
                  policy=retention.describe(policy), now=fs.iso(now))
    if module._diff:
        result["diff"] = prune.diff(root, found["items"])
    return result


def _entries(items, keep):
    return [{k: v for k, v in i.items() if k != "keep"} for i in items if i["keep"] is keep]


def main():
    module = AnsibleModule(argument_spec=argument_spec(), supports_check_mode=True)
    exit_with(module, run)


if __name__ == "__main__":
    main()
