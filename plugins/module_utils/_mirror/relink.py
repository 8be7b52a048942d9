# -*- coding: utf-8 -*-
# Copyright: rat.backup contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Relinks: an object written again with the bytes of link_dest's file is linked, not downloaded.

After a restore into empty buckets every object has a new version id, and objects above PART_SIZE
were written in parts of another size than the source's (another ETag). Their bytes are those of
the previous backup's files: proven by hashing the file, when the listed ETag is its MD5 (one part)
or the multipart ETag this collection's uploads give it. The object's attributes are read by a
one-byte GET, since a metadata-only change also writes a new version over the same bytes.
"""

from __future__ import annotations

import re

from ansible_collections.rat.backup.plugins.module_utils import s3
from ansible_collections.rat.backup.plugins.module_utils._mirror import local_tree

# ETags local bytes can prove (LocalDigest.matches_etag): an MD5, or a multipart ETag.
_PROVABLE_ETAG = re.compile(r'^"?[0-9a-f]{32}(-[0-9]+)?"?$')


def candidate(listed, link):
    """link_dest's Entry (None: none for the key) may hold the listed object's bytes though the
    listing differs: same size, not empty, and an ETag whose shape local bytes can prove."""
    return (link is not None and link.size == listed.size and listed.size > 0 and
            bool(_PROVABLE_ETAG.match(listed.etag or "")))


def _range_total(response):
    """The object's size from a ranged GET's answer (Content-Range ``bytes 0-0/N``), or its length."""
    total = (response.get("ContentRange") or "").rpartition("/")[2]
    return int(total) if total.isdigit() else response.get("ContentLength")


def prove(sides, entry, path):
    """True when the file ``path`` holds ``entry``'s bytes (its MD5 or multipart ETag is the listed
    ETag) and the object, read for its first byte, still has that ETag and size; ``entry`` then
    gets the file's sha256 and the object's attributes. False: the file differs, or the object
    changed since the listing (or is gone)."""
    if not local_tree.is_same_size_file(path, entry.size):
        return False
    digest = local_tree.local_digest(path)
    if digest.size != entry.size or not digest.matches_etag(entry.etag):
        return False
    if sides.src_http is not None:
        response = sides.src_http.get_object(entry.bucket, entry.key, entry.version_id, byte_range=(0, 0),
                                             missing_ok=True)
    else:
        response = s3.get_object(sides.src_client, sides.src_endpoint, entry.bucket, entry.key,
                                 entry.version_id, missing_ok=True, byte_range=(0, 0))
    if response is None:
        return False
    try:
        response["Body"].read()
    finally:
        response["Body"].close()
    if response.get("ETag") != entry.etag or _range_total(response) != entry.size:
        return False
    entry.sha256 = digest.sha256
    entry.take_response(response)
    return True
