# -*- coding: utf-8 -*-
# Copyright: rat.backup contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Shipping one backup to an off-site target (private to the ``offsite`` face): unchanged files linked
from the previous good copy, the rest sent (encrypted when keys are given; staged for rsync), journaled
for a resumed run, then the index and manifest last, commit, and a check of the copy.
"""

from __future__ import annotations

import hashlib
import os

from ansible_collections.rat.backup.plugins.module_utils import fs
from ansible_collections.rat.backup.plugins.module_utils.backup_root import layout
from ansible_collections.rat.backup.plugins.module_utils.backup_root import manifest as mf
from ansible_collections.rat.backup.plugins.module_utils.errors import RatBackupError
from ansible_collections.rat.backup.plugins.module_utils._offsite import check as copy_check
from ansible_collections.rat.backup.plugins.module_utils._offsite import plan as pl
from ansible_collections.rat.backup.plugins.module_utils._offsite.crypt import Source
from ansible_collections.rat.backup.plugins.module_utils._offsite.run import Journal


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
