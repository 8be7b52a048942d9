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

_MD5 = re.compile("[0-9a-f]{32}")


class S3Copy:
    """One S3 -> S3 run of ``mirror`` (a Mirror: options, sides, clients, counters)."""

    def __init__(self, mirror):
        self.mirror = mirror
        self._plan = Plan()

    def plan(self):
        m, plan = self.mirror, self._plan
        buckets = m.source_buckets()
        if len(buckets) > 1 and m.dest.single_bucket:
            raise RatBackupError(f"dest {m.dest.text} names one bucket but src has {len(buckets)}")
        for bucket in buckets:
            target = m.dest.bucket if m.dest.single_bucket else bucket
            versioned = s3.is_versioned(m.src_client, m.src_endpoint, bucket)
            if not s3.bucket_exists(m.dest_client, m.dest_endpoint, target):
                m.require_create_buckets(target)
                plan.create_buckets.append((target, versioned))
                existing = {}
            else:
                existing = listing.dest_objects(m.dest_client, m.dest_endpoint, target, m.dest.prefix)
            for entry in m.lister.entries(bucket, versioned):
                dest_key = m.dest.prefix + entry.key[len(m.src.prefix):]
                current = existing.pop(dest_key, None)
                if current is not None and current == (entry.size, entry.etag):
                    plan.keep.append(entry)
                else:
                    plan.copy.append((entry, target, dest_key))
            if m.options.get("delete"):
                plan.delete.extend(f"{target}/{k}" for k in sorted(existing) if m.filter(k))
        summary = plan.summary()
        summary["create_buckets"] = [created[0] for created in plan.create_buckets]
        return {"plan": summary, "changed": bool(plan.copy or plan.delete or plan.create_buckets)}

    def apply(self):
        m, plan = self.mirror, self._plan
        for bucket, versioned in plan.create_buckets:
            s3.create_bucket(m.dest_client, m.dest_endpoint, bucket, versioned)
        m.transfer(plan.copy, self.transfer)
        m.delete_dest(plan.delete)

    def transfer(self, item):
        m = self.mirror
        entry, bucket, key = item
        if m.src_endpoint.same_service(m.dest_endpoint):
            source = {"Bucket": entry.bucket, "Key": entry.key}
            if entry.version_id:
                source["VersionId"] = entry.version_id
            s3.copy_object(m.dest_client, m.dest_endpoint, source, bucket, key, entry.size)
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
                m.changed_during.append({"bucket": entry.bucket, "key": entry.key, "change": "modified"})
            spool.seek(0)
            entry.take_response(response)
            entry.size, entry.sha256 = size, sha256
            reader = integrity.HashingReader(spool, f"s3://{bucket}/{key} (spooled from s3://{entry.bucket}/{entry.key})",
                                             size, sha256)
            m.put_checked(reader, bucket, key, size, sha256, entry.extra_args())
        return entry

    def _spool(self, entry, spool):
        """(GET response, size, sha256) of the source object written to ``spool``.

        Refuses bytes that differ from the MD5 the source's ETag states (single-part objects
        without SSE-KMS/SSE-C, whose ETag is no MD5), so damage on the way is never passed on.
        """
        m = self.mirror
        sha256, md5, size = hashlib.sha256(), hashlib.md5(), 0
        try:
            with s3.translated(m.src_endpoint, "reading", entry.bucket, entry.key):
                response = s3.get_object(m.src_client, m.src_endpoint, entry.bucket, entry.key, entry.version_id)
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
