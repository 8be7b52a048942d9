# -*- coding: utf-8 -*-
# Copyright: rat.backup contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The backup root on disk: names, listing, selection, status records and whole-tree operations.

Layout (docs/layout.md, docs/mechanisms.md)::

    <root>/<YYYYmmdd_HHMMSS>/            complete iff the name is a bare timestamp and manifest.json exists
    <root>/<YYYYmmdd_HHMMSS>.partial/    work in progress, or the leftover of a crash
    <root>/pre-restore/<YYYYmmdd_HHMMSS>/  safety dumps taken by the restore role
    <root>/.lock                         one backup or restore per host at a time (lock.py)
    <root>/.status/<name>.<kind>.json    verify / drill results shown by backup_info, commit records
"""

from __future__ import annotations

import datetime
import json
import os
import re
import shutil
import socket
import stat

from ansible_collections.rat.backup.plugins.module_utils import fs
from ansible_collections.rat.backup.plugins.module_utils.errors import RatBackupError

NAME_FORMAT = "%Y%m%d_%H%M%S"
NAME_RE = re.compile(r"^[0-9]{8}_[0-9]{6}$")
PARTIAL_SUFFIX = ".partial"
PRE_RESTORE = "pre-restore"
LOCK_FILE = ".lock"
STATUS_DIR = ".status"
MANIFEST = "manifest.json"
# Inside a backup directory: the dump (with the pg_dump result beside it as .json) and the object
# manifest of the mirrored buckets, which backup_capture writes and backup_run commit reads.
DUMP_PATH = "postgres/rat.dump"
OBJECT_MANIFEST = "minio.json"
DIR_MODE = 0o700
# How far ahead of this host's clock a backup name may be and still count: a few minutes of clock
# difference between hosts (off-site copies, fetched backups) and the seconds new_name may add.
# A name further ahead is suspect (a clock that was wrong, a directory copied in by hand): it is
# never "latest", never counted or deleted by retention, and reported.
FUTURE_SKEW = datetime.timedelta(minutes=10)


def name_for(now):
    return now.astimezone(datetime.timezone.utc).strftime(NAME_FORMAT)


def time_of(name):
    """The UTC time a backup name stands for, or None when it is not a backup name."""
    if not NAME_RE.match(name):
        return None
    try:
        return datetime.datetime.strptime(name, NAME_FORMAT).replace(tzinfo=datetime.timezone.utc)
    except ValueError:
        return None


def in_future(name, now):
    """True when backup ``name`` stands for a time beyond ``now`` + FUTURE_SKEW (see there)."""
    created = time_of(name)
    return created is not None and created > now + FUTURE_SKEW


def newest(names, now):
    """The newest of the backup ``names`` (sorted oldest first) not named in the future, or None.

    What every "latest" means: local backups, off-site copies. A copy named ahead of the clock
    would otherwise stay "latest" until the clock caught up, and a restore of "latest" would
    bring back older data than the real newest backup.
    """
    ordinary = [n for n in names if not in_future(n, now)]
    return ordinary[-1] if ordinary else None


def check_name(name, variable="rat_restore_backup"):
    """Refuse anything that is not a bare backup name before it is joined to a path.

    Returns the name. YAML 1.1 reads an unquoted 20260216_093000 as the integer 20260216093000,
    so those 14 digits are taken back as the name they came from.
    """
    if isinstance(name, int) and not isinstance(name, bool):
        name = str(name)
    if isinstance(name, str) and re.match(r"^[0-9]{14}$", name):
        name = name[:8] + "_" + name[8:]
    if not isinstance(name, str) or not name:
        raise RatBackupError(f"{variable} is empty: give a backup name (YYYYmmdd_HHMMSS) or 'latest'")
    if "/" in name or "\\" in name or ".." in name or "\x00" in name:
        raise RatBackupError(f"{variable}={name!r} is refused: a backup name is a bare YYYYmmdd_HHMMSS timestamp, "
                             "never a path", variable=variable)
    if time_of(name) is None:
        raise RatBackupError(f"{variable}={name!r} is not a backup name: expected YYYYmmdd_HHMMSS (UTC) or "
                             "'latest'", variable=variable)
    return name


def scan(path, secure=False):
    """Every entry below ``path``, each lstat'ed once and no symlink followed: {relpath: (kind, size,
    links)}, kind ``file``, ``dir``, ``symlink`` or ``special``. An unreadable directory is skipped
    (what is below it is missing to the caller). With ``secure`` the modes are set as they are
    listed (see secure_tree), and an unreadable directory is an error.

    One walk for what a commit needs of 100,000 files: the presence check against the manifest,
    ``stored_of`` and secure_tree's modes (three walks, 300,000 lstat calls, before).
    """
    found = {}
    if secure:
        _chmod_if_needed(path, os.lstat(path).st_mode, DIR_MODE)
    pending = [(path, "")]
    while pending:
        directory, rel_dir = pending.pop()
        try:
            entries = os.scandir(directory)
        except OSError:
            if secure:
                raise
            continue
        with entries:
            for entry in entries:
                rel = rel_dir + entry.name
                try:
                    st = entry.stat(follow_symlinks=False)
                except OSError:
                    continue
                mode = st.st_mode
                if stat.S_ISLNK(mode):
                    kind = "symlink"
                elif stat.S_ISDIR(mode):
                    kind = "dir"
                    pending.append((entry.path, rel + "/"))
                else:
                    kind = "file" if stat.S_ISREG(mode) else "special"
                if secure and kind != "symlink":
                    _chmod_if_needed(entry.path, mode, DIR_MODE if kind == "dir" else fs.FILE_MODE)
                found[rel] = (kind, st.st_size, st.st_nlink)
    return found


def _tree_size(path):
    """(bytes, bytes only this directory holds) without following symlinks.

    Files hard-linked with another backup (link count > 1) cost no extra disk, which is what makes
    the second figure the real price of an incremental backup.
    """
    total = unique = 0
    for kind, size, links in scan(path).values():
        if kind == "file":
            total += size
            if links == 1:
                unique += size
    return total, unique


def stored(path):
    """What a backup being committed added to the disk: {"new_bytes", "copied", "linked"} (stored_of)."""
    return stored_of(scan(path))


def stored_of(entries, skip=()):
    """stored() from a ``scan`` of the backup, leaving out the relative paths in ``skip``.

    Read before anything else can link to it: a file with one link was written by this run
    (``copied``, its bytes are ``new_bytes``), one with more was hard-linked from the previous
    backup (``linked``). Later backups linking to it do not change what it added.
    """
    found = {"new_bytes": 0, "copied": 0, "linked": 0}
    for rel, (kind, size, links) in entries.items():
        if kind != "file" or rel in skip:
            continue
        if links == 1:
            found["new_bytes"] += size
            found["copied"] += 1
        else:
            found["linked"] += 1
    return found


def read_status(root, name, kinds=("verify", "drill", "offsite")):
    """Verify/drill/offsite (or other ``kinds`` of) records of one backup: {"verify": {...}, ...}
    (absent or unreadable ones omitted)."""
    found = {}
    for kind in kinds:
        path = os.path.join(root, STATUS_DIR, f"{name}.{kind}.json")
        try:
            with open(path, "rb") as handle:
                found[kind] = json.load(handle)
        except (OSError, ValueError):
            continue
    return found


def write_status(root, name, kind, record):
    """Keep a verify/drill record: (path, None), or (None, why not) when the root cannot take it.

    Best effort: the backups may be a read-only snapshot or mount, and they are to be verified and
    restored all the same; the record only feeds backup_info.
    """
    check_name(name, "name")
    directory = os.path.join(root, STATUS_DIR)
    path = os.path.join(directory, f"{name}.{kind}.json")
    try:
        os.makedirs(directory, mode=DIR_MODE, exist_ok=True)
        fs.write_json_atomic(path, record)
    except OSError as exc:
        return None, f"the {kind} record of {name} was not kept: {directory} cannot be written ({exc.strerror or exc})"
    return path, None


def _entry(root, name, path, kind, now, sizes):
    created = time_of(name)
    entry = {
        "name": name,
        "path": path,
        "kind": kind,
        "created_at": fs.iso(created) if created else None,
        "age_seconds": int((now - created).total_seconds()) if created else None,
    }
    if sizes:
        entry["size"], entry["unique_bytes"] = _tree_size(path)
    return entry


def list_backups(root, now=None, sizes=False):
    """Every backup-like directory under root, sorted oldest first, grouped by kind.

    Returns {"complete": [...], "partial": [...], "pre_restore": [...], "future": [...]}. A timestamp
    directory without manifest.json is reported as partial: it is what a crash between rename and
    manifest would look like if someone renamed it by hand, and it must never be offered for restore.
    Complete backups and safety dumps named in the future (in_future) are listed under "future"
    (their "kind" says which), never among the others: nothing takes them for the newest.
    """
    now = now or fs.utcnow()
    found = {"complete": [], "partial": [], "pre_restore": [], "future": []}
    if not os.path.isdir(root):
        return found
    for name in sorted(os.listdir(root)):
        path = os.path.join(root, name)
        if os.path.islink(path) or not os.path.isdir(path):
            continue
        if name.endswith(PARTIAL_SUFFIX) and time_of(name[:-len(PARTIAL_SUFFIX)]):
            entry = _entry(root, name[:-len(PARTIAL_SUFFIX)], path, "partial", now, sizes)
            found["partial"].append(entry)
        elif time_of(name):
            complete = os.path.isfile(os.path.join(path, MANIFEST)) and not os.path.islink(os.path.join(path, MANIFEST))
            entry = _entry(root, name, path, "complete" if complete else "partial", now, sizes)
            found[_group(entry, now)].append(entry)
    pre = os.path.join(root, PRE_RESTORE)
    if os.path.isdir(pre) and not os.path.islink(pre):
        for name in sorted(os.listdir(pre)):
            path = os.path.join(pre, name)
            if time_of(name) and os.path.isdir(path) and not os.path.islink(path) \
                    and os.path.isfile(os.path.join(path, MANIFEST)):
                entry = _entry(root, name, path, "pre_restore", now, sizes)
                found[_group(entry, now)].append(entry)
    return found


def _group(entry, now):
    return "future" if entry["kind"] != "partial" and in_future(entry["name"], now) else entry["kind"]


def select(root, requested, variable="rat_restore_backup"):
    """The complete backup named by ``requested`` (a name or 'latest'); error lists what exists.

    'latest' never resolves to a backup named in the future; naming one explicitly does.
    """
    found = list_backups(root)
    complete = found["complete"]
    future = [e for e in found["future"] if e["kind"] == "complete"]
    names = [b["name"] for b in complete + future]
    if requested == "latest":
        if not complete:
            raise RatBackupError(f"{variable}=latest: there is no complete backup in {root}"
                                 + _future_note(future), available=names)
        return complete[-1]
    requested = check_name(requested, variable)
    for entry in complete + future:
        if entry["name"] == requested:
            return entry
    raise RatBackupError(f"{variable}={requested}: no complete backup of that name in {root}; available: "
                         f"{', '.join(names) or 'none'}", available=names)


def _future_note(future):
    if not future:
        return ""
    return (f" (only {', '.join(e['name'] for e in future)}, named in the future: suspect, never 'latest'; "
            "name it explicitly if it is really wanted)")


def previous_complete(root):
    complete = list_backups(root)["complete"]
    return complete[-1] if complete else None


def new_name(root, now, base=None):
    """A fresh name not used by any complete, partial or pre-restore directory.

    Two runs in the same second get consecutive seconds instead of colliding.
    """
    base = base or root
    candidate = now
    for _ignored in range(120):
        name = name_for(candidate)
        if not any(os.path.lexists(os.path.join(base, n)) for n in (name, name + PARTIAL_SUFFIX)):
            return name
        candidate = candidate + datetime.timedelta(seconds=1)
    raise RatBackupError(f"no free backup name in {base} near {name_for(now)}")


def remove_tree(path):
    """rmtree that never follows a symlink out of the tree (shutil.rmtree unlinks links itself)."""
    if os.path.islink(path):
        os.unlink(path)
    elif os.path.isdir(path):
        shutil.rmtree(path)


def secure_tree(path):
    """Directories 0700, files 0600, without following symlinks (they are left as they are).

    Only entries whose mode differs are changed: most files of an incremental backup are hard links
    shared with older backups, and a needless chmod would still bump their ctime.
    """
    scan(path, secure=True)


def _chmod_if_needed(path, mode, wanted):
    if stat.S_IMODE(mode) != wanted:
        os.chmod(path, wanted)


def ensure_root(root):
    """Create the backup root (0700) and prove it is writable, naming the path when it is not."""
    try:
        os.makedirs(root, mode=DIR_MODE, exist_ok=True)
        probe = os.path.join(root, f".write-test.{os.getpid()}")
        fd = os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_EXCL, fs.FILE_MODE)
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        raise RatBackupError(f"backup root {root} is not writable on {socket.gethostname()}: {exc.strerror or exc}",
                             path=root)
