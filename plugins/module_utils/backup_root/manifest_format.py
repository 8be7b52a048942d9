# -*- coding: utf-8 -*-
# Copyright: rat.backup contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The one manifest format, for manifest.json and bucket_mirror's object manifest: an indented JSON
document whose object list has one compact object per line, so it streams both ways.

manifest.json holds the list under "minio"; bucket_mirror's object manifest at the top. Other JSON
(hand-written, no objects) is read whole. ``write_lines``/``write_document`` are the writer
(streamed, atomic), ``Reader``/``read_document`` the reader (objects line by line, or skipped).

The same text may be stored gzip-compressed (``compress``): the reader tells by the first two
bytes (gzip's magic number, which no JSON text starts with), so every reader reads both, and
``zcat -f`` shows either. A compressed file is one self-contained gzip member whose CRC-32 is
checked when it is read to its end; a damaged one is refused.
"""

from __future__ import annotations

import gzip
import io
import json
import os
import queue
import threading
import zlib

from ansible_collections.rat.backup.plugins.module_utils import fs
from ansible_collections.rat.backup.plugins.module_utils.errors import RatBackupError


def objects_holder(document):
    """The dict holding the object list: manifest.json's "minio" section (None when the backup has
    no objects part), else the document itself (bucket_mirror's object manifest)."""
    if isinstance(document, dict) and "minio" in document:
        return document["minio"] if isinstance(document["minio"], dict) else None
    return document


def _placed(document, objects):
    """A copy of ``document`` with ``objects`` where its object list goes."""
    placed = dict(document)
    if "minio" in placed:
        placed["minio"] = dict(placed["minio"], objects=objects)
    else:
        placed["objects"] = objects
    return placed


def _object_line(item):
    return json.dumps(item, sort_keys=True, ensure_ascii=False, separators=(",", ":"))


def _chunks(document, lines):
    """Text of ``document`` with its object list given as ``lines`` (one JSON object each)."""
    lines = iter(lines)
    line = next(lines, None)
    if line is None:
        if objects_holder(document) is not None:
            document = _placed(document, [])
        yield json.dumps(document, indent=1, sort_keys=True, ensure_ascii=False) + "\n"
        return
    # Stands for the object list in the indented text; random, so no key or name can be mistaken for it.
    marker = "rat-backup-objects-" + os.urandom(16).hex()
    text = json.dumps(_placed(document, marker), indent=1, sort_keys=True, ensure_ascii=False)
    head, tail = text.split(json.dumps(marker), 1)
    key_line = head[head.rindex("\n") + 1:]
    indent = key_line[:len(key_line) - len(key_line.lstrip(" "))]
    yield head + "[\n"
    for following in lines:
        yield line + ",\n"
        line = following
    yield line + "\n" + indent + "]" + tail + "\n"


def _own_objects(document, objects):
    if objects is None:
        objects = (objects_holder(document) or {}).get("objects") or []
    return (_object_line(item) for item in objects)


def dumps(document, objects=None):
    """The manifest text of ``document`` (its objects in place, or given apart as ``objects``)."""
    return "".join(_chunks(document, _own_objects(document, objects)))


def write_document(path, document, objects=None):
    """Write ``document`` atomically (0600), its objects (in place, or any iterable) one per line."""
    write_lines(path, document, _own_objects(document, objects))


GZIP_MAGIC = b"\x1f\x8b"
# zlib's fastest level: on manifest lines (hex digests, keys) level 6 is 10 % smaller at 2-3x the CPU.
COMPRESS_LEVEL = 1
# Text handed to the compressor at a time: one call per object line would cost more than the compression.
_BATCH = 1 << 16


def write_lines(path, document, lines, compress=False):
    """The one manifest writer: atomic (0600), the object list streamed from ``lines`` (JSON texts
    of one object each, consumed while written: bucket_mirror hands over the lines it journals);
    with ``compress`` the text is stored gzip-compressed."""
    if not compress:
        fs.write_lines_atomic(path, _chunks(document, lines))
        return
    with fs.atomic_writer(path, binary=True) as handle:
        with gzip.GzipFile(fileobj=handle, mode="wb", compresslevel=COMPRESS_LEVEL, mtime=0) as packed:
            with _Compressor(packed) as compress:
                batch, size = [], 0
                for chunk in _chunks(document, lines):
                    batch.append(chunk)
                    size += len(chunk)
                    if size >= _BATCH:
                        compress("".join(batch).encode("utf-8"))
                        batch, size = [], 0
                compress("".join(batch).encode("utf-8"))


class _Compressor:
    """``with _Compressor(packed) as compress:`` each ``compress(data)`` is written into the GzipFile
    ``packed`` by a thread of its own. zlib lets go of the GIL while it compresses (and crc32 on
    large buffers), so the object lines are parsed and checked by the caller while the text before
    them is compressed: on a 100,000-object commit ~0.2 s of CPU beside the rest instead of after it.

    At most DEPTH batches wait. An error of the thread is raised at the next ``compress`` or at the
    end; the thread then drops what still comes, so the caller never waits on a full queue. Leaving
    the ``with`` always waits for the thread: nothing touches ``packed`` once it has returned.
    """

    DEPTH = 4
    _END = object()

    def __init__(self, packed):
        self._packed = packed
        self._queue = queue.Queue(self.DEPTH)
        self._error = None
        self._thread = threading.Thread(target=self._run, name="compress", daemon=True)

    def __enter__(self):
        self._thread.start()
        return self

    def __call__(self, data):
        self._raise()
        self._queue.put(data)

    def __exit__(self, exc_type, exc, traceback):
        self._queue.put(self._END)
        self._thread.join()
        if exc_type is None:
            self._raise()

    def _run(self):
        while True:
            data = self._queue.get()
            if data is self._END:
                return
            if self._error is None:
                try:
                    self._packed.write(data)
                except BaseException as error:  # pylint: disable=broad-except
                    # Raised again in the caller's thread: a thread's exception would only be printed.
                    self._error = error

    def _raise(self):
        if self._error is not None:
            raise self._error


def _open_text(fd):
    """A text handle on ``fd``: through gzip when the file starts with its magic number."""
    raw = os.fdopen(fd, "rb")
    try:
        if raw.peek(2)[:2] == GZIP_MAGIC:
            return io.TextIOWrapper(_Gunzip(raw), encoding="utf-8")
        return io.TextIOWrapper(raw, encoding="utf-8")
    except BaseException:
        raw.close()
        raise


class _Gunzip(gzip.GzipFile):
    """A GzipFile that closes the file it reads (GzipFile leaves a given file object open)."""

    def __init__(self, raw):
        super().__init__(fileobj=raw, mode="rb")
        self._raw = raw

    def close(self):
        try:
            super().close()
        finally:
            self._raw.close()


_DECODER = json.JSONDecoder()


def _decode(text):
    """json.loads of a line with no surrounding whitespace, without json.loads' own whitespace scans
    (two regular expression matches per call: a third of its time on a manifest line)."""
    item, end = _DECODER.raw_decode(text)
    if end != len(text):
        raise ValueError(f"extra data after the object at column {end + 1}")
    return item


class Reader:
    """The one reader of the manifest format (and of the compact header line bucket_mirror wrote
    before it): ``objects()`` yields the object list's items one line at a time, in file order;
    once it is exhausted, ``document`` holds the rest with its object list empty.

    A layout not our own (objects over several lines, no object list) is read whole. Symlinks are
    not followed unless ``follow_symlinks`` (a path an operator gave, not one inside a backup).
    """

    def __init__(self, path, what="manifest", follow_symlinks=False):
        self.path = path
        self.what = what
        self.follow_symlinks = follow_symlinks
        self.document = None

    def objects(self, parse=True):
        """The objects as dicts; ``parse=False`` skips them unparsed (only ``document`` is wanted)."""
        for item, _text in self.objects_with_text(parse):
            yield item

    def objects_with_text(self, parse=True):
        """(object, its JSON text as one compact line) for each object: a writer of the same
        objects passes the text on instead of encoding each object again."""
        try:
            fd = os.open(self.path, os.O_RDONLY | (0 if self.follow_symlinks else os.O_NOFOLLOW))
            with _open_text(fd) as handle:
                yield from self._lines(handle, parse)
        except (EOFError, zlib.error, gzip.BadGzipFile) as exc:
            raise RatBackupError(f"{self.what} {self.path} is compressed and damaged (truncated or altered: "
                                 f"{exc or type(exc).__name__}); it cannot be trusted", path=self.path)
        except ValueError as exc:
            raise RatBackupError(f"{self.what} {self.path} is not valid JSON: {exc}", path=self.path)
        except OSError as exc:
            raise RatBackupError(f"cannot read {self.what} {self.path}: {exc.strerror or exc}", path=self.path)

    def _lines(self, handle, parse):
        head = []
        for line in handle:
            head.append(line)
            if line.rstrip().endswith('"objects": ['):
                break
        else:
            yield from self._whole(handle, parse)
            return
        yielded = False
        for line in handle:
            text = line.strip()
            if text.startswith("]"):
                try:
                    self.document = json.loads("".join(head) + line + handle.read())
                except ValueError:
                    if yielded:
                        raise
                    # Not our layout after all (objects over several lines): read whole.
                    yield from self._whole(handle, parse)
                return
            if not parse:
                continue
            text = text.rstrip(",")
            try:
                item = _decode(text)
            except ValueError:
                if yielded:
                    raise
                item = None
            if not isinstance(item, dict):
                if yielded:
                    raise ValueError(f"line {text[:40]!r} is not an object")
                yield from self._whole(handle, parse)
                return
            yielded = True
            yield item, text
        raise RatBackupError(f"{self.what} {self.path} is truncated", path=self.path)

    def _whole(self, handle, parse):
        handle.seek(0)
        document = json.load(handle)
        holder = objects_holder(document)
        objects = []
        if isinstance(holder, dict) and isinstance(holder.get("objects"), list):
            objects, holder["objects"] = holder["objects"], []
        self.document = document
        if parse:
            for item in objects:
                # ASCII-escaped: any text a JSON parser accepted encodes as UTF-8 again.
                yield item, json.dumps(item, sort_keys=True, separators=(",", ":"))


def read_document(path, what="manifest", make=None, with_objects=True):
    """(document, [make(object) ...]) of a manifest in a backup (no symlink followed); the
    document's own object list is left empty. Objects are read line by line (``make`` turns each
    into what the caller keeps), so a 100,000-object manifest never exists as one parsed document;
    without ``with_objects`` they are skipped unparsed (the list is empty)."""
    make = make or (lambda item: item)
    reader = Reader(path, what)
    objects = [make(item) for item in reader.objects(parse=with_objects)]
    return reader.document, objects
