# -*- coding: utf-8 -*-
# Copyright: rat.backup contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Large objects as parallel ranged GETs into one file, as s3transfer and rclone fetch them.

One GET stream of a 1 GiB object is bound by one connection and one thread; parts of PART_SIZE
on WORKERS connections are not. Every part after the first asks for the first part's ETag
(If-Match), so a file is never stitched from two versions of an object: a rewrite in between
fails a part, and the whole object is fetched again. Memory stays at a chunk per worker.
"""

from __future__ import annotations

import concurrent.futures
import hashlib
import http.client
import os
import threading

from ansible_collections.rat.backup.plugins.module_utils import fs
from ansible_collections.rat.backup.plugins.module_utils import s3

WORKERS = 8
# One large object at a time: its parts already keep WORKERS connections busy.
_ONE = threading.Semaphore(1)


class StreamBroken(Exception):
    """A body stopped early or the object changed under us; the whole object is fetched again."""

    def __init__(self, cause):
        super().__init__(str(cause))
        self.cause = cause


def fetch(http, entry, fd, read_fd, part_size):
    """Write the object ``entry`` names into ``fd`` (``read_fd``: the same file, for hashing it):
    (the first part's response as get_object's dict, ContentLength the whole size; bytes written;
    sha256), or None when the object is gone."""
    with _ONE:
        first = http.get_object(entry.bucket, entry.key, entry.version_id, byte_range=(0, part_size - 1),
                                missing_ok=not entry.version_id)
        if first is None:
            return None
        size = _total_size(first, entry)
        # The first part's length from Content-Range (a chunked answer has no Content-Length).
        written = _write(first["Body"], fd, 0, min(part_size, size))
        ranges = [(start, min(start + part_size, size) - 1) for start in range(part_size, size, part_size)]
        with concurrent.futures.ThreadPoolExecutor(max_workers=WORKERS) as pool:
            parts = [pool.submit(_part, http, entry, first["ETag"], fd, r) for r in ranges]
            try:
                for part in parts:
                    written += part.result()
            finally:
                for part in parts:
                    part.cancel()
    first["ContentLength"] = size
    return first, written, _sha256(read_fd, size)


def _total_size(first, entry):
    # "bytes 0-16777215/1073741824": the size now, which may differ from the listing's.
    content_range = first.get("ContentRange") or ""
    try:
        return int(content_range.rsplit("/", 1)[1])
    except (IndexError, ValueError):
        raise StreamBroken(OSError(f"no Content-Range in the answer to a ranged GET of {entry.bucket}/{entry.key}"))


def _part(http, entry, etag, fd, byte_range):
    try:
        response = http.get(entry.bucket, entry.key, entry.version_id, byte_range, if_match=etag)
        return _write(response, fd, byte_range[0], byte_range[1] - byte_range[0] + 1)
    except s3.sdk_errors() as exc:
        if s3.error_code(exc) in ("PreconditionFailed", "412"):
            raise StreamBroken(exc)
        raise s3.translate(exc, http.endpoint, "reading", entry.bucket, entry.key)
    finally:
        # These threads end with this object; their connections would only linger.
        http.close()


def _write(body, fd, offset, length):
    written = 0
    try:
        while True:
            chunk = body.read(fs.CHUNK)
            if not chunk:
                break
            view = memoryview(chunk)
            while view:
                done = os.pwrite(fd, view, offset + written)
                view = view[done:]
                written += done
    except (http.client.HTTPException, ConnectionError, TimeoutError) as exc:
        raise StreamBroken(exc)
    if written != length:
        raise StreamBroken(OSError(f"a part ended after {written} of {length} bytes"))
    return written


def _sha256(fd, size):
    # Read back in order from the page cache: the parts arrived in any order.
    digest = hashlib.sha256()
    offset = 0
    while offset < size:
        chunk = os.pread(fd, fs.CHUNK, offset)
        if not chunk:
            break
        digest.update(chunk)
        offset += len(chunk)
    return digest.hexdigest()
