# -*- coding: utf-8 -*-
# Copyright: rat.backup contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""An S3-compatible bucket as off-site target: ``s3://<bucket>/<prefix>/<host>/<name>/<stored path>``.

Uploads stream in parts held in memory (retries resend a part, never re-read the file), each part
with its Content-MD5 so the server refuses bytes damaged in transit. A file's plaintext sha256 is
compared with the manifest before the object is committed (put, or CompleteMultipartUpload):
an object that exists has passed that check. Unchanged files are server-side copies.
"""

from __future__ import annotations

import hashlib
import io

from ansible_collections.rat.backup.plugins.module_utils.backup_root import layout
from ansible_collections.rat.backup.plugins.module_utils import s3
from ansible_collections.rat.backup.plugins.module_utils.errors import RatBackupError
from ansible_collections.rat.backup.plugins.module_utils.fs import CHUNK
from ansible_collections.rat.backup.plugins.module_utils._offsite import plan as pl

PART_SIZE = 8 << 20
# S3 allows 10,000 parts; this keeps a margin for age's overhead on the largest files.
MAX_PARTS = 9000


def part_size(size):
    return max(PART_SIZE, -(-int(size * 1.01 + (1 << 20)) // MAX_PARTS))


class _Throttled(io.BytesIO):
    """A request body that spends the run's bandwidth budget as botocore reads it (retries included)."""

    def __init__(self, data, throttle):
        super().__init__(data)
        self.throttle = throttle

    def read(self, size=-1):
        block = super().read(size)
        self.throttle.take(len(block))
        return block


class S3Target:
    kind = "s3"

    def __init__(self, client, endpoint, bucket, prefix, host, throttle):
        self.client = client
        self.endpoint = endpoint
        self.bucket = bucket
        self.base = "/".join(p for p in (prefix or "").strip("/").split("/") + [host] if p)
        self.throttle = throttle
        self.bytes_sent = 0

    def location(self, name=None):
        return f"s3://{self.bucket}/{self.base}/{name + '/' if name else ''}"

    def key(self, name, stored):
        return f"{self.base}/{name}/{stored}"

    def _body(self, data):
        self.bytes_sent += len(data)
        return _Throttled(data, self.throttle)

    def _where(self, error):
        return RatBackupError(f"off-site target {self.location()}: {error.msg}", **error.details)

    def check(self):
        try:
            found = s3.bucket_exists(self.client, self.endpoint, self.bucket)
        except RatBackupError as exc:
            raise self._where(exc)
        if not found:
            raise RatBackupError(f"off-site target {self.location()}: bucket {self.bucket!r} does not exist on "
                                 f"{self.endpoint.name}: create it (the run never creates it)",
                                 variable="rat_offsite_s3_bucket")

    def backups(self):
        """{"complete": [...], "partial": [...]} of this host's copies, oldest first."""
        found = {"complete": [], "partial": []}
        try:
            names = sorted(n for n in s3.list_prefixes(self.client, self.endpoint, self.bucket, self.base + "/")
                           if layout.time_of(n))
            for name in names:
                stored = {item["Key"].rsplit("/", 1)[-1] for item in s3.list_objects(
                    self.client, self.endpoint, self.bucket, self.key(name, layout.MANIFEST))}
                found["complete" if stored & set(pl.MANIFESTS) else "partial"].append(name)
        except RatBackupError as exc:
            raise self._where(exc)
        return found

    def listing(self, name):
        """{stored path: {"size", "etag"}} under one copy."""
        prefix = f"{self.base}/{name}/"
        try:
            return {item["Key"][len(prefix):]: {"size": item["Size"], "etag": item.get("ETag")}
                    for item in s3.list_objects(self.client, self.endpoint, self.bucket, prefix)}
        except RatBackupError as exc:
            raise self._where(exc)

    def read(self, name, stored):
        return b"".join(self.chunks(name, stored))

    def chunks(self, name, stored, size=CHUNK):
        """The stored bytes of one file, streamed (and counted against the bandwidth limit)."""
        key = self.key(name, stored)
        try:
            body = s3.get_object(self.client, self.endpoint, self.bucket, key)["Body"]
            with s3.translated(self.endpoint, "reading", self.bucket, key):
                for block in body.iter_chunks(size):
                    self.throttle.take(len(block))
                    yield block
        except RatBackupError as exc:
            raise self._where(exc)

    def put_bytes(self, name, stored, data):
        try:
            return s3.put_bytes(self.client, self.endpoint, self.bucket, self.key(name, stored), data, self._body(data))
        except RatBackupError as exc:
            raise self._where(exc)

    def send(self, name, rel, stored, source, want):
        """Stream one file; returns its index entry. ``want``: the manifest's size and sha256."""
        chunks = source.chunks(part_size(want.get("size") or 0))
        first = next(chunks, b"")
        second = next(chunks, None)
        if second is None:
            _check(source, rel, want)
            etag = self.put_bytes(name, stored, first)
        else:
            try:
                etag = s3.put_parts(self.client, self.endpoint, self.bucket, self.key(name, stored),
                                    _prepend((first, second), chunks), lambda: _check(source, rel, want), self._body)
            except RatBackupError as exc:
                raise exc if exc.details.get("local") else self._where(exc)
        return pl.entry(rel, stored, source.stored_size, source.stored_sha256, etag)

    def link(self, name, prev, items, pool_map):
        """Server-side copies of unchanged files from the previous copy: no byte leaves this host.
        Their ETags come from one listing afterwards."""
        def copy(item):
            source = {"Bucket": self.bucket, "Key": self.key(prev, item["stored"])}
            s3.copy_object(self.client, self.endpoint, source, self.bucket, self.key(name, item["stored"]), item["size"])
        try:
            pool_map(copy, items)
        except RatBackupError as exc:
            raise self._where(exc)
        listing = self.listing(name) if items else {}
        return [dict(item, etag=listing.get(item["stored"], {}).get("etag")) for item in items]

    def hashes(self, name, stored_paths):
        """{stored path: sha256} read back from the target (full verification)."""
        found = {}
        for stored in stored_paths:
            digest = hashlib.sha256()
            for block in self.chunks(name, stored):
                digest.update(block)
            found[stored] = digest.hexdigest()
        return found

    def begin(self, name):
        """Nothing to prepare: a copy without its manifest is incomplete whatever else it holds."""

    def commit(self, name):
        """The manifest, written last, made the copy complete."""

    def remove(self, name):
        """Manifest first (the copy stops counting as complete), then everything else."""
        stored = sorted(self.listing(name), key=lambda s: s not in pl.MANIFESTS)
        manifests = [self.key(name, s) for s in stored if s in pl.MANIFESTS]
        try:
            s3.delete_objects(self.client, self.endpoint, self.bucket, manifests)
            s3.delete_objects(self.client, self.endpoint, self.bucket,
                              [self.key(name, s) for s in stored if s not in pl.MANIFESTS])
        except RatBackupError as exc:
            raise self._where(exc)


def _prepend(first, rest):
    yield from first
    yield from rest


def _check(source, rel, want):
    """Refuse a file whose bytes, as read while streaming, are not what the manifest recorded."""
    if source.plain_sha256 != want.get("sha256") or source.plain_size != want.get("size"):
        raise RatBackupError(f"{source.path} changed since the backup was made (sha256/size differ from "
                             "manifest.json while shipping it): not shipped; verify the local backup",
                             path=rel, local=source.path)
