# -*- coding: utf-8 -*-
# Copyright: rat.backup contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Retention on a local backup root: what layout lists, decided by retention.plan, deleted safely.

Deletion renames a backup into ``<parent>/.deleting/`` first (the same file system, one atomic
rename, made durable), then removes it there. Listing and restore only see bare timestamps,
``.partial`` and ``pre-restore/<timestamp>``, so a crash mid-removal leaves nothing that looks
like a backup; the next run finishes what is left in ``.deleting/``.
Only what layout.list_backups recognises is ever touched: symlinks, other directories and
timestamp directories without manifest.json (not made by a backup run) are left alone. Backups
named in the future (layout.in_future) are kept and reported, never counted: one named a year
ahead would otherwise be the "newest" that keep_last keeps, and the real newest would go.
"""

from __future__ import annotations

import glob
import os

from ansible_collections.rat.backup.plugins.module_utils import fs
from ansible_collections.rat.backup.plugins.module_utils.backup_root import layout
from ansible_collections.rat.backup.plugins.module_utils.backup_root import manifest as mf
from ansible_collections.rat.backup.plugins.module_utils.backup_root import retention
from ansible_collections.rat.backup.plugins.module_utils.errors import RatBackupError

TRASH = ".deleting"


def drilled(root, name):
    """True when the restore drill recorded for this backup passed.

    The restore_drill role records ``"status": "passed"``; ``"ok": true`` (the verify records' word)
    counts as well.
    """
    record = layout.read_status(root, name).get("drill") or {}
    return record.get("status") == "passed" or record.get("ok") is True


def verified(root, name):
    """True when the last verification recorded for this backup passed (backup_verify's record)."""
    return (layout.read_status(root, name).get("verify") or {}).get("ok") is True


def survey(root, policy, now, busy):
    """Every entry of ``root`` that retention may act on, with its decision.

    Returns {"items": [{name, kind, path, keep, reason}], "left_alone": [paths], "leftovers": [paths]}.
    ``busy`` marks the .partial directories as in use (a backup holds the lock).
    """
    found = layout.list_backups(root, now)
    main, by_name, left_alone = [], {}, []
    for entry in found["complete"]:
        name = entry["name"]
        main.append(retention.Backup(name, layout.time_of(name), True, drilled(root, name),
                                     damaged=mf.damage(root, name), verified=verified(root, name)))
        by_name[entry["name"]] = entry
    for entry in found["partial"]:
        if not entry["path"].endswith(layout.PARTIAL_SUFFIX):
            left_alone.append(entry["path"])
            continue
        name = entry["name"] + layout.PARTIAL_SUFFIX
        main.append(retention.Backup(name, layout.time_of(entry["name"]), False, busy=busy))
        by_name[name] = entry
    items = [_item(by_name[d.name], d) for d in retention.plan(main, policy, now)]
    pre = {e["name"]: e for e in found["pre_restore"]}
    if "pre_restore" in policy:
        backups = [retention.Backup(n, layout.time_of(n)) for n in pre]
        items += [_item(pre[d.name], d) for d in retention.plan(backups, policy["pre_restore"], now)]
    else:
        items += [_item(e, retention.Decision(n, True, "no pre_restore rule in the policy")) for n, e in pre.items()]
    for entry in found["future"]:
        ahead = -entry["age_seconds"] / 3600.0
        items.append(_item(entry, retention.Decision(entry["name"], True, (
            f"named {ahead:.1f} h ahead of this host's clock: suspect (a wrong clock or a copied directory), never "
            "counted or deleted by retention; check it and rename or remove it by hand"))))
    leftovers = sorted(glob.glob(os.path.join(glob.escape(root), TRASH, "*"))
                       + glob.glob(os.path.join(glob.escape(root), layout.PRE_RESTORE, TRASH, "*")))
    return {"items": items, "left_alone": left_alone, "leftovers": leftovers}


def _item(entry, decision):
    return {"name": os.path.basename(entry["path"]), "kind": entry["kind"], "path": entry["path"],
            "keep": decision.keep, "reason": decision.reason}


def delete(root, item):
    """Rename one backup out of the listed namespace, make that durable, then remove it."""
    path = item["path"]
    if os.path.islink(path) or not os.path.isdir(path):
        return
    parent = os.path.dirname(path)
    trash = os.path.join(parent, TRASH)
    target = os.path.join(trash, os.path.basename(path))
    try:
        os.makedirs(trash, mode=layout.DIR_MODE, exist_ok=True)
        if os.path.lexists(target):
            layout.remove_tree(target)
        os.rename(path, target)
        fs.fsync_dir(parent)
    except OSError as exc:
        raise RatBackupError(f"cannot move {path} out of the backup list: {exc.strerror or exc}; it is still a "
                             "complete backup", path=path)
    try:
        layout.remove_tree(target)
        if item["kind"] == "complete":
            pattern = os.path.join(glob.escape(root), layout.STATUS_DIR, glob.escape(item["name"]) + ".*.json")
            for record in glob.glob(pattern):
                os.unlink(record)
    except OSError as exc:
        raise RatBackupError(f"{path} is no longer a backup but removing {target} failed: {exc.strerror or exc}; the "
                             "next retention run finishes it", path=target)
    _drop_empty(trash)


def finish_leftovers(paths):
    """Remove what a crashed run had already renamed into .deleting/ (never a listed backup)."""
    for path in paths:
        try:
            layout.remove_tree(path)
        except OSError as exc:
            raise RatBackupError(f"cannot remove {path}, left by an interrupted retention run: "
                                 f"{exc.strerror or exc}", path=path)
    for trash in {os.path.dirname(p) for p in paths}:
        _drop_empty(trash)


def _drop_empty(directory):
    try:
        os.rmdir(directory)
    except OSError:
        pass  # not empty (another deletion is under way) or already gone: both fine


def diff(root, items):
    """--diff text: the entries before and after, one relative path a line."""
    def lines(selected):
        return "".join(os.path.relpath(i["path"], root) + "\n" for i in selected)
    return {"before": lines(items), "after": lines(i for i in items if i["keep"]),
            "before_header": f"{root} (before retention)", "after_header": f"{root} (after retention)"}
