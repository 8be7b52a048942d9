# -*- coding: utf-8 -*-
# Copyright: rat.backup contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Bytes written by a restore are the bytes the manifest promised, checked as they pass.

Verifying a backup file and then reading it again to restore it leaves a window: whatever changes
the file in between is restored unchecked. So every writer checks the stream it actually sends:
``HashingReader`` wraps what an uploader reads and raises at the end when the bytes differ, and
``private_copy`` gives pg_restore a copy nobody else can change, hashed while it was made.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile

from ansible_collections.rat.backup.plugins.module_utils import fs
from ansible_collections.rat.backup.plugins.module_utils.errors import RatBackupError


class Mismatch(RatBackupError):
    """The bytes read differ from the manifest."""


def _check(what, size, sha256, expected_size, expected_sha256):
    if expected_size is not None and size != expected_size:
        raise Mismatch(f"{what} changed since it was verified: {size} bytes read, {expected_size} expected; refusing "
                       "to restore it", actual_size=size, expected_size=expected_size)
    if expected_sha256 and sha256 != expected_sha256:
        raise Mismatch(f"{what} changed since it was verified: the bytes read have sha256 {sha256}, expected "
                       f"{expected_sha256}; refusing to restore it",
                       actual_sha256=sha256, expected_sha256=expected_sha256)


class HashingReader:
    """What an uploader reads: hashes the bytes it hands out; ``finish()`` raises when they are not the expected ones."""

    def __init__(self, raw, what, expected_size, expected_sha256):
        self._raw = raw
        self.what = what
        self.expected_size = expected_size
        self.expected_sha256 = expected_sha256
        self._digest = hashlib.sha256()
        self.size = 0

    def read(self, size=-1):
        data = self._raw.read(size)
        self._digest.update(data)
        self.size += len(data)
        return data

    def sha256(self):
        return self._digest.hexdigest()

    def finish(self):
        """Raise Mismatch unless every byte was read and they are the manifest's; returns the sha256."""
        if self.expected_size is not None and self.size == self.expected_size and self._raw.read(1):
            raise Mismatch(f"{self.what} changed since it was verified: it is longer than the {self.expected_size} "
                           "bytes expected; refusing to restore it")
        _check(self.what, self.size, self.sha256(), self.expected_size, self.expected_sha256)
        return self.sha256()


def private_copy(src, expected_sha256, work_dir=None, what=None):
    """(directory, path) of a copy of ``src`` in a new 0700 directory, hashed while copied; raises on mismatch.

    The copy is what gets restored, so a change to ``src`` after this point cannot reach the
    server. The caller removes ``directory`` (shutil.rmtree) when done.
    """
    what = what or src
    work_dir = work_dir or tempfile.gettempdir()
    try:
        fd = os.open(src, os.O_RDONLY | os.O_NOFOLLOW)
    except OSError as exc:
        raise RatBackupError(f"cannot read {what}: {exc.strerror or exc}", src=src)
    with os.fdopen(fd, "rb") as source:
        size = os.fstat(source.fileno()).st_size
        free = _free_bytes(work_dir)
        if free < size:
            raise RatBackupError(f"not enough room in {work_dir} for the private copy of {what} that is restored "
                                 f"({free >> 20} MiB free, {-(-size >> 20)} MiB needed): set work_dir to a directory "
                                 "with room",
                                 work_dir=work_dir, free_bytes=free, required_bytes=size)
        directory = tempfile.mkdtemp(prefix="rat-backup-restore.", dir=work_dir)
        try:
            path = os.path.join(directory, os.path.basename(src))
            reader = HashingReader(source, what, None, expected_sha256)
            with open(path, "xb") as copy:
                for chunk in iter(lambda: reader.read(fs.CHUNK), b""):
                    copy.write(chunk)
            reader.finish()
        except BaseException:
            shutil.rmtree(directory, ignore_errors=True)
            raise
    return directory, path


def _free_bytes(path):
    try:
        return fs.free_bytes(path)
    except OSError as exc:
        raise RatBackupError(f"work_dir {path} cannot be used: {exc.strerror or exc}", work_dir=path)
