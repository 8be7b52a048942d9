# -*- coding: utf-8 -*-
# Copyright: rat.backup contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Lossless mapping between S3 keys and paths under a local mirror root.

A key becomes a plain relative path when the filesystem can hold it as-is and nothing else
can land on the same path. Every other key is stored at ``.rat-keys/<bucket>/<sha256(key)>``
and only the manifest knows its real name. Bucket names never start with ``.``, so the
``.rat-`` names at the mirror root cannot collide with a bucket directory.
"""

from __future__ import annotations

import bisect
import collections
import hashlib
import posixpath
import re

ESCAPE_DIR = ".rat-keys"
TMP_DIR = ".rat-tmp"
RESERVED_PREFIX = ".rat-"

# Linux NAME_MAX; keys are UTF-8 on the wire and on disk.
MAX_SEGMENT_BYTES = 255


_CONTROL = re.compile("[\x00-\x1f\x7f]")


def _has_control_character(text):
    return _CONTROL.search(text) is not None


def is_plain_relpath(relpath):
    """True when ``relpath`` (a key relative to its mirror directory) can be a file path as-is."""
    if not relpath or relpath.startswith("/") or relpath.endswith("/"):
        return False
    if _has_control_character(relpath):
        return False
    segments = relpath.split("/")
    if "" in segments or "." in segments or ".." in segments:
        return False
    # A character takes at most 4 bytes of UTF-8: only a path with a longer segment has its segments
    # encoded to be measured (the check runs for every key listed).
    if max(map(len, segments)) * 4 > MAX_SEGMENT_BYTES:
        for segment in segments:
            if len(segment) * 4 > MAX_SEGMENT_BYTES and len(segment.encode("utf-8", "surrogatepass")) > MAX_SEGMENT_BYTES:
                return False
    # The first segment shares the mirror root with our own bookkeeping directories.
    return not segments[0].startswith(RESERVED_PREFIX)


def escaped_relpath(bucket, key):
    digest = hashlib.sha256(key.encode("utf-8", "surrogatepass")).hexdigest()
    return posixpath.join(ESCAPE_DIR, bucket, digest)


def relpath_of(bucket, base, prefix, key, is_directory):
    """The local path of ``key``: plain when it can be, else escaped (see KeyMapper)."""
    rel = key[len(prefix):] if prefix and key.startswith(prefix) else key
    if is_plain_relpath(rel) and not is_directory:
        return f"{base}/{rel}" if base else rel
    return escaped_relpath(bucket, key)


class KeyMapper:
    """Assigns local paths to the keys of one bucket.

    ``base`` is the directory of the bucket relative to the mirror root ("" when the mirror root
    holds a single bucket's keys) and ``prefix`` the part of every key the mirror strips.
    A key that is also the "directory" of another key (``a`` next to ``a/b``) is escaped, so the
    tree under ``a/`` stays browsable. That needs every key of the bucket: they are kept sorted
    (references only, 8 bytes a key) and searched by bisection. ``sorted_relpaths`` does the same
    for a stream in key order without holding it.
    """

    def __init__(self, bucket, base, prefix="", keys=()):
        self.bucket = bucket
        self.base = base
        self.prefix = prefix
        self._sorted = sorted(keys)

    def _is_directory(self, key):
        marker = key + "/"
        index = bisect.bisect_left(self._sorted, marker)
        return index < len(self._sorted) and self._sorted[index].startswith(marker)

    def relpath(self, key):
        return relpath_of(self.bucket, self.base, self.prefix, key, self._is_directory(key))


def sorted_relpaths(bucket, base, prefix, items, key_of):
    """(item, relpath) for ``items`` in ascending key order (as S3 lists them), as KeyMapper maps them.

    Whether a key is the directory of another is known once a later key settles it: the keys
    between ``k`` and the first ``k/...`` all start with ``k`` and a character below "/"
    (``k-1``, ``k.tmp``), so only keys that are prefixes of the latest one are still open and
    items wait only behind those (usually none).
    """
    waiting = collections.deque()  # [item, key, is_directory or None], in key order
    open_slots = []
    for item in items:
        key = key_of(item)
        still_open = []
        for slot in open_slots:
            earlier = slot[1]
            if key.startswith(earlier + "/"):
                slot[2] = True
            elif key.startswith(earlier) and key[len(earlier)] < "/":
                still_open.append(slot)
            else:
                slot[2] = False
        slot = [item, key, None]
        still_open.append(slot)
        open_slots = still_open
        waiting.append(slot)
        while waiting and waiting[0][2] is not None:
            done = waiting.popleft()
            yield done[0], relpath_of(bucket, base, prefix, done[1], done[2])
    for slot in waiting:
        yield slot[0], relpath_of(bucket, base, prefix, slot[1], bool(slot[2]))
