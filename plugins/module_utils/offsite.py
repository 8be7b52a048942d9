# -*- coding: utf-8 -*-
# Copyright: rat.backup contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Off-site copies of complete backups: ship (incremental, verified) and verify them.

The targets (``_offsite/s3_target.py``, ``_offsite/ssh_target.py``) move bytes, ``_offsite/fetch.py``
brings a copy back; this file decides and records. Per backup and target, ``<root>/.status/<name>.offsite.json`` keeps what happened
(backup_info shows it); ``<root>/.offsite/<target>/`` keeps what an interrupted run needs to
resume (a journal of files already shipped, encrypted files staged for rsync).
"""

from __future__ import annotations

import concurrent.futures
import hashlib
import json
import os
import threading

from ansible_collections.rat.backup.plugins.module_utils import fs
from ansible_collections.rat.backup.plugins.module_utils.backup_root import layout
from ansible_collections.rat.backup.plugins.module_utils.backup_root import manifest as mf
from ansible_collections.rat.backup.plugins.module_utils.backup_root import prune
from ansible_collections.rat.backup.plugins.module_utils.backup_root import retention
from ansible_collections.rat.backup.plugins.module_utils.errors import RatBackupError
from ansible_collections.rat.backup.plugins.module_utils.fs import unlink_quietly
from ansible_collections.rat.backup.plugins.module_utils.backup_root.lock import OFFSITE_DIR, hold_offsite, lock_state
from ansible_collections.rat.backup.plugins.module_utils._offsite import check as copy_check
from ansible_collections.rat.backup.plugins.module_utils._offsite import plan as pl
from ansible_collections.rat.backup.plugins.module_utils._offsite.crypt import Source

WORK_DIR = OFFSITE_DIR
STATUS_KIND = "offsite"


class Run:
    """One off-site run on one target: where, how, and the counters it reports."""

    def __init__(self, root, target, label, host, crypt=None, parallel=4, verify_mode="quick", log=None):
        self.root = root
        self.target = target
        self.label = label
        self.host = host
        self.crypt = crypt
        self.parallel = max(1, int(parallel))
        self.verify_mode = verify_mode
        self.log = log or (lambda text: None)
        self.work = os.path.join(root, WORK_DIR, label)

    @property
    def encrypted(self):
        return self.crypt is not None and bool(self.crypt.recipients)

    @property
    def recipients(self):
        return self.crypt.recipients if self.encrypted else []

    def map(self, work, items):
        if not items:
            return []
        with concurrent.futures.ThreadPoolExecutor(max_workers=min(self.parallel, len(items))) as pool:
            return list(pool.map(work, items))

    # --- status records ---
    def status(self, name):
        return (layout.read_status(self.root, name).get(STATUS_KIND) or {}).get("targets", {}).get(self.label, {})

    def record(self, name, **fields):
        current = layout.read_status(self.root, name).get(STATUS_KIND) or {"targets": {}}
        mine = dict(current["targets"].get(self.label, {}), kind=self.target.kind, location=self.target.location(name))
        mine.update(fields)
        current["targets"][self.label] = mine
        layout.write_status(self.root, name, STATUS_KIND, current)
        return mine


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


class Journal:
    """Index entries of files already shipped (or staged) for one backup: what a rerun skips."""

    def __init__(self, path):
        self.path = path
        self.lock = threading.Lock()
        self.entries = {}
        try:
            for item in fs.json_lines(path):
                if isinstance(item, dict) and isinstance(item.get("path"), str):
                    self.entries[item["path"]] = item
        except OSError:
            pass

    def add(self, item):
        with self.lock:
            os.makedirs(os.path.dirname(self.path), mode=layout.DIR_MODE, exist_ok=True)
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, fs.FILE_MODE)
            with os.fdopen(fd, "ab") as handle:
                handle.write((json.dumps(item, sort_keys=True) + "\n").encode("utf-8"))
            self.entries[item["path"]] = item
        return item

    def remove(self):
        unlink_quietly(self.path)


def _local_names(root):
    return [b["name"] for b in layout.list_backups(root)["complete"]]


def _pruned(run, names):
    return {n for n in names if run.status(n).get("pruned_at")}


def _failed(run, names):
    """Copies complete off-site whose last verification failed: not complete, shipped again."""
    return {n for n in names if run.status(n).get("verified") is False}


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
    unwanted = []
    keep = {}
    if policy:
        # A backup the target's policy would remove at once is not shipped at all.
        view = _retention_view(run, complete + todo, [], shipping=todo)
        keep = {d.name: d for d in retention.plan(view, policy, now or fs.utcnow())}
        unwanted = [{"name": n, "reason": keep[n].reason} for n in todo if not keep[n].keep]
        todo = [n for n in todo if keep[n].keep]
    result = {"target": run.label, "location": run.target.location(), "shipped": [], "to_ship": todo,
              "already": [n for n in local if n in set(complete)], "bytes_sent": 0,
              "not_shipped": unwanted, "removed": [], "damaged": []}
    if check_mode:
        result["removed"] = [{"name": n, "reason": keep[n].reason, "complete": True}
                             for n in remote["complete"] if n in keep and not keep[n].keep]
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


def _retention_view(run, complete, partial, shipping=()):
    """The copies on a target as retention.Backup tuples; drilled when this host's drill passed. A copy
    whose last verification failed counts toward no rule, so the last good copy is never removed for
    it; those ``shipping`` count as verified (each is verified after shipping, or the run stops)."""
    view = []
    for name in sorted(set(complete)):
        verified = True if name in shipping else run.status(name).get("verified")
        view.append(retention.Backup(name, layout.time_of(name), True, prune.drilled(run.root, name),
                                     damaged="failed its last off-site verification" if verified is False else None,
                                     verified=verified is True))
    return view + [retention.Backup(n, layout.time_of(n), False) for n in sorted(set(partial))]


def apply_retention(run, policy, now=None):
    """Remove the copies the policy does not keep; each removal makes the copy incomplete first."""
    remote = run.target.backups()
    removed = []
    for decision in retention.plan(_retention_view(run, remote["complete"], remote["partial"]), policy,
                                   now or fs.utcnow()):
        if decision.keep:
            continue
        partial = decision.name not in remote["complete"]
        run.target.remove(decision.name)
        if not partial and os.path.isdir(os.path.join(run.root, decision.name)):
            run.record(decision.name, pruned_at=fs.iso(now or fs.utcnow()), pruned_because=decision.reason)
        removed.append({"name": decision.name, "reason": decision.reason, "complete": not partial})
    return removed


def ship_one(run, name, prev, now=None, replace=False):
    """Ship one backup, linking unchanged files from copy ``prev``; ``replace``: the target holds a copy
    of ``name`` that failed verification, removed first. Errors about the local backup carry ``local``."""
    backup_dir = os.path.join(run.root, name)
    try:
        data = mf.read(backup_dir)
        files = mf.expected_files(data, backup_dir)
    except RatBackupError as exc:
        raise RatBackupError(f"the local backup {name} is damaged: {exc.msg}", local=backup_dir)
    prev, prev_files, prev_index = _link_source(run, prev, now)
    if replace:
        run.log(f"{name}: the copy off-site failed verification: removed and shipped again")
        run.target.remove(name)
    journal = Journal(os.path.join(run.work, f"{name}.{_keys_id(run)}.journal"))
    sent_before = run.target.bytes_sent
    run.target.begin(name)
    done = _still_there(run, name, journal.entries)
    plan = pl.plan_files(files, run.encrypted, prev_files, prev_index, done)
    run.log(f"{name}: {len(files)} files, {len(plan['link'])} unchanged since {prev}, {len(plan['send'])} to send, "
            f"{len(plan['done'])} already shipped")
    entries = [item for _rel, _stored, item in plan["done"]]
    linked = run.target.link(name, prev, [item for _rel, _stored, item in plan["link"]], run.map)
    entries += [journal.add(item) for item in linked] if run.target.kind == "s3" else linked
    if run.target.kind == "s3":
        entries += run.map(lambda t: journal.add(run.target.send(
            name, t[0], t[1], Source(os.path.join(backup_dir, t[0]), run.crypt), t[2])), plan["send"])
    else:
        entries += _ship_ssh(run, name, backup_dir, files, plan, journal)
    stored_manifest = b"".join(Source(os.path.join(backup_dir, layout.MANIFEST),
                                      run.crypt if run.encrypted else None).chunks())
    index = pl.build_index(name, run.host, run.encrypted, run.recipients, entries,
                           pl.manifest_binding(stored_manifest, run.encrypted, data))
    run.target.put_bytes(name, pl.INDEX, pl.index_text(index).encode("utf-8"))
    run.target.put_bytes(name, pl.manifest_name(run.encrypted), stored_manifest)
    run.target.commit(name)
    journal.remove()
    layout.remove_tree(os.path.join(run.work, name))
    checked = copy_check.check_copy(run, name, files)
    sent = run.target.bytes_sent - sent_before
    run.record(name, ok=not checked["bad"], shipped=True, shipped_at=fs.iso(now or fs.utcnow()),
               encrypted=run.encrypted, files=len(files), linked=len(plan["link"]), sent=len(plan["send"]),
               resumed=len(plan["done"]), bytes_sent=sent, error=None, damaged=False, **copy_check.verified(checked, now))
    if checked["bad"]:
        raise RatBackupError(f"off-site copy {run.target.location(name)} failed verification right after shipping: "
                             f"{'; '.join(checked['bad'][:10])}", bad=checked["bad"])
    return {"name": name, "previous": prev, "files": len(files), "linked": len(plan["link"]),
            "sent": len(plan["send"]), "resumed": len(plan["done"]), "bytes_sent": sent,
            "location": run.target.location(name), "verified": checked["mode"]}


def _link_source(run, prev, now):
    """(prev, its manifest's files, its index files) when unchanged files may come from copy ``prev``:
    made for the same age recipients (else they would stay readable only with the old keys) and
    still listed as its index says (else a damaged file would be copied on). Otherwise (None, {}, {})."""
    if not prev:
        return None, {}, {}
    prev_dir = os.path.join(run.root, prev)
    try:
        prev_files = mf.expected_files(mf.read(prev_dir), prev_dir)
    except RatBackupError:
        return None, {}, {}
    checked = copy_check.check_copy(run, prev, mode="quick", manifest=False)
    if checked["bad"]:
        run.record(prev, ok=False, **copy_check.verified(checked, now))
        return None, {}, {}
    index = checked["index"]
    if not pl.same_keys(index, run.encrypted, run.recipients):
        run.log(f"{prev} off-site was made for other age recipients: nothing is reused from it")
        return None, {}, {}
    return prev, prev_files, index["files"]


def _keys_id(run):
    """Names the journal after the keys its files were encrypted for: a rerun with other keys ignores it."""
    if not run.encrypted:
        return "plain"
    return hashlib.sha256("\n".join(run.recipients).encode("utf-8")).hexdigest()[:12]


def _still_there(run, name, journaled):
    """Journal entries of an interrupted run whose object is still on the target, same size and ETag."""
    if not journaled or run.target.kind != "s3":
        return {}
    listing = run.target.listing(name)
    return {rel: item for rel, item in journaled.items()
            if listing.get(item["stored"], {}).get("size") == item["size"]
            and listing[item["stored"]].get("etag") == item.get("etag")}


def _ship_ssh(run, name, backup_dir, files, plan, journal):
    if run.encrypted:
        staging = os.path.join(run.work, name)
        sent = run.map(lambda t: _stage(run, staging, backup_dir, t, journal), plan["send"])
        local_dir = staging
    else:
        sent = [pl.entry(rel, stored, want["size"], want["sha256"]) for rel, stored, want in plan["send"]]
        local_dir = backup_dir
    run.target.send(local_dir, name, [item["stored"] for item in sent])
    # What landed is read back on the server and must be what was hashed here before it left.
    landed = run.target.hashes(name, [item["stored"] for item in sent], partial=True)
    wrong = [item["path"] for item in sent if landed.get(item["stored"]) != item["sha256"]]
    # Unencrypted files went straight from the backup: one that differs there too is local damage.
    rotten = [rel for rel in wrong
              if not run.encrypted and fs.sha256_file(os.path.join(backup_dir, rel)) != files[rel]["sha256"]]
    if rotten:
        raise RatBackupError(f"{', '.join(rotten[:10])} of {backup_dir} changed since the backup was made (sha256 "
                             "differs from manifest.json): not committed off-site; verify the local backup",
                             bad=rotten, local=backup_dir)
    if wrong:
        raise RatBackupError(f"off-site target {run.target.location(name)} holds other bytes than were sent for: "
                             f"{', '.join(wrong[:10])}; nothing was committed", bad=wrong)
    return sent


def _stage(run, staging, backup_dir, task, journal):
    """Encrypt one file into the staging directory rsync sends from (kept for a resumed run)."""
    rel, stored, want = task
    dest = os.path.join(staging, stored)
    known = journal.entries.get(rel)
    if known and known.get("stored") == stored and os.path.isfile(dest) and os.path.getsize(dest) == known["size"]:
        return known
    os.makedirs(os.path.dirname(dest), mode=layout.DIR_MODE, exist_ok=True)
    source = Source(os.path.join(backup_dir, rel), run.crypt)
    tmp = dest + ".tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, fs.FILE_MODE)
    with os.fdopen(fd, "wb") as handle:
        for block in source.chunks():
            handle.write(block)
    if source.plain_sha256 != want["sha256"] or source.plain_size != want["size"]:
        os.unlink(tmp)
        raise RatBackupError(f"{source.path} changed since the backup was made (sha256/size differ from "
                             "manifest.json while encrypting it): not shipped; verify the local backup", path=rel,
                             local=source.path)
    os.rename(tmp, dest)
    return journal.add(pl.entry(rel, stored, source.stored_size, source.stored_sha256))


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
