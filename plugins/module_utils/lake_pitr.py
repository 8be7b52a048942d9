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
"""

from __future__ import annotations

import datetime
import itertools
import json
import os

from ansible_collections.rat.backup.plugins.module_utils import consistency, layout, s3
from ansible_collections.rat.backup.plugins.module_utils.errors import RatBackupError

RECORD_FORMAT = 1
# copy_object copies up to 5 GiB in one request; larger versions go through the managed copy.
SINGLE_COPY_LIMIT = 5 << 30
DELETE_BATCH = 1000
_UTC = datetime.timezone.utc


def parse_time(text, variable="as_of"):
    """An ISO 8601 time as an aware datetime; a time without a zone is UTC."""
    try:
        moment = datetime.datetime.fromisoformat(str(text).strip().replace("Z", "+00:00"))
    except ValueError:
        raise RatBackupError("{0} {1!r} is not an ISO 8601 time such as 2026-01-31T23:00:00Z".format(variable, text))
    return moment if moment.tzinfo else moment.replace(tzinfo=_UTC)


def _version_id(item):
    return item.get("VersionId") or "null"


def _pages(client, bucket, prefix):
    return client.get_paginator("list_object_versions").paginate(Bucket=bucket, Prefix=prefix)


def require_versioned(client, endpoint, bucket):
    try:
        status = client.get_bucket_versioning(Bucket=bucket).get("Status")
    except s3.sdk_errors() as exc:
        raise s3.translate(exc, endpoint, "reading versioning", bucket)
    if status not in ("Enabled", "Suspended"):
        raise RatBackupError("bucket {0!r} on {1} is not versioned: it has no old versions to roll back to".format(
            bucket, endpoint.name), bucket=bucket)


def same_content(a, b):
    """Two versions hold the same bytes: one is the other, or a server-side copy of it (same ETag and size)."""
    return _version_id(a) == _version_id(b) or (a.get("ETag"), a.get("Size")) == (b.get("ETag"), b.get("Size"))


def plan(client, endpoint, bucket, prefix, moment):
    """The changes that give ``bucket`` (keys under ``prefix``) its state at ``moment``, streamed in key order.

    Each change: {"bucket", "key", "action": "restore"|"delete", "version_id" (to restore), "size",
    "before" (the current version id, None when absent), "before_size"}. A key whose current version is
    already a copy of the old one is left alone, so a second rollback to the same time changes nothing.
    """
    at = moment.timestamp()
    try:
        for key, versions, markers in consistency.group_versions(_pages(client, bucket, prefix)):
            then = consistency.choose(versions, markers, (at, at))
            now = consistency.choose(versions, markers, None)
            if then is None and now is None or then is not None and now is not None and same_content(then, now):
                continue
            yield {"bucket": bucket, "key": key, "action": "delete" if then is None else "restore",
                   "version_id": None if then is None else _version_id(then),
                   "size": None if then is None else then.get("Size", 0),
                   "before": None if now is None else _version_id(now),
                   "before_size": None if now is None else now.get("Size", 0)}
    except s3.sdk_errors() as exc:
        raise s3.translate(exc, endpoint, "listing versions", bucket)


def undo_plan(client, endpoint, record_path):
    """The changes that put every key of a pre-change record back to its version before that rollback."""
    for change in read_record(record_path):
        bucket, key, wanted = change["bucket"], change["key"], change["before"]
        current, size = current_version(client, endpoint, bucket, key)
        if wanted == current:
            continue
        yield {"bucket": bucket, "key": key, "action": "delete" if wanted is None else "restore",
               "version_id": wanted, "size": change["before_size"], "before": current, "before_size": size}


def current_version(client, endpoint, bucket, key):
    """(version id, size) of the key's current version; (None, None) when it is absent."""
    try:
        head = client.head_object(Bucket=bucket, Key=key)
    except s3.sdk_errors() as exc:
        if s3.is_not_found(exc) or s3.error_code(exc) == "MethodNotAllowed":
            return None, None
        raise s3.translate(exc, endpoint, "reading the current version", bucket, key)
    return _version_id(head), head.get("ContentLength")


def write_record(path, header, changes):
    """Stream ``changes`` into the pre-change record, fsynced and in place before the first change is made."""
    parent = os.path.dirname(os.path.abspath(path))
    os.makedirs(parent, mode=layout.DIR_MODE, exist_ok=True)
    head = dict(header, format=RECORD_FORMAT)
    layout.write_lines_atomic(path, itertools.chain(
        (json.dumps(head, sort_keys=True) + "\n",), (json.dumps(c, sort_keys=True) + "\n" for c in changes)))


def remove_record(path):
    """Drop a record that lists no change (nothing to undo)."""
    os.unlink(path)
    layout.fsync_dir(os.path.dirname(os.path.abspath(path)))


def read_record(path):
    """The changes of a pre-change record, streamed after its header is checked."""
    try:
        handle = open(path, encoding="utf-8")
    except OSError as exc:
        raise RatBackupError("cannot read the lake rollback record {0}: {1}".format(path, exc), record=path)
    with handle:
        try:
            header = json.loads(handle.readline() or "null")
            if not isinstance(header, dict) or header.get("format") != RECORD_FORMAT:
                raise ValueError("no record header of format {0}".format(RECORD_FORMAT))
            for line in handle:
                yield json.loads(line)
        except ValueError as exc:
            raise RatBackupError("{0} is not a lake rollback record: {1}".format(path, exc), record=path)


def apply(client, endpoint, changes):
    """Make the planned changes: server-side copies of old versions, delete markers for later keys."""
    deletes = {}
    for change in changes:
        if change["action"] == "restore":
            _copy_version(client, endpoint, change)
        else:
            batch = deletes.setdefault(change["bucket"], [])
            batch.append({"Key": change["key"]})
            if len(batch) == DELETE_BATCH:
                _delete(client, endpoint, change["bucket"], deletes.pop(change["bucket"]))
    for bucket, batch in deletes.items():
        _delete(client, endpoint, bucket, batch)


def _copy_version(client, endpoint, change):
    source = {"Bucket": change["bucket"], "Key": change["key"], "VersionId": change["version_id"]}
    try:
        if (change.get("size") or 0) < SINGLE_COPY_LIMIT:
            client.copy_object(Bucket=change["bucket"], Key=change["key"], CopySource=source)
        else:
            head = client.head_object(Bucket=change["bucket"], Key=change["key"], VersionId=change["version_id"])
            extra = {name: head[name] for name in ("ContentType", "CacheControl", "ContentEncoding",
                                                   "ContentDisposition", "Metadata") if head.get(name)}
            client.copy(source, change["bucket"], change["key"], ExtraArgs=extra)
    except s3.sdk_errors() as exc:
        raise s3.translate(exc, endpoint, "copying version {0}".format(change["version_id"]), change["bucket"],
                           change["key"])


def _delete(client, endpoint, bucket, objects):
    try:
        response = client.delete_objects(Bucket=bucket, Delete={"Objects": objects, "Quiet": True})
    except s3.sdk_errors() as exc:
        raise s3.translate(exc, endpoint, "deleting objects", bucket)
    errors = response.get("Errors") or []
    if errors:
        raise RatBackupError("deleting {0} object(s) of bucket {1!r} failed, first: {2} ({3})".format(
            len(errors), bucket, errors[0].get("Key"), errors[0].get("Code")), bucket=bucket)


def summarize(changes, limit):
    """Counts by action and the first ``limit`` changes (the record holds them all)."""
    counts = {"restore": 0, "delete": 0}
    shown = []
    for change in changes:
        counts[change["action"]] += 1
        if len(shown) < limit:
            shown.append(change)
    return {"to_restore": counts["restore"], "to_delete": counts["delete"], "changes": shown,
            "truncated": counts["restore"] + counts["delete"] > len(shown)}


def reach(client, endpoint, bucket, now):
    """How far back the versions of ``bucket`` reach: the oldest stamp kept and the noncurrent expiry."""
    oldest = None
    versions = noncurrent = markers = 0
    try:
        status = client.get_bucket_versioning(Bucket=bucket).get("Status") or "Disabled"
        for page in _pages(client, bucket, ""):
            for item in page.get("Versions", ()):
                versions += 1
                noncurrent += not item.get("IsLatest")
                oldest = item["LastModified"] if oldest is None else min(oldest, item["LastModified"])
            markers += len(page.get("DeleteMarkers", ()))
        days = _noncurrent_days(client, bucket)
    except s3.sdk_errors() as exc:
        raise s3.translate(exc, endpoint, "reading versions", bucket)
    since = oldest
    if days is not None and oldest is not None:
        since = max(oldest, now - datetime.timedelta(days=days))
    return {"bucket": bucket, "versioning": status, "versions": versions, "noncurrent_versions": noncurrent,
            "delete_markers": markers, "oldest_version": layout.iso(oldest) if oldest else None,
            "noncurrent_expiry_days": days,
            "recoverable_since": layout.iso(since) if since is not None and status != "Disabled" else None}


def _noncurrent_days(client, bucket):
    try:
        rules = client.get_bucket_lifecycle_configuration(Bucket=bucket).get("Rules", ())
    except s3.sdk_errors() as exc:
        if s3.error_code(exc) in ("NoSuchLifecycleConfiguration", "NotImplemented"):
            return None
        raise
    days = [r["NoncurrentVersionExpiration"]["NoncurrentDays"] for r in rules
            if r.get("Status") == "Enabled" and (r.get("NoncurrentVersionExpiration") or {}).get("NoncurrentDays")]
    return min(days) if days else None


def all_buckets(client, endpoint):
    try:
        return sorted(b["Name"] for b in client.list_buckets().get("Buckets", ()))
    except s3.sdk_errors() as exc:
        raise s3.translate(exc, endpoint, "listing buckets")
