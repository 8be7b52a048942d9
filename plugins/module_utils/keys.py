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
    for segment in segments:
        if segment in ("", ".", ".."):
            return False
        if len(segment.encode("utf-8", "surrogatepass")) > MAX_SEGMENT_BYTES:
            return False
    # The first segment shares the mirror root with our own bookkeeping directories.
    return not segments[0].startswith(RESERVED_PREFIX)


def escaped_relpath(bucket, key):
    digest = hashlib.sha256(key.encode("utf-8", "surrogatepass")).hexdigest()
    return posixpath.join(ESCAPE_DIR, bucket, digest)


class KeyMapper:
    """Assigns local paths to the keys of one bucket.

    ``base`` is the directory of the bucket relative to the mirror root ("" when the mirror root
    holds a single bucket's keys) and ``prefix`` the part of every key the mirror strips.
    A key that is also the "directory" of another key (``a`` next to ``a/b``) is escaped, so the
    tree under ``a/`` stays browsable. That needs every key of the bucket: they are kept sorted
    (references only, 8 bytes a key) and searched by bisection.
    """

    def __init__(self, bucket, base, prefix="", keys=()):
        self.bucket = bucket
        self.base = base
        self.prefix = prefix
        self._sorted = sorted(keys)

    def _relative(self, key):
        return key[len(self.prefix):] if self.prefix and key.startswith(self.prefix) else key

    def _is_directory(self, key):
        marker = key + "/"
        index = bisect.bisect_left(self._sorted, marker)
        return index < len(self._sorted) and self._sorted[index].startswith(marker)

    def relpath(self, key):
        rel = self._relative(key)
        if is_plain_relpath(rel) and not self._is_directory(key):
            return posixpath.join(self.base, rel) if self.base else rel
        return escaped_relpath(self.bucket, key)
