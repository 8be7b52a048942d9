# -*- coding: utf-8 -*-
# Copyright: rat.backup contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""A backup's S3 source: which buckets it takes, and what a backup checks of them before it takes
the lock, listing no object.

Its own file, below the mirror: the checks (capture.check_services) and the mirror's pin both use it.
"""

from __future__ import annotations

from ansible_collections.rat.backup.plugins.module_utils import consistency, drill, s3
from ansible_collections.rat.backup.plugins.module_utils.errors import RatBackupError


def buckets(client, endpoint, wanted, http=None):
    """The buckets a backup of all of S3 takes: ``wanted`` (each must exist) or, when empty, every
    bucket but a restore drill's scratch buckets (a drill's copy of a backup is never part of the
    next one). ``http``: the side's fast transport, or None."""
    names = s3.bucket_names(client, endpoint, http)
    missing = [b for b in wanted if b not in names]
    if missing:
        raise RatBackupError(f"bucket(s) {', '.join(missing)} not found on {endpoint.name}",
                             endpoint=endpoint.name, bucket=missing[0])
    return sorted(wanted) if wanted else sorted(n for n in names if not drill.is_scratch_bucket(n))


def check(client, endpoint, wanted, fail_on_best_effort=False, http=None):
    """What a backup checks of its S3 source before it starts, listing no object: the endpoint answers
    to these credentials, every bucket of ``wanted`` exists (empty: every bucket) and their versioning
    (refused unversioned with ``fail_on_best_effort``). S3's clock is measured later, beside pg_dump
    (listing.SnapshotClock). ``http``: the side's fast transport (s3.connect), which then carries
    every request.

    Returns {"buckets": {bucket: {"versioned": bool}}}.
    """
    names = buckets(client, endpoint, wanted, http)
    found = versioning(client, endpoint, names, fail_on_best_effort, http)
    return {"buckets": {b: {"versioned": v} for b, v in found.items()}}


def versioning(client, endpoint, names, fail_on_best_effort=False, http=None, known=None):
    """{bucket: versioned} of the buckets ``names``; refused when one is unversioned and
    ``fail_on_best_effort`` (consistency.refuse_best_effort). ``known``: {bucket: versioned} read
    earlier in the same run (check's), taken as is; only the other buckets are asked. Safe because
    a bucket once versioned stays so (Suspended counts as versioned, s3.is_versioned): a fact read
    earlier can only miss versioning turned on since, which captures that bucket best-effort, as
    recorded, never the other way round."""
    known = known or {}
    found = {b: known[b] if b in known else s3.is_versioned(client, endpoint, b, http) for b in names}
    if fail_on_best_effort:
        consistency.refuse_best_effort(found)
    return found


def date_reader(client, endpoint, bucket, http=None):
    """S3's clock as consistency.measure_date_offset samples it: a function returning the epoch of
    the Date header of a HeadBucket of ``bucket``."""
    return lambda: consistency.date_header_epoch(s3.server_date(client, endpoint, bucket, http))
