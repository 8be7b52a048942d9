# -*- coding: utf-8 -*-
# Copyright: rat.backup contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Compare live servers with a backup's manifest: row counts per table, objects per bucket.

Run after a restore, independently of the code that restored, so that "restored" means "checked".
"""

from __future__ import annotations

import concurrent.futures
import hashlib
import re

from ansible_collections.rat.backup.plugins.module_utils import drill
from ansible_collections.rat.backup.plugins.module_utils import fs
from ansible_collections.rat.backup.plugins.module_utils import postgres
from ansible_collections.rat.backup.plugins.module_utils import s3
from ansible_collections.rat.backup.plugins.module_utils.errors import RatBackupError

_MD5 = re.compile(r"^[0-9a-f]{32}$")

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
        counts = postgres.count_rows(session, tables=tables)
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
            raise RatBackupError(f"checks[{index}] must be a dict with a name and a non-empty sql, got {check!r}")
    return checks


def _plain_md5(etag):
    """The MD5 hex an ETag stands for, or None when it is not a plain MD5 (a multipart ETag "x-N", a server's own)."""
    value = (etag or "").strip('"')
    return value if _MD5.match(value) else None


def expected_etag(obj):
    """The ETag a restored ``obj`` must have, or None when the manifest cannot say.

    A plain-MD5 ETag in the manifest is the MD5 of the content; a restore writes objects up to
    PART_SIZE in one PUT, whose ETag is that MD5 again. Larger objects are written in parts, whose
    ETag depends on the part size.
    """
    if obj.get("size") is None or obj["size"] > s3.PART_SIZE:
        return None
    return _plain_md5(obj.get("etag"))


def compare_objects(manifest_objects, listing, buckets):
    """Objects vs the manifest, by bucket/key, size and (where it says the content) ETag.

    ``listing`` yields (bucket, key, size, etag).
    """
    expected = {(o["bucket"], o["key"]): (o.get("size"), expected_etag(o)) for o in manifest_objects}
    seen = set()
    missing, extra, size_differs, etag_differs = [], [], [], []
    etag_checked = 0
    for bucket, key, size, etag in listing:
        seen.add((bucket, key))
        name = f"s3://{bucket}/{key}"
        if (bucket, key) not in expected:
            extra.append(name)
            continue
        want_size, want_etag = expected[(bucket, key)]
        if want_size is not None and want_size != size:
            size_differs.append({"object": name, "expected": want_size, "actual": size})
        elif want_etag and _plain_md5(etag):
            etag_checked += 1
            if _plain_md5(etag) != want_etag:
                etag_differs.append({"object": name, "expected": want_etag, "actual": _plain_md5(etag)})
    for bucket, key in sorted(expected):
        if (bucket, key) not in seen:
            missing.append(f"s3://{bucket}/{key}")
    return {"ok": not (missing or extra or size_differs or etag_differs), "buckets": sorted(buckets),
            "objects": len(seen), "missing": missing, "extra": extra, "size_differs": size_differs,
            "etag_checked": etag_checked, "etag_differs": etag_differs}


def diff(expected_rows, rows, manifest_objects, objects, exact, live, backup):
    """Ansible's diff of the live state (before) against the backup (after), differences only.

    Lines are what a restore would change: tables whose row count differs or that are missing, and
    objects missing or of other content; objects the backup lacks only when ``exact`` (a pruned
    restore deletes them). Tables the backup lacks are left out: pg_restore keeps them.
    """
    before, after = [], []
    if rows is not None:
        for m in rows["mismatched"]:
            before.append(f"table {m['table']}: {m['actual']} rows")
            after.append(f"table {m['table']}: {m['expected']} rows")
        after.extend(f"table {t}: {expected_rows[t]} rows" for t in rows["missing_tables"])
    if objects is not None:
        wanted = set(objects["missing"])
        absent = set(objects.get("absent_buckets") or ())
        # A bucket still to be created is one line, not one per object it will receive.
        for bucket in sorted(absent):
            held = [o for o in manifest_objects if o["bucket"] == bucket]
            after.append(f"s3://{bucket}: bucket will be created, {len(held)} objects uploaded "
                         f"({sum(o.get('size') or 0 for o in held)} bytes)")
        after.extend(f"s3://{o['bucket']}/{o['key']}: {o.get('size')} bytes" for o in manifest_objects
                     if o["bucket"] not in absent and f"s3://{o['bucket']}/{o['key']}" in wanted)
        for field, shown in (("size_differs", "{0} bytes"), ("etag_differs", "MD5 {0}"), ("sha256_differs", "sha256 {0}")):
            for d in objects.get(field) or ():
                before.append(f"{d['object']}: " + shown.format(d["actual"]))
                after.append(f"{d['object']}: " + shown.format(d["expected"]))
        if exact:
            before.extend(f"{name}: not in the backup" for name in objects["extra"])
    return {"before": _lines(before), "after": _lines(after), "before_header": live, "after_header": backup}


def _lines(lines):
    return "".join(line + "\n" for line in sorted(lines))


def absent_buckets(client, endpoint, buckets):
    """The buckets of ``buckets`` that do not exist (yet) on the endpoint: a rebuilt host's, before its restore."""
    return sorted(b for b in buckets if not s3.bucket_exists(client, endpoint, b))


def list_buckets(client, endpoint, buckets):
    """Yield (bucket, key, size, etag) of every object of ``buckets``; errors name endpoint and bucket.
    A drill's scratch bucket holds its marker object besides the restored ones: not part of the backup."""
    for bucket in sorted(buckets):
        scratch = drill.is_scratch_bucket(bucket)
        for item in s3.list_objects(client, endpoint, bucket, action="listing"):
            if not (scratch and item["Key"] == drill.MARKER_KEY):
                yield bucket, item["Key"], item["Size"], item.get("ETag")


def renamed(objects, bucket_map):
    """Manifest objects as they are expected on an endpoint restored with a bucket map."""
    return [dict(o, bucket=bucket_map.get(o["bucket"], o["bucket"])) for o in objects] if bucket_map else objects


def object_sha256(client, endpoint, bucket, key, chunk=fs.CHUNK):
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
                differ.append({"object": f"s3://{item['bucket']}/{item['key']}", "expected": item["sha256"],
                               "actual": actual})
    return differ


def manifest_buckets(minio):
    return set((minio or {}).get("buckets", {})) | {o["bucket"] for o in (minio or {}).get("objects", [])}


def require(section, name, path):
    if not section:
        raise RatBackupError(f"backup {path} holds no {name} part: nothing to compare", path=path)
    return section
