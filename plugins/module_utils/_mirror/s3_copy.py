# -*- coding: utf-8 -*-
# Copyright: rat.backup contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""S3 -> S3: server-side copies within one service, a local spool file across two."""

from __future__ import annotations

import hashlib
import re
import tempfile

from ansible_collections.rat.backup.plugins.module_utils import fs, integrity, s3
from ansible_collections.rat.backup.plugins.module_utils.errors import RatBackupError
from ansible_collections.rat.backup.plugins.module_utils._mirror import listing
from ansible_collections.rat.backup.plugins.module_utils._mirror.model import Plan
from ansible_collections.rat.backup.plugins.module_utils._mirror.settings import transfer

_MD5 = re.compile("[0-9a-f]{32}")


class S3Copy:
    """One S3 -> S3 run: ``settings`` (Settings), ``sides`` (Sides), ``counter`` (Counter), ``lister``
    (listing.Lister of the source)."""

    def __init__(self, settings, sides, counter, lister):
        self.settings = settings
        self.sides = sides
        self.counter = counter
        self.lister = lister
        self._plan = Plan()

    def plan(self):
        o, sides, plan = self.settings, self.sides, self._plan
        buckets = listing.buckets(sides.src_client, sides.src_endpoint, o.src, o.buckets, sides.src_http)
        if len(buckets) > 1 and o.dest.single_bucket:
            raise RatBackupError(f"dest {o.dest.text} names one bucket but src has {len(buckets)}")
        for bucket in buckets:
            target = o.dest.bucket if o.dest.single_bucket else bucket
            versioned = s3.is_versioned(sides.src_client, sides.src_endpoint, bucket, sides.src_http)
            if not s3.bucket_exists(sides.dest_client, sides.dest_endpoint, target):
                o.require_create_buckets(target, sides.dest_endpoint)
                plan.create_buckets.append((target, versioned))
                existing = {}
            else:
                existing = listing.dest_objects(sides.dest_client, sides.dest_endpoint, target, o.dest.prefix)
            for entry in self.lister.entries(bucket, versioned):
                dest_key = o.dest.prefix + entry.key[len(o.src.prefix):]
                current = existing.pop(dest_key, None)
                if current is not None and current == (entry.size, entry.etag):
                    plan.keep.append(entry)
                else:
                    plan.copy.append((entry, target, dest_key))
            if o.delete:
                plan.delete.extend(f"{target}/{k}" for k in sorted(existing) if o.filter(k))
        summary = plan.summary()
        summary["create_buckets"] = [created[0] for created in plan.create_buckets]
        return {"plan": summary, "changed": bool(plan.copy or plan.delete or plan.create_buckets)}

    def apply(self):
        sides, plan = self.sides, self._plan
        for bucket, versioned in plan.create_buckets:
            s3.create_bucket(sides.dest_client, sides.dest_endpoint, bucket, versioned)
        transfer(self.settings, self.counter, plan.copy, self.transfer)
        sides.delete_dest(plan.delete, self.counter)

    def transfer(self, item):
        sides = self.sides
        entry, bucket, key = item
        if sides.src_endpoint.same_service(sides.dest_endpoint):
            source = {"Bucket": entry.bucket, "Key": entry.key}
            if entry.version_id:
                source["VersionId"] = entry.version_id
            s3.copy_object(sides.dest_client, sides.dest_endpoint, source, bucket, key, entry.size)
            return entry
        # Across endpoints the bytes pass through a local spool file: bounded memory, and a
        # dropped source stream never becomes a truncated destination object. The spool is hashed
        # as it is written and uploaded through the same check as a restore's files, so only the
        # bytes the source served (and their sha256, sent to the server) can complete the object.
        with tempfile.TemporaryFile(prefix="rat-mirror-") as spool:
            response, size, sha256 = self._spool(entry, spool)
            if size != entry.size:
                if entry.version_id:
                    raise RatBackupError(f"s3://{entry.bucket}/{entry.key} version {entry.version_id} was listed with "
                                         f"{entry.size} bytes but {size} were read; nothing written to "
                                         f"s3://{bucket}/{key}", bucket=entry.bucket, key=entry.key)
                self.counter.changed({"bucket": entry.bucket, "key": entry.key, "change": "modified"})
            spool.seek(0)
            entry.take_response(response)
            entry.size, entry.sha256 = size, sha256
            reader = integrity.HashingReader(spool, f"s3://{bucket}/{key} (spooled from s3://{entry.bucket}/{entry.key})",
                                             size, sha256)
            sides.put_checked(reader, bucket, key, size, sha256, entry.extra_args())
        return entry

    def _spool(self, entry, spool):
        """(GET response, size, sha256) of the source object written to ``spool``.

        Refuses bytes that differ from the MD5 the source's ETag states (single-part objects
        without SSE-KMS/SSE-C, whose ETag is no MD5), so damage on the way is never passed on.
        """
        sides = self.sides
        sha256, md5, size = hashlib.sha256(), hashlib.md5(), 0
        try:
            with s3.translated(sides.src_endpoint, "reading", entry.bucket, entry.key):
                response = s3.get_object(sides.src_client, sides.src_endpoint, entry.bucket, entry.key, entry.version_id)
                for chunk in response["Body"].iter_chunks(fs.CHUNK):
                    spool.write(chunk)
                    sha256.update(chunk)
                    md5.update(chunk)
                    size += len(chunk)
        except OSError as exc:
            raise RatBackupError(f"cannot spool {entry.bucket}/{entry.key}: {exc.strerror}")
        etag = (response.get("ETag") or "").strip('"')
        plain = not (response.get("SSECustomerAlgorithm") or
                     str(response.get("ServerSideEncryption") or "").startswith("aws:kms"))
        if plain and _MD5.fullmatch(etag) and etag != md5.hexdigest():
            raise RatBackupError(f"s3://{entry.bucket}/{entry.key}: the bytes read have MD5 {md5.hexdigest()} but the "
                                 f"server's ETag is {etag}; damaged on the way, nothing written",
                                 bucket=entry.bucket, key=entry.key)
        return response, size, sha256.hexdigest()
