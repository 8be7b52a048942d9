# -*- coding: utf-8 -*-
# Copyright: rat.backup contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Fetching one off-site copy back into ``<root>/<name>``, for the restore role to use unchanged.

Nothing is trusted on its way back: the index must name this copy, the stored manifest must be
the one the index binds (size, sha256) and, decrypted, must name this backup; every file is
hashed as it is written (downloaded) or before it is kept (hard-linked from the newest local
backup) and compared with the manifest. The directory is renamed into place only then.
"""

from __future__ import annotations

import hashlib
import os
import tarfile

from ansible_collections.rat.backup.plugins.module_utils import fs
from ansible_collections.rat.backup.plugins.module_utils.backup_root import layout
from ansible_collections.rat.backup.plugins.module_utils.backup_root import manifest as mf
from ansible_collections.rat.backup.plugins.module_utils.errors import RatBackupError
from ansible_collections.rat.backup.plugins.module_utils._offsite import plan as pl
from ansible_collections.rat.backup.plugins.module_utils._offsite.crypt import decrypt_chunks


def fetch(run, name, check_mode=False, now=None):
    """Fetch one off-site copy (``run``: an offsite.Run) into ``<root>/<name>``. Returns a result dict."""
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
    index = pl.parse_index(run.target.read(name, pl.INDEX), run.target.location(name), name)
    raw = _manifest(run, name, index)
    layout.ensure_root(run.root)
    partial = final + layout.PARTIAL_SUFFIX
    layout.remove_tree(partial)
    os.makedirs(partial, mode=layout.DIR_MODE)
    try:
        fs.write_bytes_atomic(os.path.join(partial, layout.MANIFEST), raw)
        data = mf.read(partial)
        _check_owner(run, name, index, data)
        files = mf.expected_files(data, final)
        absent = sorted(set(files) - set(index["files"]))
        if absent:
            raise RatBackupError(f"off-site copy {name} lacks {len(absent)} files of its manifest: "
                                 f"{', '.join(absent[:10])}", bad=absent)
        linked = link_local(run.root, partial, files)
        todo = [rel for rel in sorted(files) if rel not in linked]
        if run.target.kind == "s3":
            run.map(lambda rel: _write_checked(run, partial, rel, files[rel], index, run.target.chunks(
                name, index["files"][rel]["stored"])), todo)
        else:
            _fetch_tar(run, name, partial, files, index, todo)
        layout.secure_tree(partial)
        fs.sync_tree(partial)
        os.rename(partial, final)
        fs.fsync_dir(run.root)
    except BaseException:
        layout.remove_tree(partial)
        raise
    run.record(name, fetched_at=fs.iso(now or fs.utcnow()), fetched_from=run.target.location(name))
    result.update(files=len(files), linked=len(linked), fetched=len(todo), encrypted=index["encrypted"],
                  summary=mf.summary(data))
    return result


def _manifest(run, name, index):
    """The manifest's plaintext; refused unless its stored bytes are those the index binds."""
    stored = pl.manifest_name(index["encrypted"])
    raw = run.target.read(name, stored)
    binding = index.get("manifest")
    if binding and (len(raw) != binding["size"] or hashlib.sha256(raw).hexdigest() != binding["sha256"]):
        raise RatBackupError(f"fetch refused: {stored} of off-site copy {run.target.location(name)} is not the manifest "
                             "this copy was shipped with (replaced, or moved in from another copy); nothing was put "
                             "in place", bad=[stored])
    if index["encrypted"]:
        raw = b"".join(decrypt_chunks(run.crypt, iter([raw]), f"manifest.json of {name}"))
    return raw


def _check_owner(run, name, index, data):
    """Refuse a manifest that is another backup's: its files would be delivered under this name."""
    binding = index.get("manifest") or {}
    if data.get("name") != name or ("created_at" in binding and data.get("created_at") != binding["created_at"]):
        raise RatBackupError(f"fetch refused: the manifest in off-site copy {run.target.location(name)} is that of "
                             f"backup {data.get('name')!r} made {data.get('created_at')}, not of {name}; the copy was "
                             "tampered with; nothing was put in place", bad=[layout.MANIFEST])


def link_local(root, partial, files):
    """Hard links to the files of the newest local backup that equal (path, size, sha256) the manifest's.

    Each linked file is hashed before it is kept: the manifest of the local backup says what the
    file was, not what its disk holds now, and a rotten one is downloaded instead.
    """
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
        if not (had and had["sha256"] == want["sha256"] and had["size"] == want["size"]):
            continue
        dest = os.path.join(partial, rel)
        os.makedirs(os.path.dirname(dest), mode=layout.DIR_MODE, exist_ok=True)
        try:
            os.link(os.path.join(previous["path"], rel), dest, follow_symlinks=False)
            # Hashed through the link: the very inode that stays in the fetched backup.
            if os.path.getsize(dest) == want["size"] and fs.sha256_file(dest) == want["sha256"]:
                linked.add(rel)
                continue
        except OSError:
            pass
        fs.unlink_quietly(dest)
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
