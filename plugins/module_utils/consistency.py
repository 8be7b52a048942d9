# -*- coding: utf-8 -*-
# Copyright: rat.backup contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The consistency point: clock skew between PostgreSQL and S3, and "each key as of T".

T comes from PostgreSQL (postgres.py reads ``statement_timestamp()`` and ``clock_timestamp()`` in the
statement that exports the dump's snapshot, so the snapshot was taken between the two). S3 stamps
versions with its own clock, so T is moved onto that clock through the measured skew, which is an
interval: the S3 ``Date`` header has whole seconds. Every time here is a float of Unix seconds.

The rule for one key, given the window [lo, hi] of S3 time in which the snapshot happened:
- a version or delete marker whose LastModified is after ``hi`` is ignored (written after T);
- a delete marker that may have been written at or after ``lo`` is ignored too: the file may
  still have been needed by the snapshot (Iceberg expires files only after a newer commit);
- of the rest the newest decides. LastModified lists whole seconds on AWS and moto (MinIO lists
  milliseconds; a value without a fraction is taken as whole seconds), and a version may have
  been written up to that precision after its stamp, which is why a delete marker counts as
  "before" only when its stamp plus the precision is at or before ``lo``. S3 orders a key's
  versions newest first; a delete marker's place among versions of the same second is not
  known (the SDK returns markers in a list of their own) unless it is the latest: then the
  version wins, so nothing the snapshot could need is ever left out.
The result: every object live at some moment of [lo - 1 s, hi], each at its newest content up to
``hi``; nothing written after ``hi`` + the precision, nothing deleted before ``lo``.
"""

from __future__ import annotations

import copy
import datetime
import email.utils
import time

from ansible_collections.rat.backup.plugins.module_utils.errors import RatBackupError

_UTC = datetime.timezone.utc
# The Date header's precision; sampling stops once the skew is known this closely.
DATE_PRECISION = 1.0
TARGET_WIDTH = 0.2
# Enough readings, one per TARGET_WIDTH / 2, to cover the second in which the Date ticks.
MAX_SAMPLES = 14


def epoch(dt):
    return dt.timestamp()


def iso_epoch(value):
    """A Unix time as ISO 8601 UTC with microseconds (the manifest's spelling of T)."""
    text = datetime.datetime.fromtimestamp(value, _UTC).isoformat(timespec="microseconds")
    return text.replace("+00:00", "Z")


def offset_interval(before, remote, after, precision=0.0):
    """(lo, hi) of remote clock minus local clock, from one reading taken between local ``before`` and ``after``.

    ``remote`` is the reading truncated to ``precision`` (0 for exact clocks, 1 for a Date header).
    """
    return remote - after, remote + precision - before


def intersect(a, b):
    lo, hi = max(a[0], b[0]), min(a[1], b[1])
    if lo > hi:
        raise RatBackupError(f"the clock readings contradict each other ({list(a)} and {list(b)}): a clock stepped "
                             "while it was measured; run the backup again")
    return lo, hi


def date_header_epoch(response):
    """The S3 server's clock from a boto3 response's ``Date`` header."""
    headers = (response or {}).get("ResponseMetadata", {}).get("HTTPHeaders", {})
    value = headers.get("date")
    if not value:
        raise RatBackupError("the S3 server sent no Date header: its clock cannot be compared with PostgreSQL's")
    try:
        return email.utils.parsedate_to_datetime(value).timestamp()
    except (TypeError, ValueError) as exc:
        raise RatBackupError(f"the S3 server sent a Date header that is not a date: {value!r} ({exc})")


def measure_date_offset(read_date, clock=time.time, sleep=time.sleep, target=TARGET_WIDTH, samples=MAX_SAMPLES):
    """(lo, hi) of server clock minus ``clock``, from ``read_date()`` (one request's Date, Unix seconds).

    One reading leaves a second of doubt. The server's next second then begins at a local moment
    the doubt places in a one-second window; readings every ``target / 2`` from its start find it,
    each one either lowering the upper bound by that step or, once the Date has ticked, closing the
    interval to the step plus a request's time. Waiting for the tick (half a second on average, at
    most one) is the whole cost: bisection instead waits up to a second per reading.
    """
    step = target / 2
    before = clock()
    date = read_date()
    interval = offset_interval(before, date, clock(), DATE_PRECISION)
    for _sample in range(samples - 1):
        if interval[1] - interval[0] <= target:
            break
        # The earliest local moment at which the server may show date + 1, plus one step.
        wait = date + DATE_PRECISION - interval[1] + step - clock()
        if wait > 0:
            sleep(wait)
        before = clock()
        date = read_date()
        interval = intersect(interval, offset_interval(before, date, clock(), DATE_PRECISION))
    return interval


def skew(s3_offset, pg_offset):
    """(lo, hi) of S3 clock minus PostgreSQL clock, from both clocks' offsets to this host's clock."""
    return s3_offset[0] - pg_offset[1], s3_offset[1] - pg_offset[0]


def check_skew(interval, bound):
    """Refuse when the skew cannot be shown to be within ``bound`` seconds either way."""
    worst = max(abs(interval[0]), abs(interval[1]))
    if worst > bound:
        raise RatBackupError(
            f"the S3 server's clock differs from PostgreSQL's by between {interval[0]:+.3f} and {interval[1]:+.3f} "
            f"s, more than the allowed {bound} s: versions cannot be matched to the database snapshot. Fix the "
            "clocks (NTP) or raise the bound (max_clock_skew / rat_backup_max_clock_skew)",
            clock_skew=[round(interval[0], 6), round(interval[1], 6)], max_clock_skew=bound)
    return interval


def window(point, skew_interval):
    """(lo, hi) in S3 time in which the snapshot of ``point`` (pg_dump's consistency_point) happened."""
    return point["earliest_epoch"] + skew_interval[0], point["time_epoch"] + skew_interval[1]


def precision_of(modified):
    """How long after its stamp a version may have been written (whole-second servers list .000)."""
    return 0.001 if modified.microsecond else 1.0


def choose(versions, markers, bounds):
    """The version a key has as of ``bounds`` (lo, hi), or None when it is absent then.

    ``versions`` and ``markers`` are one key's list_object_versions items, each newest first.
    ``bounds`` None means now: the latest item.
    """
    if bounds is None:
        for item in versions:
            if item.get("IsLatest"):
                return item
        return None
    lo, hi = bounds
    version = next((v for v in versions if epoch(v["LastModified"]) <= hi), None)
    marker = next((m for m in markers
                   if epoch(m["LastModified"]) + precision_of(m["LastModified"]) <= lo), None)
    if marker is None:
        return version
    if version is None:
        return None
    version_at, marker_at = version["LastModified"], marker["LastModified"]
    if marker_at > version_at or (marker_at == version_at and marker.get("IsLatest")):
        return None
    return version


def group_versions(pages):
    """(key, versions, markers) per key in key order from list_object_versions pages.

    Memory holds one page and one key's history: S3 returns items sorted by key, so only a page's
    last key can go on in the next page.
    """
    held = None
    for page in pages:
        groups = {}
        for item in page.get("Versions", ()):
            groups.setdefault(item["Key"], ([], []))[0].append(item)
        for item in page.get("DeleteMarkers", ()):
            groups.setdefault(item["Key"], ([], []))[1].append(item)
        for key in sorted(groups):
            versions, markers = groups[key]
            if held is not None and held[0] == key:
                held[1].extend(versions)
                held[2].extend(markers)
                continue
            if held is not None:
                yield held
            held = (key, versions, markers)
    if held is not None:
        yield held


def as_of(pages, bounds):
    """(key, version item) of every key present as of ``bounds``, streamed in key order."""
    for key, versions, markers in group_versions(pages):
        chosen = choose(versions, markers, bounds)
        if chosen is not None:
            yield key, chosen


def refuse_best_effort(versioning):
    """The error for fail_on_best_effort when a bucket cannot be pinned, or None."""
    plain = sorted(b for b, versioned in versioning.items() if not versioned)
    if plain:
        raise RatBackupError(
            f"bucket(s) {', '.join(plain)} are not versioned: their objects cannot be pinned to the database "
            "snapshot and the backup would only be best-effort; enable versioning on them or allow best-effort "
            "backups (fail_on_best_effort / rat_backup_fail_on_best_effort)", buckets=plain)


def describe(point, skew_interval, bounds, bound, versioning):
    """The manifest's record of how the lake was pinned to the database snapshot.

    ``versioning`` is {bucket: versioned}: an unversioned bucket is captured as listed while the run
    went on (best-effort), and so is the whole backup then. Without a versioned bucket S3's clock is
    not measured (``skew_interval`` None): the record has no skew and no window.
    """
    levels = {b: "snapshot" if versioned else "best-effort" for b, versioned in sorted(versioning.items())}
    record = {
        "level": "best-effort" if "best-effort" in levels.values() else "snapshot",
        "buckets": levels,
        "time": point["time"],
        "earliest": point["earliest"],
        "obtained": point["obtained"],
    }
    if skew_interval is not None:
        record.update({
            "clock_skew": [round(skew_interval[0], 6), round(skew_interval[1], 6)],
            "clock_skew_measured": "S3 Date header (whole seconds, sampled at its ticks) and PostgreSQL "
                                   "clock_timestamp(), each against this host's clock",
            "max_clock_skew": bound,
            "window": [iso_epoch(bounds[0]), iso_epoch(bounds[1])],
        })
    record["rule"] = RULE
    return record


RULE = ("versioned buckets: per key the newest version stamped at or before window[1], fetched by version id; "
        "a delete marker that may be later than window[0] is not applied; a LastModified without a fraction "
        "counts as a whole second (AWS, moto), so keys written in the snapshot's own second hold their newest "
        "version of that second and keys deleted in it are kept. Unversioned buckets: as listed during the run "
        "(best-effort), objects that changed meanwhile in changed_during")


# The manifest's "consistency" record as backup_run takes it (its ``consistency`` option): what
# describe() writes, plus what the backup role adds of its own. Declared once, here beside
# describe(); the rat.backup.consistency doc fragment documents it (validate-modules holds the two
# equal) and tests/unit/plugins/module_utils/test_consistency.py holds describe() to it.
_RECORD_OPTIONS = dict(
    level=dict(type="str"), buckets=dict(type="dict"), time=dict(type="str"), earliest=dict(type="str"),
    obtained=dict(type="str"), clock_skew=dict(type="list", elements="float"),
    clock_skew_measured=dict(type="str"), max_clock_skew=dict(type="float"),
    window=dict(type="list", elements="str"), rule=dict(type="str"),
    changed_during=dict(type="list", elements="dict"), use_versions=dict(type="bool"),
    quiesced=dict(type="bool"), dump_snapshot=dict(type="str"))


def record_argspec():
    """The suboptions of a consistency record (fresh copy, safe to extend)."""
    return copy.deepcopy(_RECORD_OPTIONS)
