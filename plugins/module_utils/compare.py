# -*- coding: utf-8 -*-
# Copyright: rat.backup contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Compare live servers with a backup's manifest: row counts per table, objects per bucket.

Run after a restore, independently of the code that restored, so that "restored" means "checked".
"""

from __future__ import annotations

import concurrent.futures
import hashlib

from ansible_collections.rat.backup.plugins.module_utils import pg_client
from ansible_collections.rat.backup.plugins.module_utils import s3
from ansible_collections.rat.backup.plugins.module_utils.errors import RatBackupError


USER_TABLES_SQL = ("SELECT n.nspname || '.' || c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
                   "WHERE c.relkind IN ('r', 'p') AND n.nspname NOT IN ('pg_catalog', 'information_schema') "
                   "AND n.nspname NOT LIKE 'pg_toast%' AND n.nspname NOT LIKE 'pg_temp%' ORDER BY 1;")


def compare_rows(expected, actual, live_tables):
    """Row counts vs the manifest: {"ok", "tables", "rows", "mismatched", "missing_tables", "extra_tables"}."""
    mismatched = [{"table": t, "expected": n, "actual": actual[t]}
                  for t, n in sorted(expected.items()) if t in actual and actual[t] != n]
    missing = sorted(t for t in expected if t not in actual)
    extra = sorted(set(live_tables) - set(expected))
    return {"ok": not mismatched and not missing, "tables": len(expected), "rows": sum(actual.values()),
            "mismatched": mismatched, "missing_tables": missing, "extra_tables": extra}


def postgres_counts(client, tables):
    """(exact row counts of ``tables`` that exist, every user table) from a live server."""
    session = client.open_session()
    try:
        counts = pg_client.count_rows(session, tables=tables)
        live = session.query(USER_TABLES_SQL)
    finally:
        session.close()
    return counts, live


def run_checks(client, checks):
    """Health queries: each passes when it returns one row holding true (psql prints ``t``).

    One session per check, so a query that errors fails that check only, with PostgreSQL's words.
    """
    outcome = []
    for check in checks:
        sql = check["sql"].strip().rstrip(";") + ";"
        try:
            session = client.open_session()
            try:
                lines = session.query(sql)
            finally:
                session.close()
        except RatBackupError as exc:
            outcome.append({"name": check["name"], "ok": False, "output": exc.msg})
            continue
        outcome.append({"name": check["name"], "ok": lines == ["t"], "output": "\n".join(lines[:5])})
    return outcome


def check_list(checks):
    """Validate ``checks`` ({name, sql} dicts) before anything connects."""
    for index, check in enumerate(checks):
        if not isinstance(check, dict) or not isinstance(check.get("name"), str) or \
                not isinstance(check.get("sql"), str) or not check["sql"].strip():
            raise RatBackupError("checks[%d] must be a dict with a name and a non-empty sql, got %r" % (index, check))
    return checks


def compare_objects(manifest_objects, listing, buckets):
    """Objects vs the manifest, by bucket/key and size. ``listing`` yields (bucket, key, size)."""
    expected = {(o["bucket"], o["key"]): o.get("size") for o in manifest_objects}
    seen = set()
    missing, extra, size_differs = [], [], []
    for bucket, key, size in listing:
        seen.add((bucket, key))
        if (bucket, key) not in expected:
            extra.append("s3://%s/%s" % (bucket, key))
        elif expected[(bucket, key)] is not None and expected[(bucket, key)] != size:
            size_differs.append({"object": "s3://%s/%s" % (bucket, key), "expected": expected[(bucket, key)],
                                 "actual": size})
    for bucket, key in sorted(expected):
        if (bucket, key) not in seen:
            missing.append("s3://%s/%s" % (bucket, key))
    return {"ok": not (missing or extra or size_differs), "buckets": sorted(buckets), "objects": len(seen),
            "missing": missing, "extra": extra, "size_differs": size_differs}


def list_buckets(client, endpoint, buckets):
    """Yield (bucket, key, size) of every object of ``buckets``; errors name endpoint and bucket."""
    for bucket in sorted(buckets):
        for item in s3.list_objects(client, endpoint, bucket, action="listing"):
            yield bucket, item["Key"], item["Size"]


def renamed(objects, bucket_map):
    """Manifest objects as they are expected on an endpoint restored with a bucket map."""
    return [dict(o, bucket=bucket_map.get(o["bucket"], o["bucket"])) for o in objects] if bucket_map else objects


def object_sha256(client, endpoint, bucket, key, chunk=1 << 20):
    body = s3.get_object(client, endpoint, bucket, key)["Body"]
    digest = hashlib.sha256()
    with s3.translated(endpoint, "reading", bucket, key):
        for block in iter(lambda: body.read(chunk), b""):
            digest.update(block)
    return digest.hexdigest()


def checksum_objects(client, endpoint, objects, concurrency=8):
    """Read every object back and compare its sha256 with the manifest: the list of those that differ.

    Objects missing or of another size are already reported by compare_objects; a read that
    fails is an error naming the object, not a difference.
    """
    def check(item):
        return item, object_sha256(client, endpoint, item["bucket"], item["key"])

    differ = []
    with concurrent.futures.ThreadPoolExecutor(max_workers=max(1, concurrency)) as pool:
        for item, actual in pool.map(check, [o for o in objects if o.get("sha256")]):
            if actual != item["sha256"]:
                differ.append({"object": "s3://%s/%s" % (item["bucket"], item["key"]), "expected": item["sha256"],
                               "actual": actual})
    return differ


def manifest_buckets(minio):
    return set((minio or {}).get("buckets", {})) | {o["bucket"] for o in (minio or {}).get("objects", [])}


def require(section, name, path):
    if not section:
        raise RatBackupError("backup %s holds no %s part: nothing to compare" % (path, name), path=path)
    return section
