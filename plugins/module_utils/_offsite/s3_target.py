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

import base64
import hashlib
import io

from ansible_collections.rat.backup.plugins.module_utils import layout
from ansible_collections.rat.backup.plugins.module_utils import s3
from ansible_collections.rat.backup.plugins.module_utils.errors import RatBackupError
from ansible_collections.rat.backup.plugins.module_utils._offsite import plan as pl

PART_SIZE = 8 << 20
# S3 allows 10,000 parts; this keeps a margin for age's overhead on the largest files.
MAX_PARTS = 9000
COPY_LIMIT = 5 << 30


def part_size(size):
    return max(PART_SIZE, -(-int(size * 1.01 + (1 << 20)) // MAX_PARTS))


def _md5(data):
    return base64.b64encode(hashlib.md5(data).digest()).decode("ascii")


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
        return "s3://%s/%s/%s" % (self.bucket, self.base, (name + "/") if name else "")

    def key(self, name, stored):
        return "%s/%s/%s" % (self.base, name, stored)

    def _fail(self, exc, action, key=None):
        error = s3.translate(exc, self.endpoint, action, self.bucket, key)
        return RatBackupError("off-site target %s: %s" % (self.location(), error.msg), **error.details)

    def check(self):
        try:
            self.client.head_bucket(Bucket=self.bucket)
        except s3.sdk_errors() as exc:
            raise self._fail(exc, "checking the off-site bucket")

    def backups(self):
        """{"complete": [...], "partial": [...]} of this host's copies, oldest first."""
        names = []
        try:
            for page in self.client.get_paginator("list_objects_v2").paginate(
                    Bucket=self.bucket, Prefix=self.base + "/", Delimiter="/"):
                for item in page.get("CommonPrefixes", []):
                    name = item["Prefix"][len(self.base) + 1:].rstrip("/")
                    if layout.time_of(name):
                        names.append(name)
            found = {"complete": [], "partial": []}
            for name in sorted(names):
                answer = self.client.list_objects_v2(Bucket=self.bucket, Prefix=self.key(name, layout.MANIFEST))
                stored = {item["Key"].rsplit("/", 1)[-1] for item in answer.get("Contents", [])}
                found["complete" if stored & set(pl.MANIFESTS) else "partial"].append(name)
            return found
        except s3.sdk_errors() as exc:
            raise self._fail(exc, "listing the off-site copies")

    def listing(self, name):
        """{stored path: {"size", "etag"}} under one copy."""
        prefix = "%s/%s/" % (self.base, name)
        found = {}
        try:
            for page in self.client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=prefix):
                for item in page.get("Contents", []):
                    found[item["Key"][len(prefix):]] = {"size": item["Size"], "etag": item.get("ETag")}
        except s3.sdk_errors() as exc:
            raise self._fail(exc, "listing")
        return found

    def read(self, name, stored):
        key = self.key(name, stored)
        try:
            return self.client.get_object(Bucket=self.bucket, Key=key)["Body"].read()
        except s3.sdk_errors() as exc:
            raise self._fail(exc, "reading", key)

    def chunks(self, name, stored, size=1 << 20):
        """The stored bytes of one file, streamed."""
        key = self.key(name, stored)
        try:
            body = self.client.get_object(Bucket=self.bucket, Key=key)["Body"]
            for block in body.iter_chunks(size):
                self.throttle.take(len(block))
                yield block
        except s3.sdk_errors() as exc:
            raise self._fail(exc, "reading", key)

    def put_bytes(self, name, stored, data):
        key = self.key(name, stored)
        try:
            answer = self.client.put_object(Bucket=self.bucket, Key=key, Body=_Throttled(data, self.throttle),
                                            ContentMD5=_md5(data))
        except s3.sdk_errors() as exc:
            raise self._fail(exc, "writing", key)
        self.bytes_sent += len(data)
        return answer.get("ETag")

    def send(self, name, rel, stored, source, want):
        """Stream one file; returns its index entry. ``want``: the manifest's size and sha256."""
        key = self.key(name, stored)
        chunks = source.chunks(part_size(want.get("size") or 0))
        first = next(chunks, b"")
        second = next(chunks, None)
        if second is None:
            _check(source, rel, want)
            etag = self.put_bytes(name, stored, first)
            return pl.entry(rel, stored, source.stored_size, source.stored_sha256, etag)
        upload = None
        try:
            upload = self.client.create_multipart_upload(Bucket=self.bucket, Key=key)["UploadId"]
            parts = []
            for number, block in enumerate(_prepend((first, second), chunks), 1):
                answer = self.client.upload_part(Bucket=self.bucket, Key=key, UploadId=upload, PartNumber=number,
                                                 Body=_Throttled(block, self.throttle), ContentMD5=_md5(block))
                self.bytes_sent += len(block)
                parts.append({"PartNumber": number, "ETag": answer["ETag"]})
            _check(source, rel, want)
            answer = self.client.complete_multipart_upload(Bucket=self.bucket, Key=key, UploadId=upload,
                                                           MultipartUpload={"Parts": parts})
            upload = None
        except s3.sdk_errors() as exc:
            raise self._fail(exc, "writing", key)
        finally:
            if upload:
                self._abort(key, upload)
        return pl.entry(rel, stored, source.stored_size, source.stored_sha256, answer.get("ETag"))

    def _abort(self, key, upload):
        try:
            self.client.abort_multipart_upload(Bucket=self.bucket, Key=key, UploadId=upload)
        except s3.sdk_errors():
            pass  # the original failure is the one to report; the bucket's lifecycle cleans parts up

    def link(self, name, prev, item):
        """Server-side copy of an unchanged file from the previous copy; no byte leaves this host."""
        key = self.key(name, item["stored"])
        source = {"Bucket": self.bucket, "Key": self.key(prev, item["stored"])}
        try:
            if item["size"] < COPY_LIMIT:
                etag = self.client.copy_object(Bucket=self.bucket, Key=key, CopySource=source)["CopyObjectResult"]["ETag"]
            else:
                self.client.copy(source, self.bucket, key)
                etag = self.client.head_object(Bucket=self.bucket, Key=key)["ETag"]
        except s3.sdk_errors() as exc:
            raise self._fail(exc, "copying from %s" % prev, key)
        return dict(item, etag=etag)

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
        keys = sorted(self.listing(name))
        try:
            for stored in [k for k in keys if k in pl.MANIFESTS]:
                self.client.delete_object(Bucket=self.bucket, Key=self.key(name, stored))
            keys = [k for k in keys if k not in pl.MANIFESTS]
            for start in range(0, len(keys), 1000):
                batch = [{"Key": self.key(name, s)} for s in keys[start:start + 1000]]
                self.client.delete_objects(Bucket=self.bucket, Delete={"Objects": batch, "Quiet": True})
        except s3.sdk_errors() as exc:
            raise self._fail(exc, "removing %s" % name)


def _prepend(first, rest):
    yield from first
    yield from rest


def _check(source, rel, want):
    """Refuse a file whose bytes, as read while streaming, are not what the manifest recorded."""
    if source.plain_sha256 != want.get("sha256") or source.plain_size != want.get("size"):
        raise RatBackupError("%s changed since the backup was made (sha256/size differ from manifest.json while "
                             "shipping it): not shipped; verify the local backup" % source.path,
                             path=rel, local=source.path)
