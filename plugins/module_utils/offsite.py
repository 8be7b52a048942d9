# -*- coding: utf-8 -*-
# Copyright: rat.backup contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Off-site copies of complete backups: ship (incremental, verified), verify, fetch back.

The targets (``_offsite/s3_target.py``, ``_offsite/ssh_target.py``) move bytes; this file decides
and records. Per backup and target, ``<root>/.status/<name>.offsite.json`` keeps what happened
(backup_info shows it); ``<root>/.offsite/<target>/`` keeps what an interrupted run needs to
resume (a journal of files already shipped, encrypted files staged for rsync).
"""

from __future__ import annotations

import concurrent.futures
import hashlib
import json
import os
import tarfile
import threading

from ansible_collections.rat.backup.plugins.module_utils import fs
from ansible_collections.rat.backup.plugins.module_utils import layout
from ansible_collections.rat.backup.plugins.module_utils import manifest as mf
from ansible_collections.rat.backup.plugins.module_utils import prune
from ansible_collections.rat.backup.plugins.module_utils import retention
from ansible_collections.rat.backup.plugins.module_utils.errors import RatBackupError
from ansible_collections.rat.backup.plugins.module_utils.fs import unlink_quietly
from ansible_collections.rat.backup.plugins.module_utils.lock import hold
from ansible_collections.rat.backup.plugins.module_utils._offsite import plan as pl
from ansible_collections.rat.backup.plugins.module_utils._offsite.crypt import Source, decrypt_chunks

WORK_DIR = ".offsite"
STATUS_KIND = "offsite"
MAX_BAD = 50


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
        return self.crypt is not None and self.crypt.recipients_file is not None

    def _map(self, work, items):
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
    """One off-site run per backup root at a time (held by this process until it exits)."""
    layout.ensure_root(root)
    path = os.path.join(root, WORK_DIR)
    os.makedirs(path, mode=layout.DIR_MODE, exist_ok=True)
    return hold(os.path.join(path, ".lock"),
                f"another off-site run is working on {root}; try again when it has finished")


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


def ship(run, selection="missing", check_mode=False, now=None, policy=None):
    """Ship what the target lacks, oldest first, each copy verified after shipping; then apply the
    target's retention ``policy`` (normalized by retention.check_policy). Returns a result dict."""
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
    todo = pl.choose(local, remote["complete"], _pruned(run, local), selection)
    unwanted = []
    keep = {}
    if policy:
        # A backup the target's policy would remove at once is not shipped at all.
        view = _retention_view(run, remote["complete"] + todo, [])
        keep = {d.name: d for d in retention.plan(view, policy, now or fs.utcnow())}
        unwanted = [{"name": n, "reason": keep[n].reason} for n in todo if not keep[n].keep]
        todo = [n for n in todo if keep[n].keep]
    result = {"target": run.label, "location": run.target.location(), "shipped": [], "to_ship": todo,
              "already": [n for n in local if n in set(remote["complete"])], "bytes_sent": 0,
              "not_shipped": unwanted, "removed": []}
    if check_mode:
        result["removed"] = [{"name": n, "reason": keep[n].reason, "complete": True}
                             for n in remote["complete"] if n in keep and not keep[n].keep]
        result["diff"] = _ship_diff(run, remote["complete"], result)
        return result
    for item in unwanted:
        run.record(item["name"], pruned_at=fs.iso(now or fs.utcnow()), pruned_because=item["reason"],
                   shipped=False, ok=True, error=None)
    complete = list(remote["complete"])
    for name in todo:
        try:
            done = ship_one(run, name, pl.previous(name, complete, local), now)
        except RatBackupError as exc:
            # "shipped" stays as ship_one left it: a copy that failed only its verification is off-site.
            run.record(name, ok=False, error=exc.msg, attempted_at=fs.iso(now or fs.utcnow()))
            raise RatBackupError(f"{exc.msg}; the local backup {name} is intact and the next run ships it (shipped "
                                 f"before the failure: {', '.join(r['name'] for r in result['shipped']) or 'none'})",
                                 shipped=[r["name"] for r in result["shipped"]], failed_backup=name, **exc.details)
        result["shipped"].append(done)
        result["bytes_sent"] += done["bytes_sent"]
        complete = sorted(set(complete) | {name})
    if policy:
        result["removed"] = apply_retention(run, policy, now)
    result["diff"] = _ship_diff(run, remote["complete"], result)
    return result


def _ship_diff(run, before, result):
    """--diff of a shipping run: the target's complete copies before and after, one name a line."""
    after = (set(before) | set(result["to_ship"])) - {r["name"] for r in result["removed"]}
    location = run.target.location()
    return {"before": "".join(n + "\n" for n in sorted(before)), "after": "".join(n + "\n" for n in sorted(after)),
            "before_header": f"{location} (before)", "after_header": f"{location} (after shipping and retention)"}


def _retention_view(run, complete, partial):
    """The copies on a target as retention.Backup tuples; drilled when this host's drill passed."""
    return ([retention.Backup(n, layout.time_of(n), True, prune.drilled(run.root, n)) for n in sorted(set(complete))]
            + [retention.Backup(n, layout.time_of(n), False) for n in sorted(set(partial))])


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


def ship_one(run, name, prev, now=None):
    backup_dir = os.path.join(run.root, name)
    data = mf.read(backup_dir)
    files = mf.expected_files(data, backup_dir)
    prev_files, prev_index = {}, {}
    if prev:
        prev_dir = os.path.join(run.root, prev)
        prev_files = mf.expected_files(mf.read(prev_dir), prev_dir)
        prev_index = pl.parse_index(run.target.read(prev, pl.INDEX), run.target.location(prev))["files"]
    journal = Journal(os.path.join(run.work, name + ".journal"))
    sent_before = run.target.bytes_sent
    run.target.begin(name)
    done = _still_there(run, name, journal.entries)
    plan = pl.plan_files(files, run.encrypted, prev_files, prev_index, done)
    run.log(f"{name}: {len(files)} files, {len(plan['link'])} unchanged since {prev}, {len(plan['send'])} to send, "
            f"{len(plan['done'])} already shipped")
    entries = [item for _rel, _stored, item in plan["done"]]
    linked = run.target.link(name, prev, [item for _rel, _stored, item in plan["link"]], run._map)
    entries += [journal.add(item) for item in linked] if run.target.kind == "s3" else linked
    if run.target.kind == "s3":
        entries += run._map(lambda t: journal.add(run.target.send(
            name, t[0], t[1], Source(os.path.join(backup_dir, t[0]), run.crypt), t[2])), plan["send"])
    else:
        entries += _ship_ssh(run, name, backup_dir, plan, journal)
    index = pl.build_index(name, run.host, run.encrypted, _recipients(run), entries)
    run.target.put_bytes(name, pl.INDEX, pl.index_text(index).encode("utf-8"))
    source = Source(os.path.join(backup_dir, layout.MANIFEST), run.crypt if run.encrypted else None)
    run.target.put_bytes(name, pl.manifest_name(run.encrypted), b"".join(source.chunks()))
    run.target.commit(name)
    journal.remove()
    layout.remove_tree(os.path.join(run.work, name))
    checked = check_copy(run, name, files)
    sent = run.target.bytes_sent - sent_before
    run.record(name, ok=not checked["bad"], shipped=True, shipped_at=fs.iso(now or fs.utcnow()),
               encrypted=run.encrypted, files=len(files), linked=len(plan["link"]), sent=len(plan["send"]),
               resumed=len(plan["done"]), bytes_sent=sent, error=None, **_verified(checked, now))
    if checked["bad"]:
        raise RatBackupError(f"off-site copy {run.target.location(name)} failed verification right after shipping: "
                             f"{'; '.join(checked['bad'][:10])}", bad=checked["bad"])
    return {"name": name, "previous": prev, "files": len(files), "linked": len(plan["link"]),
            "sent": len(plan["send"]), "resumed": len(plan["done"]), "bytes_sent": sent,
            "location": run.target.location(name), "verified": checked["mode"]}


def _recipients(run):
    if not run.encrypted:
        return []
    with open(run.crypt.recipients_file) as handle:
        return [line.strip() for line in handle if line.strip()]


def _still_there(run, name, journaled):
    """Journal entries of an interrupted run whose object is still on the target, same size and ETag."""
    if not journaled or run.target.kind != "s3":
        return {}
    listing = run.target.listing(name)
    return {rel: item for rel, item in journaled.items()
            if listing.get(item["stored"], {}).get("size") == item["size"]
            and listing[item["stored"]].get("etag") == item.get("etag")}


def _ship_ssh(run, name, backup_dir, plan, journal):
    if run.encrypted:
        staging = os.path.join(run.work, name)
        sent = run._map(lambda t: _stage(run, staging, backup_dir, t, journal), plan["send"])
        local_dir = staging
    else:
        sent = [pl.entry(rel, stored, want["size"], want["sha256"]) for rel, stored, want in plan["send"]]
        local_dir = backup_dir
    run.target.send(local_dir, name, [item["stored"] for item in sent])
    # What landed is read back on the server and must be what was hashed here before it left.
    landed = run.target.hashes(name, [item["stored"] for item in sent], partial=True)
    wrong = [item["path"] for item in sent if landed.get(item["stored"]) != item["sha256"]]
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
                             "manifest.json while encrypting it): not shipped; verify the local backup", path=rel)
    os.rename(tmp, dest)
    return journal.add(pl.entry(rel, stored, source.stored_size, source.stored_sha256))


def _verified(checked, now):
    return {"verified_at": fs.iso(now or fs.utcnow()), "verify_mode": checked["mode"],
            "verified": not checked["bad"], "bad": checked["bad"][:MAX_BAD]}


def check_copy(run, name, files=None, mode=None):
    """Verify one complete off-site copy: listing vs index (and manifest when local); full reads back."""
    mode = mode or run.verify_mode
    index = pl.parse_index(run.target.read(name, pl.INDEX), run.target.location(name))
    listing = run.target.listing(name)
    hashes = None
    if mode == "full":
        hashes = run.target.hashes(name, [item["stored"] for item in index["files"].values()])
    bad = pl.bad_lines(pl.compare(index, listing, files, hashes))
    return {"name": name, "mode": mode, "bad": bad, "files": len(index["files"]),
            "location": run.target.location(name)}


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
        checked = check_copy(run, name, files)
        if os.path.isdir(local):
            run.record(name, **_verified(checked, now))
        results.append(checked)
    return {"target": run.label, "location": run.target.location(), "checked": results,
            "bad": [line for r in results for line in (f"{r['name']}/{b}" for b in r["bad"])]}


def remote_backups(run):
    run.target.check()
    return run.target.backups()


def fetch(run, name, check_mode=False, now=None):
    """Fetch one off-site copy into ``<root>/<name>``: decrypted, each file checked against the manifest
    as it is written, manifest.json in place last and the directory renamed only then."""
    remote = run.target.backups()["complete"]
    if name == "latest":
        # Never a copy named in the future (a wrong clock where it was made): layout.newest.
        name = layout.newest(remote, now or fs.utcnow())
        if name is None:
            raise RatBackupError(f"no complete off-site copy at {run.target.location()} that is not named in the "
                                 f"future; available: {', '.join(remote) or 'none'}", available=remote)
    name = layout.check_name(name, "rat_offsite_fetch_backup")
    if name not in remote:
        raise RatBackupError(f"no complete off-site copy {name} at {run.target.location()}; available: "
                             f"{', '.join(remote) or 'none'}", available=remote)
    final = os.path.join(run.root, name)
    result = {"name": name, "path": final, "location": run.target.location(name), "changed": False}
    if os.path.isdir(final):
        result["msg"] = f"{final} already exists locally: nothing fetched"
        return result
    result["changed"] = True
    if check_mode:
        return result
    index = pl.parse_index(run.target.read(name, pl.INDEX), run.target.location(name))
    raw = run.target.read(name, pl.manifest_name(index["encrypted"]))
    if index["encrypted"]:
        raw = b"".join(decrypt_chunks(run.crypt, iter([raw]), f"manifest.json of {name}"))
    layout.ensure_root(run.root)
    partial = final + layout.PARTIAL_SUFFIX
    layout.remove_tree(partial)
    os.makedirs(partial, mode=layout.DIR_MODE)
    try:
        fs.write_text_atomic(os.path.join(partial, layout.MANIFEST), raw.decode("utf-8"))
        data = mf.read(partial)
        files = mf.expected_files(data, final)
        absent = sorted(set(files) - set(index["files"]))
        if absent:
            raise RatBackupError(f"off-site copy {name} lacks {len(absent)} files of its manifest: "
                                 f"{', '.join(absent[:10])}", bad=absent)
        linked = _link_local(run.root, partial, files)
        todo = [rel for rel in sorted(files) if rel not in linked]
        if run.target.kind == "s3":
            run._map(lambda rel: _write_checked(run, partial, rel, files[rel], index, run.target.chunks(
                name, index["files"][rel]["stored"])), todo)
        else:
            _fetch_tar(run, name, partial, files, index, todo)
        layout.secure_tree(partial)
        layout.sync_tree(partial)
        os.rename(partial, final)
        fs.fsync_dir(run.root)
    except BaseException:
        layout.remove_tree(partial)
        raise
    run.record(name, fetched_at=fs.iso(now or fs.utcnow()), fetched_from=run.target.location(name))
    result.update(files=len(files), linked=len(linked), fetched=len(todo), encrypted=index["encrypted"],
                  summary=mf.summary(data))
    return result


def _link_local(root, partial, files):
    """Files equal (path, size, sha256) to one of the newest local backup: hard links, not downloads."""
    previous = layout.previous_complete(root)
    if not previous:
        return set()
    try:
        before = mf.expected_files(mf.read(previous["path"]), previous["path"])
    except RatBackupError:
        return set()
    linked = set()
    for rel, want in files.items():
        had = before.get(rel)
        if had and had["sha256"] == want["sha256"] and had["size"] == want["size"]:
            dest = os.path.join(partial, rel)
            os.makedirs(os.path.dirname(dest), mode=layout.DIR_MODE, exist_ok=True)
            try:
                os.link(os.path.join(previous["path"], rel), dest, follow_symlinks=False)
                linked.add(rel)
            except OSError:
                continue
    return linked


def _write_checked(run, partial, rel, want, index, chunks):
    """Write one fetched file (decrypting it), hashing as it is written; refuse one unlike the manifest."""
    if index["encrypted"]:
        chunks = decrypt_chunks(run.crypt, chunks, f"{rel} of {index['name']}")
    dest = os.path.join(partial, rel)
    os.makedirs(os.path.dirname(dest), mode=layout.DIR_MODE, exist_ok=True)
    digest, size = hashlib.sha256(), 0
    fd = os.open(dest, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, fs.FILE_MODE)
    try:
        with os.fdopen(fd, "wb") as handle:
            for block in chunks:
                digest.update(block)
                size += len(block)
                handle.write(block)
    except RatBackupError as exc:
        raise RatBackupError(f"fetch refused: {rel} of off-site copy {run.target.location(index['name'])} could not "
                             f"be read back: {exc.msg}; nothing was put in place", bad=[rel])
    if digest.hexdigest() != want["sha256"] or size != want["size"]:
        raise RatBackupError(f"fetch refused: {rel} of off-site copy {run.target.location(index['name'])} is not the "
                             "file its manifest records (sha256/size differ); nothing was put in place", bad=[rel])
    return rel


def _fetch_tar(run, name, partial, files, index, todo):
    stream = run.target.tar_stream(name, [index["files"][rel]["stored"] for rel in todo])
    by_stored = {index["files"][rel]["stored"]: rel for rel in todo}
    complete = False
    try:
        with tarfile.open(fileobj=stream, mode="r|") as archive:
            for member in archive:
                rel = by_stored.get(member.name)
                if rel is None or not member.isfile():
                    continue
                handle = archive.extractfile(member)
                _write_checked(run, partial, rel, files[rel], index, iter(lambda: handle.read(fs.CHUNK), b""))
                del by_stored[member.name]
        complete = True
    finally:
        stream.close(complete)
    if by_stored:
        raise RatBackupError(f"fetch refused: off-site copy {run.target.location(name)} did not send "
                             f"{', '.join(sorted(by_stored.values())[:10])}", bad=sorted(by_stored.values()))
