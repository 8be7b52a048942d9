# -*- coding: utf-8 -*-
# Copyright: rat.backup contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The life of one backup directory: begin (lock + .partial), commit (manifest last + rename), abort.

Used by the backup_run module; the backup and restore roles drive it around pg_dump and
bucket_mirror. Every function takes ``now`` so tests can pin time.
"""

from __future__ import annotations

import importlib.util
import json
import os
import platform
import socket
import sys

from ansible_collections.rat.backup.plugins.module_utils import fs
from ansible_collections.rat.backup.plugins.module_utils.backup_root import layout
from ansible_collections.rat.backup.plugins.module_utils.backup_root import lock
from ansible_collections.rat.backup.plugins.module_utils.backup_root import manifest as mf
from ansible_collections.rat.backup.plugins.module_utils.backup_root import manifest_format
from ansible_collections.rat.backup.plugins.module_utils.errors import RatBackupError

# Recorded in every manifest; keep equal to galaxy.yml's version.
COLLECTION_VERSION = "0.1.0"


def base_dir(root, kind):
    return os.path.join(root, layout.PRE_RESTORE) if kind == "pre_restore" else root


def paths(root, kind, name):
    layout.check_name(name, "name")
    base = base_dir(root, kind)
    final = os.path.join(base, name)
    return base, final, final + layout.PARTIAL_SUFFIX


# The database grows between backups: room for a dump a quarter larger than the last one.
DUMP_GROWTH = 1.25


def missing_modules(names):
    """The Python packages among ``names`` that are not installed (found, not imported: boto3 alone
    costs 0.4 s to import and this runs on every backup)."""
    return [name for name in names if importlib.util.find_spec(name) is None]


def _writable_dir(root):
    """The directory ``root`` is (or will be created) in, if writable: checked without creating anything."""
    existing = fs.nearest_existing_dir(root)
    if not os.access(existing, os.W_OK | os.X_OK) or (os.path.lexists(root) and not os.path.isdir(root)):
        raise RatBackupError(f"backup root {root} is not writable on {socket.gethostname()} (checked {existing})",
                             path=root)
    return existing


def preflight(root, required_bytes, modules):
    """What stops a run before it starts: missing Python packages, an unwritable root, no space."""
    missing = missing_modules(modules)
    existing = _writable_dir(root)
    free = fs.free_bytes(existing)
    result = {"missing_modules": missing, "free_bytes": free, "required_bytes": required_bytes,
              "enough_space": free >= required_bytes, "root_exists": os.path.isdir(root),
              "existing_dir": existing}
    result.update(_previous_backup(root))
    return result


_NO_PREVIOUS = {"previous": None, "previous_name": None, "previous_dump_bytes": 0, "previous_skipped": {}}


def _previous_backup(root):
    """The newest good complete backup (manifest.newest_good) and its dump size: what an incremental
    run links to and grows from; newer damaged ones are named in ``previous_skipped``."""
    previous, dump_bytes, skipped = mf.newest_good(root, layout.list_backups(root)["complete"])
    if not previous:
        return dict(_NO_PREVIOUS, previous_skipped=skipped)
    return {"previous": previous["path"], "previous_name": previous["name"], "previous_dump_bytes": dump_bytes,
            "previous_skipped": skipped}


def _check_space(root, required_bytes):
    free = fs.free_bytes(root)
    if required_bytes and free < required_bytes:
        raise RatBackupError(
            f"not enough free space in {root} on {socket.gethostname()}: {free // 2 ** 20} MiB free, about "
            f"{-(-required_bytes // 2 ** 20)} MiB needed for this backup",
            path=root, free_bytes=free, required_bytes=required_bytes)
    return free


def _stale_partials(base):
    if not os.path.isdir(base):
        return []
    return sorted(os.path.join(base, n) for n in os.listdir(base)
                  if n.endswith(layout.PARTIAL_SUFFIX) and layout.time_of(n[:-len(layout.PARTIAL_SUFFIX)]))


def begin_argspec():
    """The options of a backup's start that backup_run (state=begin) and backup_capture share."""
    return dict(
        root=dict(type="path", required=True),
        lease_hours=dict(type="float", default=24),
        idle_minutes=dict(type="float", default=60),
        required_bytes=dict(type="int", default=0),
        python_modules=dict(type="list", elements="str", default=[]),
    )


def skipped_warnings(result):
    """What begin tells the operator about damaged newer backups it did not link from."""
    return [f"backup {name} is damaged ({why}): this backup links from {result['previous_name'] or 'nothing'} "
            "instead; run backup_verify on it and remove it" for name, why in result["previous_skipped"].items()]


def begin(root, kind, purpose, required_bytes, lease_seconds, check_mode, now, lock_token=None, modules=(),
          idle_seconds=3600, check=None):
    """Check the host, lock the root (unless the caller holds it already), create <name>.partial.

    Every check comes before anything is created, so a host that cannot back up is left as it was.
    ``check()`` (the services the backup reads, returning what it found as ``checked``) runs once the
    host's own checks passed and before the lock is taken; only the root itself may exist by then.
    A backup needs ``required_bytes`` plus room for the newest complete backup's dump grown by
    DUMP_GROWTH; the objects are checked by bucket_mirror against its own listing.
    """
    missing = missing_modules(modules)
    if missing:
        raise RatBackupError(
            f"Python packages {', '.join(missing)} are missing on {socket.gethostname()} for {sys.executable}: pip "
            f"install {' '.join(missing)}, or apt-get install {' '.join('python3-' + name for name in missing)} (the "
            "backup role installs them itself with rat_backup_install_deps=true)", missing_modules=missing)
    existing = _writable_dir(root)
    base = base_dir(root, kind)
    # A pre-restore safety dump links to nothing and needs no room for a previous dump.
    result = _previous_backup(root) if kind == "backup" else dict(_NO_PREVIOUS)
    required = required_bytes + int(result["previous_dump_bytes"] * DUMP_GROWTH)
    result["required_bytes"] = required
    if check_mode:
        free = _check_space(existing, required)
        if check:
            result["checked"] = check()
        name = layout.new_name(root, now, base)
        _base, final, partial = paths(root, kind, name)
        result.update(changed=True, name=name, backup_dir=final, partial=partial, free_bytes=free,
                      existing_dir=existing, would_remove=_stale_partials(base), lock_token=None)
        return result
    layout.ensure_root(root)
    if check:
        result["checked"] = check()
    stale = None
    if lock_token:
        if lock.read_lock(root).get("token") != lock_token or not lock.lock_state(root)[0]:
            raise RatBackupError(f"lock_token does not hold the lock of {root} any more", path=root)
        record = lock.read_lock(root)
    else:
        record, stale = lock.acquire(root, purpose, lease_seconds, now, idle_seconds)
    try:
        # Holding the lock, any .partial left here belongs to a run that died: it never looks
        # complete, but it costs disk that this run may need.
        removed = _stale_partials(base)
        for path in removed:
            layout.remove_tree(path)
        free = _check_space(root, required)
        os.makedirs(base, mode=layout.DIR_MODE, exist_ok=True)
        name = layout.new_name(root, now, base)
        _base, final, partial = paths(root, kind, name)
        os.mkdir(partial, layout.DIR_MODE)
        os.mkdir(os.path.join(partial, "postgres"), layout.DIR_MODE)
        os.mkdir(os.path.join(partial, "minio"), layout.DIR_MODE)
    except BaseException:
        if not lock_token:
            lock.release(root, record["token"])
        raise
    result.update(changed=True, name=name, backup_dir=final, partial=partial, free_bytes=free,
                  removed_partials=removed, lock_token=record["token"],
                  lock={k: v for k, v in record.items() if k != "token"},
                  recovered_lock={k: v for k, v in (stale or {}).items() if k != "token"} or None)
    return result


def _own_lock(root, token, now):
    """Prove this run holds the lock, taking it back if it was only given up while the run sat idle."""
    held, record = lock.lock_state(root)
    if token and record.get("token") == token and (held or lock.reclaim(root, token, now)):
        return
    raise RatBackupError(
        f"this run no longer holds the lock of {root} (holder: {record.get('host', '?')} pid "
        f"{record.get('pid', '?')}, {record.get('released_because') or 'another run'}); refusing to touch the backup",
        path=root, lock_released_because=record.get("released_because"))


def commit(root, kind, name, token, host, components, tools, consistency, release_lock, check_mode, now):
    """Turn <name>.partial into <name>: checks, manifest.json written last, rename, fsync."""
    _base, final, partial = paths(root, kind, name)
    if check_mode:
        return {"changed": True, "name": name, "backup_dir": final}
    _own_lock(root, token, now)
    if not os.path.isdir(partial) or os.path.islink(partial):
        raise RatBackupError(f"{partial} does not exist: nothing to commit", path=partial)
    if os.path.lexists(final):
        raise RatBackupError(f"{final} already exists; refusing to overwrite a backup", path=final)
    object_manifest = reader = None
    compress = False
    if "minio" in components:
        reader = manifest_format.Reader(os.path.join(partial, layout.OBJECT_MANIFEST), "object manifest")
        compress = _size(reader.path) >= mf.COMPRESS_FROM
        # Its header first (the objects are passed over unparsed): manifest.json is written head first.
        object_manifest = _object_manifest_header(reader)
    pg = None
    dump_result = os.path.join(partial, *(layout.DUMP_PATH + ".json").split("/"))
    if "postgres" in components:
        pg = _read_dump_result(dump_result)
    created = layout.time_of(name)
    host = host or socket.gethostname()
    consistency = dict(consistency or {})
    if object_manifest:
        consistency.setdefault("objects_listed_at", object_manifest.get("listed_at"))
    tools = dict(tools or {}, python=platform.python_version())
    tools["rat.backup"] = COLLECTION_VERSION
    if pg and pg.get("client_version"):
        tools["pg_dump"] = pg["client_version"]
    data = mf.build(name, kind, host, fs.iso(created), fs.iso(now), tools, pg, object_manifest,
                    consistency)
    # One walk of the tree: modes set, what this backup added to the disk (for its manifest,
    # listings and log line), and every file the manifest promises found with its size before
    # the backup may look complete.
    own_files = (layout.OBJECT_MANIFEST, layout.DUMP_PATH + ".json")
    check = mf.Check(partial, "quick", secure=True)
    data["stored"] = layout.stored_of(check.present, skip=own_files)
    if pg is not None:
        check.file(layout.DUMP_PATH, pg.get("size"), pg.get("sha256"))
    objects = mf.ObjectStats()

    def checked_lines():
        where = f"backup {partial}"
        for item, text in reader.objects_with_text() if reader else ():
            if not isinstance(item, dict):
                raise RatBackupError(f"object manifest {reader.path}: an object is not a JSON object", path=reader.path)
            check.file(fs.safe_relpath(item.get("path"), where), item.get("size"), item.get("sha256"))
            objects.add(item)
            yield text
        problems = check.result(ignore=own_files)["bad"]
        if problems:
            # Raised inside the writer: manifest.json is never put in place.
            raise RatBackupError(f"backup {partial} is inconsistent, not committed: {'; '.join(problems[:20])}",
                                 bad=problems)

    # Written into <name>.partial: the rename below, after every entry is durable, makes it complete.
    mf.write_streamed(partial, data, checked_lines(), compress)
    if kind == "backup":
        _record_commit(root, name, mf.commit_record(partial, name, (pg or {}).get("size", 0)))
    if object_manifest is not None:
        os.unlink(os.path.join(partial, layout.OBJECT_MANIFEST))
    fs.unlink_quietly(dump_result)
    # Every hard link, file and directory entry of the tree must be on disk before the rename
    # makes the backup look complete: a crash must never leave a "complete" backup with entries
    # missing.
    fs.sync_tree(partial)
    os.rename(partial, final)
    fs.fsync_dir(os.path.dirname(final))
    if release_lock:
        lock.release(root, token)
    stats = mf.summary(data, objects)
    created_dt = created or now
    stats.update(changed=True, name=name, backup_dir=final, manifest=os.path.join(final, layout.MANIFEST),
                 duration=round((now - created_dt).total_seconds(), 3), lock_released=release_lock)
    return stats


def _record_commit(root, name, record):
    """Keep the commit record a later backup's start proves this manifest.json by, before the rename:
    a backup that looks complete has its record (or none from an older version), never another's."""
    _path, why = layout.write_status(root, name, mf.COMMIT_RECORD, record)
    if why:
        raise RatBackupError(f"backup {name} not committed: {why}", path=os.path.join(root, layout.STATUS_DIR))


def _size(path):
    try:
        return os.lstat(path).st_size
    except OSError:
        return 0  # the reader names what is wrong with it


def _object_manifest_header(reader):
    """The object manifest bucket_mirror left in the backup, without its objects (read unparsed)."""
    for dummy in reader.objects(parse=False):
        pass
    header = reader.document
    if not isinstance(header, dict) or not isinstance(header.get("objects"), list):
        raise RatBackupError(f"{reader.path} is not an object manifest (no 'objects' list)", path=reader.path)
    return header


def _read_dump_result(path):
    """The result pg_dump left beside the dump (postgres.dump)."""
    try:
        with open(path, "r", encoding="utf-8") as handle:
            result = json.load(handle)
    except OSError as exc:
        raise RatBackupError(f"components include postgres but no pg_dump result was found at {path}: "
                             f"{exc.strerror or exc}", path=path)
    except ValueError as exc:
        raise RatBackupError(f"pg_dump result {path} is not valid JSON: {exc}", path=path)
    if not isinstance(result, dict):
        raise RatBackupError(f"pg_dump result {path} is not a JSON object", path=path)
    return result


def abort(root, kind, name, token, release_lock, check_mode):
    """Remove <name>.partial (never a complete backup) and release the lock."""
    _base, _final, partial = paths(root, kind, name)
    exists = os.path.lexists(partial)
    if check_mode:
        return {"changed": exists, "removed": partial if exists else None}
    record = lock.read_lock(root)
    if token and record.get("token") != token:
        raise RatBackupError(f"lock of {root} belongs to another run (pid {record.get('pid', '?')}); not removing "
                             f"{partial}", path=partial)
    if exists:
        layout.remove_tree(partial)
    released = lock.release(root, token) if release_lock and token else False
    return {"changed": exists or released, "removed": partial if exists else None, "lock_released": released}


def unlock(root, token, check_mode):
    if check_mode:
        return {"changed": bool(token) and lock.read_lock(root).get("token") == token}
    return {"changed": lock.release(root, token)}
