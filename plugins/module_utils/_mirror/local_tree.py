# -*- coding: utf-8 -*-
# Copyright: rat.backup contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The local side of a mirror: a tree of files under one root, and what their content proves."""

from __future__ import annotations

import hashlib
import itertools
import os
import posixpath
import stat
import threading
import uuid

from ansible_collections.rat.backup.plugins.module_utils import fs
from ansible_collections.rat.backup.plugins.module_utils import s3
from ansible_collections.rat.backup.plugins.module_utils.errors import RatBackupError
from ansible_collections.rat.backup.plugins.module_utils._mirror.key_paths import TMP_DIR
from ansible_collections.rat.backup.plugins.module_utils._mirror import pool


class LocalDigest:
    """sha256, MD5 and the multipart ETag this collection's uploads would produce, from one read."""

    __slots__ = ("size", "sha256", "md5", "multipart_etag")

    def __init__(self, size, sha256, md5, multipart_etag):
        self.size = size
        self.sha256 = sha256
        self.md5 = md5
        self.multipart_etag = multipart_etag

    def matches_etag(self, etag):
        """True only when the ETag proves equal content; unknown ETag shapes never match."""
        value = (etag or "").strip('"')
        if "-" in value:
            return value == self.multipart_etag
        return value == self.md5


def open_regular(path):
    """A read-only fd of a regular file, never following a symlink at the last component."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError as exc:
        reason = "is a symlink" if exc.errno == 40 else exc.strerror
        raise RatBackupError(f"cannot read local file {path}: {reason}", path=path)
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise RatBackupError(f"local file {path} is not a regular file", path=path)
    return fd


def local_digest(path):
    part_size = s3.PART_SIZE
    fd = open_regular(path)
    sha, md5, part, parts = hashlib.sha256(), hashlib.md5(), hashlib.md5(), []
    size = in_part = 0
    try:
        with os.fdopen(fd, "rb", buffering=0) as handle:
            while True:
                chunk = handle.read(min(fs.CHUNK, part_size - in_part))
                if not chunk:
                    break
                sha.update(chunk)
                md5.update(chunk)
                part.update(chunk)
                size += len(chunk)
                in_part += len(chunk)
                if in_part == part_size:
                    parts.append(part.digest())
                    part, in_part = hashlib.md5(), 0
    except OSError as exc:
        raise RatBackupError(f"cannot read local file {path}: {exc.strerror}", path=path)
    if in_part:
        parts.append(part.digest())
    multipart = None
    if size > part_size:
        multipart = f"{hashlib.md5(b''.join(parts)).hexdigest()}-{len(parts)}"
    return LocalDigest(size, sha.hexdigest(), md5.hexdigest(), multipart)


def digests(entries, tree, concurrency):
    """{id(entry): LocalDigest} of the entries' files under ``tree``, hashed in parallel; fails on
    the first unreadable file or one whose size is not the entry's."""
    found = {}

    def digest(entry):
        return entry, entry_digest(entry, tree)

    def store(result):
        entry, value = result
        found[id(entry)] = value
        entry.sha256 = entry.sha256 or value.sha256

    pool.run_all(entries, digest, store, concurrency)
    return found


def entry_digest(entry, tree):
    """LocalDigest of the entry's file under ``tree``; refuses a file whose size is not the entry's."""
    value = local_digest(tree.source_path(entry.relpath))
    if value.size != entry.size:
        path = tree.source_path(entry.relpath)
        raise RatBackupError(f"{path} is {value.size} bytes, expected {entry.size}", path=path)
    return value


def is_empty(path):
    """True when ``path`` does not exist or is a directory with no entries (a symlink to one is followed:
    what matters is that nothing can be in the way of what is linked into it)."""
    try:
        with os.scandir(path) as entries:
            return next(entries, None) is None
    except FileNotFoundError:
        return True
    except OSError:
        return False


def is_same_size_file(path, size):
    try:
        st = os.lstat(path)
    except OSError:
        return False
    return stat.S_ISREG(st.st_mode) and st.st_size == size


class LocalTree:
    """The local side: paths under a root, created 0700/0600, never through a symlink."""

    def __init__(self, root):
        self.root = root
        self._prefix = os.path.join(root, "")
        self.tmp = os.path.join(root, TMP_DIR)
        self._real_root = None
        # Directories proven to resolve inside the root -> their real paths.
        self._checked = {}
        self._lock = threading.Lock()
        self._own_tmp = (None, None, None)
        self._tmp_count = itertools.count()

    def path(self, relpath):
        if os.sep == "/":
            # Relpaths are clean (no empty, "." or ".." segment): the same as joining the segments,
            # at a fifth of the cost (four calls per linked object of an unchanged backup).
            return self._prefix + relpath
        return os.path.join(self.root, *relpath.split("/"))

    def source_path(self, relpath):
        """The path of a file to read, proven to resolve inside the root: its directory once a run,
        as ``parent_for`` proves the directories it writes in (a realpath is ~10 lstats: a restore
        read each file's twice, planning and sending, ~7 s of CPU per 100,000 files). The file
        itself is opened with O_NOFOLLOW (``open_regular``), and with a manifest its bytes are
        checked against their sha256 whatever path they came by."""
        path = self.path(relpath)
        parent = os.path.dirname(path)
        if parent not in self._checked:
            real = self.ensure_inside(parent)
            with self._lock:
                self._checked[parent] = real
        return path

    def prepare(self):
        try:
            os.makedirs(self.root, mode=0o700, exist_ok=True)
            os.makedirs(self.tmp, mode=0o700, exist_ok=True)
        except OSError as exc:
            raise RatBackupError(f"cannot create {self.root}: {exc.strerror}", path=self.root)
        self._real_root = os.path.realpath(self.root)
        # Leftovers of an interrupted run are partial transfers by construction.
        for name in os.listdir(self.tmp):
            path = os.path.join(self.tmp, name)
            if os.path.isdir(path) and not os.path.islink(path):
                for inner in os.listdir(path):
                    fs.unlink_quietly(os.path.join(path, inner))
                _rmdir_quietly(path)
            else:
                fs.unlink_quietly(path)

    def finish(self):
        for name in _listdir_quietly(self.tmp):
            _rmdir_quietly(os.path.join(self.tmp, name))
        _rmdir_quietly(self.tmp)

    def parent_for(self, relpath):
        """Create the parent directory of ``relpath`` and prove it resolves inside the root."""
        parent = os.path.dirname(self.path(relpath))
        if parent in self._checked:
            return
        real = self._make_inside(parent)
        with self._lock:
            self._checked[parent] = real

    def ensure_inside(self, parent):
        """The real path of directory ``parent``, refused when it resolves outside the root."""
        if self._real_root is None:
            self._real_root = os.path.realpath(self.root)
        real = os.path.realpath(parent)
        if real != self._real_root and not real.startswith(self._real_root + os.sep):
            raise RatBackupError(f"{parent} resolves outside {self.root} (symlink in the tree); refusing to use it",
                                 path=parent)
        return real

    def _make_inside(self, directory):
        """Create ``directory`` one level at a time below the nearest level already proven inside
        the root, proving each level before creating the next: os.makedirs would follow a symlink
        that leads out of the tree and create directories there before any check could refuse.
        A level this call created is a plain directory by construction; one that was there is
        lstat'ed, and only a symlink costs a realpath (about 12 lstats), not every new directory."""
        root = os.path.dirname(self._prefix)  # the root as os.path.split spells it: no trailing "/"
        names = []
        above = directory
        while above not in self._checked:
            if above == root:
                self._checked[above] = self.ensure_inside(above)
                break
            above, name = os.path.split(above)
            if not name or name in (".", ".."):
                raise RatBackupError(f"{directory} is not below {self.root}", path=directory)
            names.append(name)
        real = self._checked[above]
        for name in reversed(names):
            above = os.path.join(above, name)
            try:
                os.mkdir(above, 0o700)
                real = os.path.join(real, name)
            except FileExistsError:
                real = self._existing_level(above, os.path.join(real, name))
            except OSError as exc:
                raise RatBackupError(f"cannot create directory {above}: {exc.strerror}", path=above)
            with self._lock:
                self._checked[above] = real
        return real

    def _existing_level(self, path, real_if_plain):
        """The real path of an existing level of a new directory: a directory, or a symlink that
        resolves to one inside the root; anything else is in the way."""
        mode = os.lstat(path).st_mode
        if stat.S_ISDIR(mode):
            return real_if_plain
        if stat.S_ISLNK(mode) and os.path.isdir(path):
            return self.ensure_inside(path)
        raise RatBackupError(f"cannot create directory {path}: a file that is not a directory is in the way", path=path)

    def temp_path(self):
        """A new name in this process's own temporary directory: creating, renaming and removing
        files takes their directory's lock, which worker processes sharing one would queue on.
        Names are a random prefix drawn once per process and a counter (a uuid4 per file cost a
        getrandom call and ~3 us): a later process reusing a pid never meets an earlier one's leftovers."""
        pid, directory, prefix = self._own_tmp
        if pid != os.getpid():
            directory = os.path.join(self.tmp, str(os.getpid()))
            try:
                os.makedirs(directory, mode=0o700, exist_ok=True)
            except OSError as exc:
                raise RatBackupError(f"cannot create {directory}: {exc.strerror}", path=directory)
            prefix = os.path.join(directory, uuid.uuid4().hex + "-")
            self._own_tmp = (os.getpid(), directory, prefix)
            self._tmp_count = itertools.count()
        return prefix + str(next(self._tmp_count))

    def matches(self, entry):
        """True when the local file is the one a previous run wrote for this entry."""
        try:
            st = os.lstat(self.path(entry.relpath))
        except OSError:
            return False
        if not stat.S_ISREG(st.st_mode) or st.st_size != entry.size:
            return False
        return entry.modified_ms is None or int(st.st_mtime) == entry.modified_ms // 1000

    def walk(self, top_relpath=""):
        """(relpath, kind, size) of every non-directory under ``top_relpath``; kind: file, symlink, special.

        In the order S3 lists the keys these paths stand for (a merge with a listing relies on it):
        names compared as str, a directory's as its name + "/", since every key below it starts so.
        """
        top = self.path(top_relpath) if top_relpath else self.root
        if top_relpath and os.path.islink(top):
            # Walking it would list the target's files as if they were ours.
            yield top_relpath, "symlink", 0
            return
        yield from _walk_sorted(top, top_relpath)

    def prune_empty(self, relpath, keep):
        """Remove empty directories left above ``relpath``, stopping at any directory in ``keep``."""
        parent = posixpath.dirname(relpath)
        while parent and parent not in keep:
            try:
                os.rmdir(self.path(parent))
            except OSError:
                return
            self._checked.pop(self.path(parent), None)
            parent = posixpath.dirname(parent)


def _listdir_quietly(directory):
    try:
        return os.listdir(directory)
    except OSError:
        return []


def _rmdir_quietly(directory):
    try:
        os.rmdir(directory)
    except OSError:
        pass


def _walk_sorted(directory, rel_dir):
    try:
        found = list(os.scandir(directory))
    except OSError:
        # As os.walk: a directory that cannot be listed has nothing to offer.
        return
    named = []
    for item in found:
        # A symlink to a directory is an entry of its own (kind symlink), never walked into.
        is_dir = item.is_dir(follow_symlinks=False)
        named.append((item.name + "/" if is_dir else item.name, is_dir, item))
    named.sort(key=lambda n: n[0])
    for dummy, is_dir, item in named:
        relpath = posixpath.join(rel_dir, item.name) if rel_dir else item.name
        if is_dir:
            yield from _walk_sorted(item.path, relpath)
            continue
        st = item.stat(follow_symlinks=False)
        kind = "file" if stat.S_ISREG(st.st_mode) else "symlink" if stat.S_ISLNK(st.st_mode) else "special"
        yield relpath, kind, st.st_size
