# -*- coding: utf-8 -*-
# Copyright: rat.backup contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Mirroring between S3 and disk: S3 -> disk, disk -> S3, or S3 -> S3.

``Mirror`` is the one entry point: it validates the options, lets the direction plan (check
mode stops there) and runs it. The parts live in the private package ``_mirror``: ``model``
(Location, Entry, Filter, Plan, times), ``listing``, ``local_tree``, ``object_manifest`` (with
the journal), ``merge`` (plans as merges of sorted streams, spooled), ``download``, ``upload``,
``s3_copy`` and ``pool``; raw bucket calls are in ``s3``.
"""

from __future__ import annotations

import os
import time

from ansible_collections.rat.backup.plugins.module_utils import consistency, s3
from ansible_collections.rat.backup.plugins.module_utils.errors import RatBackupError
from ansible_collections.rat.backup.plugins.module_utils._mirror import listing
from ansible_collections.rat.backup.plugins.module_utils._mirror import pool
from ansible_collections.rat.backup.plugins.module_utils._mirror.download import Download
from ansible_collections.rat.backup.plugins.module_utils._mirror.model import Filter, Location, Plan, parse_as_of
from ansible_collections.rat.backup.plugins.module_utils._mirror.s3_copy import S3Copy
from ansible_collections.rat.backup.plugins.module_utils._mirror.upload import Upload


class Mirror:
    """One bucket_mirror run. ``options`` is the module's params dict.

    The directions read their settings from it and count into ``stats`` and ``changed_during``.
    """

    def __init__(self, options, src_client=None, dest_client=None, log=None, check_mode=False,
                 src_http=None, dest_http=None):
        self.options = options
        # fast transports (s3.connect) for endpoints given by URL: listings, GETs and single-request PUTs
        # go through them (a boto3 call costs several times their CPU per object).
        self.src_http = src_http
        self.dest_http = dest_http
        self.src = Location(options["src"], "src")
        self.dest = Location(options["dest"], "dest")
        self.src_endpoint = s3.Endpoint.from_params(options, "src_")
        self.dest_endpoint = s3.Endpoint.from_params(options, "dest_")
        self.src_client = src_client
        self.dest_client = dest_client
        self.log = log or (lambda message: None)
        self.check_mode = check_mode
        self.concurrency = max(1, int(options.get("concurrency") or 8))
        self.attempts = max(1, int(options.get("retry_max_attempts") or 1))
        self.as_of = parse_as_of(options["versions_as_of"]) if options.get("versions_as_of") else None
        self.changed_during = []
        self.consistency = None
        self.stats = {"copied": 0, "linked": 0, "deleted": 0, "bytes": 0}
        self._validate()
        listed = self.src if self.src.is_s3 else self.dest
        self.filter = Filter(options.get("include"), options.get("exclude"), listed.prefix)
        self.lister = listing.Lister(self.src_client, self.src_endpoint, self.src.prefix, self.filter,
                                     self.as_of, bool(options.get("use_versions")), src_http)

    def _validate(self):
        o = self.options
        if not self.src.is_s3 and not self.dest.is_s3:
            raise RatBackupError("src and dest are both local directories; one side must be an s3:// location")
        buckets = o.get("buckets") or []
        # A manifest restored into one bucket may name the one bucket of the manifest restored there.
        picks = not self.src.is_s3 and o.get("manifest") and len(buckets) == 1
        for side in (self.src, self.dest):
            if side.is_s3 and side.single_bucket and buckets and not picks:
                raise RatBackupError(f"buckets only applies to an s3:// location without a bucket, not {side.text} "
                                     "(except one bucket of a manifest restored into it)")
        for option, names in (("buckets", buckets), ("bucket_map", (o.get("bucket_map") or {}).values())):
            for name in names:
                if not isinstance(name, str) or not name or "/" in name or name.startswith("."):
                    raise RatBackupError(f"{option}: {name!r} is not a bucket name")
        if o.get("bucket_map") and (self.src.is_s3 or self.dest.single_bucket or not o.get("manifest")):
            raise RatBackupError("bucket_map only applies to a local src with a manifest and dest s3:// "
                                 "(no bucket in dest)")
        if self.src.is_s3 and self.dest.is_s3 and o.get("manifest"):
            raise RatBackupError("manifest needs a local src or dest (S3 -> S3 keeps no manifest)")
        if o.get("link_dest") and not (self.src.is_s3 and not self.dest.is_s3):
            raise RatBackupError("link_dest only applies to S3 -> local directory mirrors")
        if (o.get("versions_as_of") or o.get("use_versions") or o.get("consistency_point")) and not self.src.is_s3:
            raise RatBackupError("versions_as_of, use_versions and consistency_point need an s3:// src")
        if o.get("versions_as_of") and o.get("consistency_point"):
            raise RatBackupError("give versions_as_of or consistency_point, not both")
        if not self.src.is_s3 and not os.path.isdir(self.src.path):
            raise RatBackupError(f"src {self.src.path} is not a directory", path=self.src.path)
        if (self.options.get("processes") or 0) < 0:
            raise RatBackupError(f"processes {self.options['processes']} is below 0")
        if self.concurrency > 64:
            raise RatBackupError(f"concurrency {self.concurrency} is above the limit of 64")

    def run(self):
        started = time.monotonic()
        if self.options.get("probe"):
            result = self._probe()
        else:
            if self.src.is_s3 and not self.dest.is_s3:
                direction = Download(self)
            elif self.dest.is_s3 and not self.src.is_s3:
                direction = Upload(self)
            else:
                direction = S3Copy(self)
            result = direction.plan()
            if not self.check_mode:
                direction.apply()
        seconds = time.monotonic() - started
        result.update(self.stats)
        result["unchanged"] = result["plan"]["unchanged"]["count"]
        result["seconds"] = round(seconds, 3)
        result["mb_per_s"] = round(self.stats["bytes"] / 1e6 / seconds, 2) if seconds > 0 else 0.0
        result["changed_during"] = self.changed_during
        result["consistency"] = self.consistency
        return result

    def _probe(self):
        """Ask each S3 side what a mirror needs before it starts (endpoint, credentials, the source's
        buckets and their versioning) without listing a single object: cheap on any lake."""
        probed = {}
        if self.src.is_s3:
            versioning = self.pin(self.source_buckets())
            probed["src"] = {bucket: {"versioned": versioned} for bucket, versioned in versioning.items()}
        if self.dest.is_s3:
            s3.bucket_names(self.dest_client, self.dest_endpoint)
            probed["dest"] = {}
        return {"plan": Plan().summary(), "changed": False, "probed": probed}

    # --- what the directions share ------------------------------------------------------------

    def source_buckets(self):
        return listing.buckets(self.src_client, self.src_endpoint, self.src, self.options.get("buckets") or [])

    def pin(self, buckets):
        """{bucket: versioned} of the source; with a consistency_point, the clock skew measured (refused over
        max_clock_skew) and, for a dump's snapshot, the lister set to list versioned buckets as of it."""
        o = self.options
        versioning = {b: s3.is_versioned(self.src_client, self.src_endpoint, b) for b in buckets}
        if o.get("fail_on_best_effort"):
            consistency.refuse_best_effort(versioning)
        point = o.get("consistency_point")
        if point and buckets:
            bound = float(o.get("max_clock_skew") or 0)
            skew = consistency.measure_skew(
                lambda: s3.server_date(self.src_client, self.src_endpoint, buckets[0]), point, bound)
            if "time_epoch" in point:
                self.lister.snapshot_window = consistency.window(point, skew)
                self.consistency = consistency.describe(point, skew, self.lister.snapshot_window, bound, versioning)
            else:
                self.consistency = {"clock_skew": [round(skew[0], 6), round(skew[1], 6)], "max_clock_skew": bound}
        return versioning

    def require_create_buckets(self, bucket):
        """A missing destination bucket is an error unless create_buckets allows creating it."""
        if not self.options.get("create_buckets"):
            raise RatBackupError(f"bucket {bucket!r} does not exist on {self.dest_endpoint.name} (set create_buckets "
                                 "to create it)", endpoint=self.dest_endpoint.name, bucket=bucket)

    def put_checked(self, reader, bucket, key, size, sha256, extra_args):
        """Every upload of a mirror: sent (or completed) only once ``reader`` proved its bytes.

        ``reader`` is an integrity.HashingReader over the source of the object; ``sha256`` (the
        expected one, or None) also goes to the server, which rejects a body that differs from it.
        """
        if self.dest_http is not None and size <= s3.PART_SIZE:
            body = reader.read(size)
            self.dest_http.put_object(bucket, key, body, reader.finish(), extra_args)
        else:
            if self.dest_client is None:
                self.dest_client = s3.connect(self.options, "dest_").client
            s3.put_checked(self.dest_client, self.dest_endpoint, reader, bucket, key, size, extra_args, sha256)

    def transfer(self, items, work, total=None, transport=None):
        """Run ``work`` on every item in the pool (in worker processes for an HTTP ``transport``),
        counting each finished transfer."""
        def record(entry):
            if entry is not None:
                self.count_copied(entry.size)

        pool.run_all(items, work, record, self.concurrency, self.progress, total,
                     processes=self.worker_processes(transport), start=self.drop_dest_client)

    def worker_processes(self, transport):
        """How many worker processes run the transfers over ``transport`` (0: threads of this process).

        Only over the fast transport (a side given by endpoint URL). Two per core keeps each
        core busy while its other worker waits on S3.
        """
        if transport is None or self.check_mode:
            return 0
        if self.options.get("processes") is not None:
            return min(self.options["processes"], self.concurrency)
        return min(self.concurrency, 2 * (os.cpu_count() or 1))

    def drop_dest_client(self):
        """In a worker process: forget the parent's boto3 client (its pooled connections are the
        parent's; two workers on one would mix their requests). put_checked makes one of its
        own only if an upload too large for one PUT needs it (a client costs ~25 MB)."""
        self.dest_client = None

    def count_copied(self, size):
        self.stats["copied"] += 1
        self.stats["bytes"] += size

    def progress(self, finished, total):
        self.log(f"bucket_mirror: {finished}/{total} objects, {self.stats['bytes']} bytes copied")

    def delete_dest(self, labels):
        """Delete ``bucket/key`` labels on the destination S3 side."""
        by_bucket = {}
        for label in labels:
            bucket, dummy, key = label.partition("/")
            by_bucket.setdefault(bucket, []).append(key)
        for bucket, keys in by_bucket.items():
            s3.delete_objects(self.dest_client, self.dest_endpoint, bucket, keys)
            self.stats["deleted"] += len(keys)
