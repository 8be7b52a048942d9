# -*- coding: utf-8 -*-
# Copyright: rat.backup contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""S3 -> S3: server-side copies within one service, a local spool file across two."""

from __future__ import annotations

import tempfile

from ansible_collections.rat.backup.plugins.module_utils import fs
from ansible_collections.rat.backup.plugins.module_utils import s3
from ansible_collections.rat.backup.plugins.module_utils.errors import RatBackupError
from ansible_collections.rat.backup.plugins.module_utils._mirror import listing
from ansible_collections.rat.backup.plugins.module_utils._mirror.model import Plan


class S3Copy:
    """One S3 -> S3 run of ``mirror`` (a Mirror: options, sides, clients, counters)."""

    def __init__(self, mirror):
        self.mirror = mirror
        self._plan = Plan()

    def plan(self):
        m, plan = self.mirror, self._plan
        buckets = m.source_buckets()
        if len(buckets) > 1 and m.dest.single_bucket:
            raise RatBackupError("dest {0} names one bucket but src has {1}".format(m.dest.text, len(buckets)))
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
                plan.delete.extend("{0}/{1}".format(target, k) for k in sorted(existing) if m.filter(k))
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
        # dropped source stream never becomes a truncated destination object.
        with tempfile.TemporaryFile(prefix="rat-mirror-") as spool:
            try:
                with s3.translated(m.src_endpoint, "reading", entry.bucket, entry.key):
                    response = s3.get_object(m.src_client, m.src_endpoint, entry.bucket, entry.key,
                                             entry.version_id)
                    for chunk in response["Body"].iter_chunks(fs.CHUNK):
                        spool.write(chunk)
            except OSError as exc:
                raise RatBackupError("cannot spool {0}/{1}: {2}".format(entry.bucket, entry.key, exc.strerror))
            if spool.tell() != entry.size and not entry.version_id:
                m.changed_during.append({"bucket": entry.bucket, "key": entry.key, "change": "modified"})
            spool.seek(0)
            entry.take_response(response)
            s3.put_object(m.dest_client, m.dest_endpoint, spool, bucket, key, entry.size, entry.extra_args())
        return entry
