# -*- coding: utf-8 -*-
# Copyright: rat.backup contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""bucket_mirror's options parsed and checked once (``Settings``, frozen), and what a run counts
(``Counter``): what every direction reads and writes instead of the module's params dict."""

from __future__ import annotations

import dataclasses
import datetime
import os
import typing

from ansible_collections.rat.backup.plugins.module_utils.errors import RatBackupError
from ansible_collections.rat.backup.plugins.module_utils._mirror import pool
from ansible_collections.rat.backup.plugins.module_utils._mirror.model import Filter, Location, parse_as_of

MAX_CONCURRENCY = 64


@dataclasses.dataclass(frozen=True)
class Settings:
    """One bucket_mirror run's options, checked against each other (``from_params``)."""

    src: Location
    dest: Location
    filter: Filter
    buckets: typing.Tuple[str, ...] = ()
    bucket_map: typing.Mapping[str, str] = dataclasses.field(default_factory=dict)
    delete: bool = False
    manifest: typing.Optional[str] = None
    link_dest: typing.Optional[str] = None
    link_dest_manifest: typing.Optional[str] = None
    as_of: typing.Optional[datetime.datetime] = None
    use_versions: bool = False
    consistency_point: typing.Optional[dict] = None
    max_clock_skew: float = 0.0
    fail_on_best_effort: bool = False
    create_buckets: bool = False
    concurrency: int = 8
    processes: typing.Optional[int] = None
    attempts: int = 1
    min_free_bytes: int = 0
    probe: bool = False
    check_mode: bool = False
    # backup_capture's: the backup's commit makes the whole tree durable (one syncfs) before the
    # rename that makes it a backup, so the mirror's own syncfs would be a second one.
    synced_by_commit: bool = False

    @classmethod
    def from_params(cls, params, check_mode=False):
        """The Settings of a module's params; a RatBackupError names the first contradiction."""
        o = params
        src, dest = Location(o["src"], "src"), Location(o["dest"], "dest")
        buckets = tuple(o.get("buckets") or ())
        bucket_map = dict(o.get("bucket_map") or {})
        concurrency = max(1, int(o.get("concurrency") or 8))
        if not src.is_s3 and not dest.is_s3:
            raise RatBackupError("src and dest are both local directories; one side must be an s3:// location")
        # A manifest restored into one bucket may name the one bucket of the manifest restored there.
        picks = not src.is_s3 and o.get("manifest") and len(buckets) == 1
        for side in (src, dest):
            if side.is_s3 and side.single_bucket and buckets and not picks:
                raise RatBackupError(f"buckets only applies to an s3:// location without a bucket, not {side.text} "
                                     "(except one bucket of a manifest restored into it)")
        for option, names in (("buckets", buckets), ("bucket_map", bucket_map.values())):
            for name in names:
                if not isinstance(name, str) or not name or "/" in name or name.startswith("."):
                    raise RatBackupError(f"{option}: {name!r} is not a bucket name")
        if bucket_map and (src.is_s3 or dest.single_bucket or not o.get("manifest")):
            raise RatBackupError("bucket_map only applies to a local src with a manifest and dest s3:// "
                                 "(no bucket in dest)")
        if src.is_s3 and dest.is_s3 and o.get("manifest"):
            raise RatBackupError("manifest needs a local src or dest (S3 -> S3 keeps no manifest)")
        if o.get("link_dest") and not (src.is_s3 and not dest.is_s3):
            raise RatBackupError("link_dest only applies to S3 -> local directory mirrors")
        if (o.get("versions_as_of") or o.get("use_versions") or o.get("consistency_point")) and not src.is_s3:
            raise RatBackupError("versions_as_of, use_versions and consistency_point need an s3:// src")
        if o.get("versions_as_of") and o.get("consistency_point"):
            raise RatBackupError("give versions_as_of or consistency_point, not both")
        if not src.is_s3 and not os.path.isdir(src.path):
            raise RatBackupError(f"src {src.path} is not a directory", path=src.path)
        if (o.get("processes") or 0) < 0:
            raise RatBackupError(f"processes {o['processes']} is below 0")
        if concurrency > MAX_CONCURRENCY:
            raise RatBackupError(f"concurrency {concurrency} is above the limit of {MAX_CONCURRENCY}")
        listed = src if src.is_s3 else dest
        return cls(
            src=src, dest=dest, filter=Filter(o.get("include"), o.get("exclude"), listed.prefix),
            buckets=buckets, bucket_map=bucket_map, delete=bool(o.get("delete")), manifest=o.get("manifest"),
            link_dest=o.get("link_dest"), link_dest_manifest=o.get("link_dest_manifest"),
            as_of=parse_as_of(o["versions_as_of"]) if o.get("versions_as_of") else None,
            use_versions=bool(o.get("use_versions")), consistency_point=o.get("consistency_point"),
            max_clock_skew=float(o.get("max_clock_skew") or 0), fail_on_best_effort=bool(o.get("fail_on_best_effort")),
            create_buckets=bool(o.get("create_buckets")), concurrency=concurrency, processes=o.get("processes"),
            attempts=max(1, int(o.get("retry_max_attempts") or 1)), min_free_bytes=max(0, o.get("min_free_bytes") or 0),
            probe=bool(o.get("probe")), check_mode=check_mode, synced_by_commit=bool(o.get("synced_by_commit")))

    def worker_processes(self, transport):
        """How many worker processes run the transfers over ``transport`` (0: threads of this process).

        Only over the fast transport (a side given by endpoint URL). Two per core keeps each
        core busy while its other worker waits on S3.
        """
        if transport is None or self.check_mode:
            return 0
        if self.processes is not None:
            return min(self.processes, self.concurrency)
        return min(self.concurrency, 2 * (os.cpu_count() or 1))

    def require_create_buckets(self, bucket, endpoint):
        """A missing destination bucket is an error unless create_buckets allows creating it."""
        if not self.create_buckets:
            raise RatBackupError(f"bucket {bucket!r} does not exist on {endpoint.name} (set create_buckets "
                                 "to create it)", endpoint=endpoint.name, bucket=bucket)


class Counter:
    """What a run did, for its result: transfers, links, deletes, bytes, and objects that changed
    between listing and reading (``changed_during``)."""

    def __init__(self, log=None, checkpoint=None):
        self.stats = {"copied": 0, "linked": 0, "deleted": 0, "bytes": 0}
        self.changed_during = []
        self.log = log or (lambda message: None)
        # Called before each object a download links or hands to a worker, and once its plan is
        # made, before anything forks (capture.py ends a thread of its own there): raises to stop
        # the run (capture.py stops the mirror so when its pg_dump failed).
        self.checkpoint = checkpoint or (lambda: None)

    def copied(self, size):
        self.stats["copied"] += 1
        self.stats["bytes"] += size

    def linked(self, count=1):
        self.stats["linked"] += count

    def deleted(self, count=1):
        self.stats["deleted"] += count

    def changed(self, note):
        self.changed_during.append(note)

    def progress(self, finished, total):
        self.log(f"bucket_mirror: {finished}/{total} objects, {self.stats['bytes']} bytes copied")


def transfer(settings, counter, items, work, total=None, transport=None, start=None, ahead=None):
    """Run ``work`` on every item in the pool (in worker processes for an HTTP ``transport``, with
    ``start`` and ``ahead`` as pool.results runs them), counting each finished transfer (``work``
    returns the Entry sent, or None)."""
    def record(entry):
        if entry is not None:
            counter.copied(entry.size)

    pool.run_all(items, work, record, settings.concurrency, counter.progress, total,
                 processes=settings.worker_processes(transport), start=start, ahead=ahead)
