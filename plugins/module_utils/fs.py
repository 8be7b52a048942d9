# -*- coding: utf-8 -*-
# Copyright: rat.backup contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""File helpers every part of the collection shares: one rule per fact.

Atomic writes, fsync of a directory, free space, the sha256 of a file, the chunk size of every
read and copy, the one time format of records and manifests, and the one rule for a relative
path read from a manifest.
"""

from __future__ import annotations

import datetime
import errno
import functools
import hashlib
import json
import os
import re
import socket
import sys

from ansible_collections.rat.backup.plugins.module_utils.errors import RatBackupError

# Reads and copies go in 1 MiB pieces: large enough for few system calls, small enough to stay
# out of the way of other memory.
CHUNK = 1 << 20
FILE_MODE = 0o600

_UTC = datetime.timezone.utc
_ISO = "%Y-%m-%dT%H:%M:%SZ"
_CONTROL = re.compile("[\x00-\x1f\x7f]")


def utcnow():
    return datetime.datetime.now(_UTC)


def iso(dt, ms=False):
    """UTC time as ISO 8601 with a Z: whole seconds (records, manifest.json), or milliseconds,
    S3's resolution (object manifests)."""
    dt = dt.astimezone(_UTC)
    if ms:
        return dt.strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"
    return dt.strftime(_ISO)


def parse_time(text):
    """The UTC time of an iso() string in whole seconds, or None when there is none."""
    try:
        return datetime.datetime.strptime(text, _ISO).replace(tzinfo=_UTC)
    except (TypeError, ValueError):
        return None


def safe_relpath(path, where):
    """``path`` from a manifest, refused unless it stays inside the backup: relative, no empty,
    ``.`` or ``..`` segment, no control character (a backslash is a plain character on Linux).
    ``where`` names the manifest's owner in the error."""
    if isinstance(path, str) and path and path[0] != "/" and not _CONTROL.search(path):
        # Segments tested by list membership, not a generator: this runs for every object of every
        # manifest read (three times per object of an unchanged lake backup).
        parts = path.split("/")
        if "" not in parts and "." not in parts and ".." not in parts:
            return path
    raise RatBackupError(f"{where}: unsafe path {path!r} in its manifest", path=path)


def unlink_quietly(path):
    """Remove ``path`` if it is there; a leftover that cannot be removed is no reason to fail."""
    try:
        os.unlink(path)
    except OSError:
        pass


def sha256_file(path, follow_symlinks=False):
    """sha256 of a file; a symlink is refused (ELOOP) unless ``follow_symlinks``."""
    digest = hashlib.sha256()
    fd = os.open(path, os.O_RDONLY | (0 if follow_symlinks else os.O_NOFOLLOW))
    with os.fdopen(fd, "rb") as handle:
        for block in iter(lambda: handle.read(CHUNK), b""):
            digest.update(block)
    return digest.hexdigest()


def json_lines(path):
    """The objects of a file a run appends one JSON line at a time to (a journal), in file order; a
    line that does not parse (the torn last line of a killed run) is passed over."""
    with open(path, "rb") as handle:
        for line in handle:
            try:
                yield json.loads(line)
            except ValueError:
                continue


def write_json_atomic(path, data):
    write_text_atomic(path, json.dumps(data, indent=1, sort_keys=True, ensure_ascii=False) + "\n")


def write_text_atomic(path, text):
    """Write a file so a reader sees the old file or the whole new one, never a torn one."""
    write_lines_atomic(path, (text,))


def write_bytes_atomic(path, data):
    """write_text_atomic for bytes (a file passed on as it was stored, compressed or not)."""
    with atomic_writer(path, binary=True) as handle:
        handle.write(data)


def write_lines_atomic(path, lines):
    """write_text_atomic for text produced piece by piece (``lines`` may be a generator)."""
    with atomic_writer(path) as handle:
        for line in lines:
            handle.write(line)


class atomic_writer:  # pylint: disable=invalid-name
    """``with atomic_writer(path) as handle:`` writes text to a temporary file (``mode``, 0600 by
    default) that becomes ``path`` only once all of it is on disk; on any error ``path`` is left
    as it was."""

    def __init__(self, path, mode=FILE_MODE, binary=False):
        self.path = path
        self.mode = mode
        self.binary = binary
        self.tmp = f"{path}.tmp.{os.getpid()}"
        self.handle = None

    def __enter__(self):
        fd = os.open(self.tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, self.mode)
        # Exactly ``mode`` whatever the umask: a metrics file must stay readable by its collector.
        os.fchmod(fd, self.mode)
        self.handle = os.fdopen(fd, "wb") if self.binary else os.fdopen(fd, "w", encoding="utf-8")
        return self.handle

    def __exit__(self, exc_type, exc, traceback):
        try:
            if exc_type is None:
                self.handle.flush()
                os.fsync(self.handle.fileno())
            self.handle.close()
            if exc_type is None:
                os.rename(self.tmp, self.path)
        except BaseException:
            unlink_quietly(self.tmp)
            raise
        if exc_type is not None:
            unlink_quietly(self.tmp)
            return False
        fsync_dir(os.path.dirname(self.path) or ".")
        return False


def fsync_dir(path):
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def free_bytes(path):
    st = os.statvfs(path)
    return st.f_bavail * st.f_frsize


def nearest_existing_dir(path):
    """``path``, or the closest parent that exists: where a directory not made yet will live."""
    while not os.path.isdir(path) and os.path.dirname(path) != path:
        path = os.path.dirname(path)
    return path


def sync_tree(path):
    """Make every file and directory entry under ``path`` durable.

    One syncfs(2) flushes the whole filesystem holding ``path``: far cheaper than an fsync per
    directory of a tree with hundreds of them. Where syncfs is missing (not Linux, no such symbol)
    each directory is fsynced instead (files were fsynced as written: has_syncfs said so). Where
    it is there but refused (ENOSYS under a seccomp filter, ...) the writers counted on it and
    fsynced no file, so every file is fsynced too. A write error is raised, not worked around: it
    means data may not have reached the disk.
    """
    syncfs = _syncfs()
    if syncfs is not None:
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
        try:
            code = syncfs(fd)
        finally:
            os.close(fd)
        if code == 0:
            return
        if code in (errno.EIO, errno.ENOSPC, errno.EDQUOT):
            raise RatBackupError(f"cannot make {path} durable on {socket.gethostname()}: syncfs: "
                                 f"{os.strerror(code)}", path=path)
    fsync_dir(path)
    for parent, dirs, files in os.walk(path, followlinks=False):
        for name in dirs:
            full = os.path.join(parent, name)
            if not os.path.islink(full):
                fsync_dir(full)
        if syncfs is not None:
            for name in files:
                _fsync_file(os.path.join(parent, name))


def _fsync_file(path):
    """fsync a regular file (a symlink is not followed: its target is not the tree's)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            return
        raise
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def has_syncfs():
    """True where sync_tree flushes file data too (one syncfs), not only directory entries."""
    return _syncfs() is not None


@functools.lru_cache(maxsize=None)
def _syncfs():
    """fd -> 0, or the errno of a failed syncfs(2); None where the C library has no syncfs."""
    if not sys.platform.startswith("linux"):
        return None
    # Imported here: 3 ms that every module importing layout would pay otherwise.
    import ctypes  # pylint: disable=import-outside-toplevel

    try:
        function = ctypes.CDLL(None, use_errno=True).syncfs
    except (OSError, AttributeError):
        return None
    function.argtypes = [ctypes.c_int]
    function.restype = ctypes.c_int

    def call(fd):
        return 0 if function(fd) == 0 else ctypes.get_errno()

    return call
