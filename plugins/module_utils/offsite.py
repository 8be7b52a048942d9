# -*- coding: utf-8 -*-
# Copyright: rat.backup contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Off-site copies of complete backups: ship (incremental, verified) and verify them.

The targets (``_offsite/s3_target.py``, ``_offsite/ssh_target.py``) move bytes, ``_offsite/ship.py``
ships one backup, ``_offsite/fetch.py`` brings a copy back, ``_offsite/run.py`` is one run (its
status records, journal, and the pieces a module's options make); this file decides what to ship,
applies retention and verifies. Per backup and target, ``<root>/.status/<name>.offsite.json`` keeps what happened
(backup_info shows it); ``<root>/.offsite/<target>/`` keeps what an interrupted run needs to
resume (a journal of files already shipped, encrypted files staged for rsync).
"""

from __future__ import annotations

import os

from ansible_collections.rat.backup.plugins.module_utils import fs
from ansible_collections.rat.backup.plugins.module_utils.backup_root import layout
from ansible_collections.rat.backup.plugins.module_utils.backup_root import manifest as mf
from ansible_collections.rat.backup.plugins.module_utils.backup_root import prune
from ansible_collections.rat.backup.plugins.module_utils.backup_root import retention
from ansible_collections.rat.backup.plugins.module_utils.errors import RatBackupError
from ansible_collections.rat.backup.plugins.module_utils.fs import unlink_quietly
from ansible_collections.rat.backup.plugins.module_utils.backup_root.lock import hold_offsite, lock_state
from ansible_collections.rat.backup.plugins.module_utils._offsite import check as copy_check
from ansible_collections.rat.backup.plugins.module_utils._offsite import plan as pl
from ansible_collections.rat.backup.plugins.module_utils._offsite.ship import ship_one
# The face's names for the rest (the backup_offsite module calls offsite.Run, offsite.fetch, ...); the
# definitions live in _offsite/.
from ansible_collections.rat.backup.plugins.module_utils._offsite.fetch import fetch  # pylint: disable=unused-import
from ansible_collections.rat.backup.plugins.module_utils._offsite.plan import Throttle  # pylint: disable=unused-import
from ansible_collections.rat.backup.plugins.module_utils._offsite.run import (  # pylint: disable=unused-import
    Run, make_crypt, make_target, selection)


def lock(root):
    """One off-site run per backup root at a time (held by this process until it exits). Retention
    takes the same lock while it deletes, so nothing is deleted under a shipment; a retention run
    that started before this root had an off-site lock shows in the host lock instead."""
    layout.ensure_root(root)
    fd = hold_offsite(root, f"another off-site run, or retention, is working on {root}; try again when it has "
                            "finished")
    held, record = lock_state(root)
    if held and record.get("purpose") == "retention":
        os.close(fd)
        raise RatBackupError(f"retention is deleting backups of {root} (pid {record.get('pid', '?')}); try again when "
                             "it has finished")
    return fd


def _local_names(root):
    return [b["name"] for b in layout.list_backups(root)["complete"]]


def _pruned(run, names):
    return {n for n in names if run.status(n).get("pruned_at")}


def _failed(run, names):
    """Copies complete off-site whose last verification failed: not complete, shipped again."""
    return {n for n in names if run.status(n).get("verified") is False}


def _known_damaged(run, names):
    """Local backups an earlier run found damaged while shipping them, with what it found.

    Their bytes will not mend by themselves: shipping them on every run would upload the same
    broken backup again and again. They stay reported; naming one in the selection tries again.
    """
    found = {}
    for name in names:
        status = run.status(name)
        if status.get("damaged") and not status.get("shipped"):
            found[name] = (f"found damaged on {status.get('attempted_at') or 'an earlier run'}: {status.get('error')}; "
                           "not shipped again (name it in the selection to try again)")
    return found


def _suspect(names, now):
    """Copies named beyond this host's clock (layout.in_future): never counted or removed by retention."""
    return [n for n in names if layout.in_future(n, now)]


def ship(run, selection="missing", check_mode=False, now=None, policy=None):
    """Ship what the target lacks, oldest first, each copy verified after shipping; then apply the
    target's retention ``policy`` (normalized by retention.check_policy). Returns a result dict.

    A local backup found damaged while it is read (a file unlike its manifest, a manifest that
    cannot be read) is skipped and reported in ``damaged``; the others are still shipped.
    """
    local = _local_names(run.root)
    try:
        run.target.check()
        remote = run.target.backups()
    except RatBackupError as exc:
        pending = [n for n in local if not run.status(n).get("shipped") and not run.status(n).get("pruned_at")]
        if not check_mode:
            for name in pending:
                run.record(name, ok=False, error=exc.msg, attempted_at=fs.iso(now or fs.utcnow()))
        raise RatBackupError(f"{exc.msg}; the local backups are intact and the next run ships "
                             f"{', '.join(pending) or 'what is missing'}", pending=pending, **exc.details)
    failed = _failed(run, remote["complete"])
    complete = [n for n in remote["complete"] if n not in failed]
    todo = pl.choose(local, complete, _pruned(run, local), selection)
    skipped = _known_damaged(run, todo) if selection in pl.SELECTIONS else {}
    todo = [n for n in todo if n not in skipped]
    unwanted = []
    keep = {}
    if policy:
        # A backup the target's policy would remove at once is not shipped at all.
        view = _retention_view(run, complete + todo, [], now or fs.utcnow(), shipping=todo)
        keep = {d.name: d for d in retention.plan(view, policy, now or fs.utcnow())}
        unwanted = [{"name": n, "reason": keep[n].reason} for n in todo if not keep[n].keep]
        todo = [n for n in todo if keep[n].keep]
    result = {"target": run.label, "location": run.target.location(), "shipped": [], "to_ship": todo,
              "already": [n for n in local if n in set(complete)], "bytes_sent": 0,
              "not_shipped": unwanted, "removed": [], "suspect": [],
              "damaged": [{"name": n, "error": e} for n, e in sorted(skipped.items())]}
    if check_mode:
        result["removed"] = [{"name": n, "reason": keep[n].reason, "complete": True}
                             for n in remote["complete"] if n in keep and not keep[n].keep]
        result["suspect"] = _suspect_report(remote, now) if policy else []
        result["diff"] = _ship_diff(run, complete, result)
        return result
    for item in unwanted:
        run.record(item["name"], pruned_at=fs.iso(now or fs.utcnow()), pruned_because=item["reason"],
                   shipped=False, ok=True, error=None)
    for name in todo:
        # Files are reused only from a copy whose last verification passed.
        verified = [n for n in complete if run.status(n).get("verified") is True]
        try:
            done = ship_one(run, name, pl.previous(name, verified, local), now, replace=name in failed)
        except RatBackupError as exc:
            run.record(name, ok=False, error=exc.msg, damaged=bool(exc.details.get("local")),
                       attempted_at=fs.iso(now or fs.utcnow()))
            if exc.details.get("local"):
                _drop_damaged(run, name, name in remote["complete"])
                result["damaged"].append({"name": name, "error": exc.msg})
                continue
            raise RatBackupError(f"{exc.msg}; the local backup {name} is intact and the next run ships it (shipped "
                                 f"before the failure: {', '.join(r['name'] for r in result['shipped']) or 'none'})",
                                 shipped=[r["name"] for r in result["shipped"]], failed_backup=name,
                                 damaged=result["damaged"], **exc.details)
        result["shipped"].append(done)
        result["bytes_sent"] += done["bytes_sent"]
        complete = sorted(set(complete) | {name})
    if policy:
        result["removed"] = apply_retention(run, policy, now)
        result["suspect"] = _suspect_report(remote, now)
    result["diff"] = _ship_diff(run, [n for n in remote["complete"] if n not in failed], result)
    return result


def _drop_damaged(run, name, complete_off_site):
    """What the attempt on a damaged local backup left: its journal, staged files and partial copy."""
    for journal in os.listdir(run.work) if os.path.isdir(run.work) else []:
        if journal.startswith(name + ".") and journal.endswith(".journal"):
            unlink_quietly(os.path.join(run.work, journal))
    layout.remove_tree(os.path.join(run.work, name))
    if not complete_off_site:
        run.target.remove(name)


def _ship_diff(run, before, result):
    """--diff of a shipping run: the target's complete copies before and after, one name a line."""
    after = (set(before) | set(result["to_ship"])) - {r["name"] for r in result["removed"]}
    location = run.target.location()
    return {"before": "".join(n + "\n" for n in sorted(before)), "after": "".join(n + "\n" for n in sorted(after)),
            "before_header": f"{location} (before)", "after_header": f"{location} (after shipping and retention)"}


def _retention_view(run, complete, partial, now, shipping=()):
    """The copies on a target as retention.Backup tuples; drilled when this host's drill passed. A copy
    whose last verification failed counts toward no rule, so the last good copy is never removed for
    it; those ``shipping`` count as verified (each is verified after shipping, or the run stops)."""
    view = []
    for name in sorted(set(complete) - set(_suspect(complete, now))):
        verified = True if name in shipping else run.status(name).get("verified")
        view.append(retention.Backup(name, layout.time_of(name), True, prune.drilled(run.root, name),
                                     damaged="failed its last off-site verification" if verified is False else None,
                                     verified=verified is True))
    partial = sorted(set(partial) - set(_suspect(partial, now)))
    return view + [retention.Backup(n, layout.time_of(n), False) for n in partial]


def _suspect_report(remote, now):
    names = _suspect(remote["complete"] + remote["partial"], now or fs.utcnow())
    return [{"name": n, "reason": "named ahead of this host's clock: suspect (a wrong clock where it was made), never "
                                  "counted or removed by retention; check it and remove it by hand"} for n in sorted(names)]


def apply_retention(run, policy, now=None):
    """Remove the copies the policy does not keep; each removal makes the copy incomplete first."""
    remote = run.target.backups()
    removed = []
    now = now or fs.utcnow()
    for decision in retention.plan(_retention_view(run, remote["complete"], remote["partial"], now), policy, now):
        if decision.keep:
            continue
        partial = decision.name not in remote["complete"]
        run.target.remove(decision.name)
        if not partial and os.path.isdir(os.path.join(run.root, decision.name)):
            run.record(decision.name, pruned_at=fs.iso(now or fs.utcnow()), pruned_because=decision.reason)
        removed.append({"name": decision.name, "reason": decision.reason, "complete": not partial})
    return removed


def verify(run, names=None, now=None):
    """Verify the complete off-site copies (all, or ``names``); records each result."""
    run.target.check()
    remote = run.target.backups()["complete"]
    names = remote if not names else names
    missing = sorted(set(names) - set(remote))
    results = []
    for name in names:
        if name in missing:
            results.append({"name": name, "mode": run.verify_mode, "bad": [f"{name}: no complete copy off-site"]})
            continue
        local = os.path.join(run.root, name)
        files = mf.expected_files(mf.read(local), local) if os.path.isfile(os.path.join(local, layout.MANIFEST)) else None
        checked = copy_check.check_copy(run, name, files)
        if os.path.isdir(local):
            run.record(name, **copy_check.verified(checked, now))
        results.append({k: v for k, v in checked.items() if k != "index"})
    return {"target": run.label, "location": run.target.location(), "checked": results,
            "bad": [line for r in results for line in (f"{r['name']}/{b}" for b in r["bad"])]}


def remote_backups(run):
    run.target.check()
    return run.target.backups()
