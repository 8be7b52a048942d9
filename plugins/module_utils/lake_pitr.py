# -*- coding: utf-8 -*-
# Copyright: rat.backup contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Lake point-in-time: roll versioned buckets back in place from their own versions.

A rollback never destroys a version: a key whose content differs from its state at the chosen
time gets a server-side copy of the old version as its new current version, and a key created
later gets a delete marker. So the versions current before the rollback stay as noncurrent ones,
and the pre-change record (one JSON line per changed key: its version before) is enough to undo
the rollback the same way. The state at a time follows ``consistency.choose`` with a window of
zero width: writes stamped in the time's own second count, deletions stamped in it do not.

Refused before any change, naming what cannot be reached (``limits``): a time before the bucket
was created (every key would get a delete marker), and keys whose version at the time may have
expired (the bucket's lifecycle removes noncurrent versions after N days; a key that has no
version at the time but was replaced before ``now - N days`` would be deleted instead of brought
back). A change of metadata alone (same bytes, new Content-Type or user metadata) is a change:
the two versions' attributes are compared where their ETag and size are equal.
"""

from __future__ import annotations

import datetime
import itertools
import json
import os

from ansible_collections.rat.backup.plugins.module_utils import consistency, fs, s3
from ansible_collections.rat.backup.plugins.module_utils.backup_root import layout
from ansible_collections.rat.backup.plugins.module_utils.errors import RatBackupError

RECORD_FORMAT = 1
_UTC = datetime.timezone.utc


def parse_time(text, variable="as_of"):
    """An ISO 8601 time as an aware datetime; a time without a zone is UTC."""
    try:
        moment = datetime.datetime.fromisoformat(str(text).strip().replace("Z", "+00:00"))
    except ValueError:
        raise RatBackupError(f"{variable} {text!r} is not an ISO 8601 time such as 2026-01-31T23:00:00Z")
    return moment if moment.tzinfo else moment.replace(tzinfo=_UTC)


def _version_id(item):
    return item.get("VersionId") or "null"


def require_versioned(client, endpoint, bucket):
    if not s3.is_versioned(client, endpoint, bucket):
        raise RatBackupError(f"bucket {bucket!r} on {endpoint.name} is not versioned: it has no old versions to roll "
                             "back to", bucket=bucket)


def same_content(a, b):
    """Two versions hold the same bytes: one is the other, or a server-side copy of it (same ETag and size)."""
    return _version_id(a) == _version_id(b) or (a.get("ETag"), a.get("Size")) == (b.get("ETag"), b.get("Size"))


def same_version(client, endpoint, bucket, key, a, b):
    """Same bytes (same_content) and, for two distinct versions, the same metadata and HTTP attributes."""
    if _version_id(a) == _version_id(b):
        return True
    return same_content(a, b) and (s3.object_attributes(client, endpoint, bucket, key, _version_id(a))
                                   == s3.object_attributes(client, endpoint, bucket, key, _version_id(b)))


def limits(client, endpoint, bucket, now):
    """How far back ``bucket`` reaches: {"bucket", "created" (None when unknown), "expiry_days" (None: no
    noncurrent expiry), "horizon" (now - expiry_days: versions replaced before it may be gone)}."""
    days = s3.noncurrent_expiry_days(client, endpoint, bucket)
    return {"bucket": bucket, "created": s3.bucket_created(client, endpoint, bucket), "expiry_days": days,
            "horizon": None if days is None else now - datetime.timedelta(days=days)}


def describe_limits(limit):
    """One bucket's reach in words, for refusals."""
    words = [f"bucket {limit['bucket']!r}"]
    if limit["created"] is not None:
        words.append(f"created {fs.iso(limit['created'])}")
    if limit["horizon"] is not None:
        words.append(f"noncurrent versions expire after {limit['expiry_days']} days, so versions replaced before "
                     f"{fs.iso(limit['horizon'])} may be gone")
    else:
        words.append("no noncurrent expiry")
    return ", ".join(words)


def check_reachable(limit, moment):
    """Refuse a time before the bucket existed (a rollback would put a delete marker on every key)."""
    if limit["created"] is not None and moment < limit["created"]:
        raise RatBackupError(f"as_of {fs.iso(moment)} is before bucket {limit['bucket']!r} existed "
                             f"({describe_limits(limit)}): it cannot be rolled back to then; nothing was changed",
                             bucket=limit["bucket"])


def _expired_then(versions, markers, at, horizon):
    """True when the key's version at ``at`` may have expired: its oldest item left is newer than ``at``
    and was written before ``horizon`` (so what it replaced had time to expire)."""
    if horizon is None:
        return False
    oldest = min(item["LastModified"] for item in itertools.chain(versions, markers))
    return oldest.timestamp() > at and oldest < horizon


def _states(client, endpoint, bucket, prefix, moment, horizon):
    """(key, version at ``moment``, current version) of every key under ``prefix``, in key order; keys whose
    version at ``moment`` may have expired (``horizon``, limits) make it raise, naming them, once the bucket
    is read: before the caller applies anything."""
    at = moment.timestamp()
    unreachable = []
    for key, versions, markers in consistency.group_versions(s3.version_pages(client, endpoint, bucket, prefix)):
        then = consistency.choose(versions, markers, (at, at))
        now = consistency.choose(versions, markers, None)
        if then is None and now is not None and _expired_then(versions, markers, at, horizon):
            unreachable.append(key)
            continue
        yield key, then, now
    if unreachable:
        shown = ", ".join(unreachable[:20]) + (f" and {len(unreachable) - 20} more" if len(unreachable) > 20 else "")
        raise RatBackupError(f"as_of {fs.iso(moment)} cannot be reached in bucket {bucket!r}: the version at that time "
                             f"of {len(unreachable)} key(s) may have expired ({shown}); its noncurrent versions "
                             f"replaced before {fs.iso(horizon)} are removed by its lifecycle; nothing was changed",
                             bucket=bucket, keys=unreachable[:100])


def plan(client, endpoint, bucket, prefix, moment, horizon=None):
    """The changes that give ``bucket`` (keys under ``prefix``) its state at ``moment``, streamed in key order.

    Each change: {"bucket", "key", "action": "restore"|"delete", "version_id" (to restore), "size",
    "before" (the current version id, None when absent), "before_size"}. A key whose current version is
    already a copy of the old one (bytes and metadata) is left alone, so a second rollback to the same
    time changes nothing. Unreachable keys raise (``_states``) before the caller applies anything.
    """
    for key, then, now in _states(client, endpoint, bucket, prefix, moment, horizon):
        if then is None and now is None or then is not None and now is not None \
                and same_version(client, endpoint, bucket, key, then, now):
            continue
        yield {"bucket": bucket, "key": key, "action": "delete" if then is None else "restore",
               "version_id": None if then is None else _version_id(then),
               "size": None if then is None else then.get("Size", 0),
               "before": None if now is None else _version_id(now),
               "before_size": None if now is None else now.get("Size", 0)}


def copy_targets(buckets, bucket_map):
    """The copy's target of each bucket ({} rolls back in place); every bucket mapped, none onto a source."""
    if not bucket_map:
        return {}
    targets = {str(k): str(v) for k, v in bucket_map.items()}
    missing = [b for b in buckets if b not in targets]
    onto = sorted(set(targets[b] for b in buckets if b in targets) & set(buckets))
    if missing:
        raise RatBackupError(f"bucket_map has no target for {', '.join(missing)}: nothing was changed")
    if onto:
        raise RatBackupError(f"bucket_map copies onto {', '.join(onto)}, a bucket being read: nothing was changed")
    return {b: targets[b] for b in buckets}


def copy_plan(client, endpoint, bucket, prefix, moment, dest, horizon=None):
    """The copies that give bucket ``dest`` the state of ``bucket`` (keys under ``prefix``) at ``moment``:
    {"bucket", "key", "action": "copy", "version_id", "size", "dest"} for every key that existed then.
    ``bucket`` is only read (a drill's scratch copy; the live bucket stays as it is)."""
    for key, then, _now in _states(client, endpoint, bucket, prefix, moment, horizon):
        if then is not None:
            yield {"bucket": bucket, "key": key, "action": "copy", "version_id": _version_id(then),
                   "size": then.get("Size", 0), "dest": dest}


def undo_plan(client, endpoint, record_path):
    """The changes that put every key of a pre-change record back to its version before that rollback."""
    for change in read_record(record_path):
        if change["action"] == "copy":
            # Copies into other buckets left their sources as they were: there is nothing to put back.
            raise RatBackupError(f"{record_path} records copies into other buckets (bucket_map), not a rollback: "
                                 "nothing to undo", record=record_path)
        bucket, key, wanted = change["bucket"], change["key"], change["before"]
        current, size = s3.current_version(client, endpoint, bucket, key)
        if wanted == current:
            continue
        yield {"bucket": bucket, "key": key, "action": "delete" if wanted is None else "restore",
               "version_id": wanted, "size": change["before_size"], "before": current, "before_size": size}


def write_record(path, header, changes):
    """Stream ``changes`` into the pre-change record, fsynced and in place before the first change is made."""
    parent = os.path.dirname(os.path.abspath(path))
    os.makedirs(parent, mode=layout.DIR_MODE, exist_ok=True)
    head = dict(header, format=RECORD_FORMAT)
    fs.write_lines_atomic(path, itertools.chain(
        (json.dumps(head, sort_keys=True) + "\n",), (json.dumps(c, sort_keys=True) + "\n" for c in changes)))


def remove_record(path):
    """Drop a record that lists no change (nothing to undo)."""
    os.unlink(path)
    fs.fsync_dir(os.path.dirname(os.path.abspath(path)))


def read_record(path):
    """The changes of a pre-change record, streamed after its header is checked."""
    try:
        handle = open(path, encoding="utf-8")
    except OSError as exc:
        raise RatBackupError(f"cannot read the lake rollback record {path}: {exc}", record=path)
    with handle:
        try:
            header = json.loads(handle.readline() or "null")
            if not isinstance(header, dict) or header.get("format") != RECORD_FORMAT:
                raise ValueError(f"no record header of format {RECORD_FORMAT}")
            for line in handle:
                yield json.loads(line)
        except ValueError as exc:
            raise RatBackupError(f"{path} is not a lake rollback record: {exc}", record=path)


def apply(client, endpoint, changes):
    """Make the planned changes: server-side copies of old versions (into the bucket itself, or into
    ``dest`` for a copy), delete markers for later keys."""
    deletes = []
    for change in changes:
        if change["action"] in ("restore", "copy"):
            source = {"Bucket": change["bucket"], "Key": change["key"], "VersionId": change["version_id"]}
            s3.copy_object(client, endpoint, source, change.get("dest") or change["bucket"], change["key"],
                           change.get("size") or 0)
        else:
            deletes.append((change["bucket"], change["key"]))
            if len(deletes) == s3.DELETE_BATCH:
                _delete(client, endpoint, deletes)
                deletes = []
    _delete(client, endpoint, deletes)


def _delete(client, endpoint, pairs):
    for bucket in sorted(set(pair[0] for pair in pairs)):
        s3.delete_objects(client, endpoint, bucket, [k for b, k in pairs if b == bucket])


def summarize(changes, limit):
    """Counts by action and the first ``limit`` changes (the record holds them all)."""
    counts = {"restore": 0, "delete": 0, "copy": 0}
    shown = []
    for change in changes:
        counts[change["action"]] += 1
        if len(shown) < limit:
            shown.append(change)
    return {"to_restore": counts["restore"], "to_delete": counts["delete"], "to_copy": counts["copy"],
            "changes": shown, "truncated": sum(counts.values()) > len(shown)}


def reach(client, endpoint, bucket, now):
    """How far back the versions of ``bucket`` reach: the oldest stamp kept and the noncurrent expiry."""
    oldest = None
    versions = noncurrent = markers = 0
    versioned = s3.is_versioned(client, endpoint, bucket)
    for page in s3.version_pages(client, endpoint, bucket):
        for item in page.get("Versions", ()):
            versions += 1
            noncurrent += not item.get("IsLatest")
            oldest = item["LastModified"] if oldest is None else min(oldest, item["LastModified"])
        markers += len(page.get("DeleteMarkers", ()))
    days = s3.noncurrent_expiry_days(client, endpoint, bucket)
    since = oldest
    if days is not None and oldest is not None:
        since = max(oldest, now - datetime.timedelta(days=days))
    return {"bucket": bucket, "versioning": "enabled" if versioned else "disabled", "versions": versions,
            "noncurrent_versions": noncurrent, "delete_markers": markers,
            "oldest_version": fs.iso(oldest) if oldest else None, "noncurrent_expiry_days": days,
            "recoverable_since": fs.iso(since) if since is not None and versioned else None}
