# -*- coding: utf-8 -*-
# Copyright: rat.backup contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The object manifest a mirror writes and reads, and the journal an interrupted run leaves."""

from __future__ import annotations

import json
import os
import time

from ansible_collections.rat.backup.plugins.module_utils import fs
from ansible_collections.rat.backup.plugins.module_utils.backup_root import manifest_format
from ansible_collections.rat.backup.plugins.module_utils.errors import RatBackupError
from ansible_collections.rat.backup.plugins.module_utils._mirror.model import Entry

MANIFEST_FORMAT = 1


def _reader(path, what):
    # A path the operator gave (bucket_mirror's manifest options): a symlink is followed.
    return manifest_format.Reader(path, what, follow_symlinks=True)


def _header(reader):
    """The object manifest part of what ``reader`` read (itself, or a backup manifest's "minio"
    section), without its object list."""
    document = manifest_format.objects_holder(reader.document)
    if not isinstance(document, dict) or not isinstance(document.get("objects"), list):
        raise RatBackupError(f"{reader.what} {reader.path} is not an object manifest (no \"objects\" list)",
                             path=reader.path)
    document.pop("objects")
    return document


def read_manifest(path, what):
    """(header, entries) from an object manifest or a backup manifest whose "minio" key holds one."""
    reader = _reader(path, what)
    entries = [Entry.from_manifest(item, path) for item in reader.objects()]
    return _header(reader), entries


def read_header(path, what):
    """The header of a manifest (read_manifest's first half) without holding its objects."""
    reader = _reader(path, what)
    for dummy in reader.objects(parse=False):
        pass
    return _header(reader)


def iter_entries(path, what, line_root=None):
    """The Entries of a manifest as read_manifest reads them, one line at a time: in the order
    written, which for the manifests this collection writes is (bucket, key) order. With
    ``line_root`` each comes as (Entry, its line's text), the text None unless the line's path
    starts with that root (a mirror root's name: the line then is that Entry's manifest_line)."""
    reader = _reader(path, what)
    prefix = None if line_root is None else line_root + "/"
    for item, text in reader.objects_with_text():
        entry = Entry.from_manifest(item, path)
        if prefix is None:
            yield entry
        else:
            yield entry, text if item["path"].startswith(prefix) else None
    _header(reader)


def manifest_line(entry, root_name):
    """The line of one object in a manifest (and in a journal)."""
    # Compact, as manifest.json holds it: a commit passes these lines on as they are.
    return json.dumps(entry.to_manifest(root_name), sort_keys=True, separators=(",", ":"))


def write_manifest(path, header, lines):
    """Atomically write an object manifest (0600) in the one manifest format.

    ``lines`` (manifest_line texts) is any iterable in (bucket, key) order (what planning streams
    rely on when they read it back); it is consumed while the file is written, never held.
    """
    try:
        manifest_format.write_lines(path, header, lines)
    except OSError as exc:
        raise RatBackupError(f"cannot write object manifest {path}: {exc.strerror}", path=path)


def root_name(path):
    """The name manifest paths start with: the mirror root's own directory name."""
    return os.path.basename(os.path.normpath(path))


class Journal:
    """Entries finished by this run, one JSON line each, so an interrupted run's work is reused.

    Lines reach the file at most FLUSH_EVERY seconds apart and on close (also when the run fails):
    a write per object costs the thread that feeds the workers a GIL handover each time. A
    process killed outright loses at most the last second of lines; those objects are fetched
    again, as objects without a line always are.
    """

    FLUSH_EVERY = 1.0

    def __init__(self, path):
        self.path = path
        self.handle = None
        self.flushed = 0.0

    def add(self, line):
        """Journal one finished object by its manifest_line."""
        if self.path:
            if self.handle is None:
                fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o600)
                self.handle = os.fdopen(fd, "a", encoding="utf-8", buffering=fs.CHUNK)
                self.flushed = time.monotonic()
            self.handle.write(line + "\n")
            if time.monotonic() - self.flushed >= self.FLUSH_EVERY:
                self.handle.flush()
                self.flushed = time.monotonic()

    def close(self):
        if self.handle:
            self.handle.close()
            self.handle = None

    def remove(self):
        if self.path:
            fs.unlink_quietly(self.path)

    @staticmethod
    def read(path):
        entries = []
        for item in fs.json_lines(path):
            try:
                entries.append(Entry.from_manifest(item, path))
            except RatBackupError:
                # A line cut short where it still parsed; its object is fetched again.
                continue
        return entries
