# -*- coding: utf-8 -*-
# Copyright: rat.backup contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""manifest.json of one backup: build, write (last, atomically), read, and verify with no server.

Format 1 (docs/mechanisms.md)::

    {"format": 1, "name", "kind", "created_at", "completed_at", "host", "tools": {...},
     "consistency": {...}, "stored": {"new_bytes", "copied", "linked"},
     "postgres": <pg_dump result minus cmd, plus "path": "postgres/rat.dump"> | null,
     "minio": <object manifest written by bucket_mirror> | null}
"""

from __future__ import annotations

import os
import stat

from ansible_collections.rat.backup.plugins.module_utils import fs
from ansible_collections.rat.backup.plugins.module_utils.backup_root import layout
from ansible_collections.rat.backup.plugins.module_utils.errors import RatBackupError
from ansible_collections.rat.backup.plugins.module_utils.backup_root.layout import MANIFEST
from ansible_collections.rat.backup.plugins.module_utils.backup_root.manifest_format import read_document, write_document

FORMAT = 1
DUMP_PATH = "postgres/rat.dump"


def build(name, kind, host, created_at, completed_at, tools, postgres, minio, consistency=None):
    """Assemble the manifest from the pg_dump result and the object manifest (either may be None)."""
    if postgres is not None:
        postgres = {k: v for k, v in postgres.items()
                    if k not in ("cmd", "changed", "failed", "invocation", "dest", "diff", "warnings")}
        postgres["path"] = DUMP_PATH
        for key in ("size", "sha256"):
            if key not in postgres:
                raise RatBackupError(f"pg_dump result has no {key!r}: cannot record the dump in the manifest")
    return {
        "format": FORMAT,
        "name": name,
        "kind": kind,
        "host": host,
        "created_at": created_at,
        "completed_at": completed_at,
        "tools": tools,
        "consistency": consistency or {},
        "postgres": postgres,
        "minio": minio,
    }


def read(backup_dir, with_objects=True, make=None):
    """manifest.json of a backup directory, checked for shape before anyone trusts it; without
    ``with_objects`` its minio object list is left empty (the rest costs a fraction to read);
    ``make`` turns each object into what is kept (read_document)."""
    path = os.path.join(backup_dir, MANIFEST)
    data, objects = read_document(path, with_objects=with_objects, make=make)
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise RatBackupError(f"{path}: unknown manifest format "
                             f"{(data.get('format') if isinstance(data, dict) else None)!r} (this collection reads "
                             f"format {FORMAT})", path=path)
    for section in ("postgres", "minio"):
        if data.get(section) is not None and not isinstance(data[section], dict):
            raise RatBackupError(f"{path}: section {section!r} is malformed", path=path)
    if data.get("minio") is not None:
        if not isinstance(data["minio"].get("objects"), list):
            raise RatBackupError(f"{path}: minio section has no objects list", path=path)
        data["minio"]["objects"] = objects
    return data


def damage(root, name):
    """Why the complete backup ``name`` under ``root`` is not to be trusted, or None when nothing says so.

    Its last verify record failed (a file changed, missing or unreadable), or its manifest.json
    cannot be read (every object line is parsed, none kept). Such a backup counts toward no
    retention rule and is never the one a new backup links from: a rotten file linked again would
    be born failing the new manifest, and an unreadable manifest would fail every later backup.
    """
    record = layout.read_status(root, name).get("verify") or {}
    if record.get("ok") is False:
        bad = "; ".join(str(b) for b in (record.get("bad") or [])[:3])
        return f"its last verify ({record.get('verified_at', 'time unknown')}) failed" + (f": {bad}" if bad else "")
    try:
        read(os.path.join(root, name), make=lambda item: None)
    except RatBackupError as exc:
        return exc.msg
    return None


def newest_good(root, complete):
    """(the newest of the ``complete`` listing entries with no damage(), or None; {name: damage} of the newer ones)."""
    skipped = {}
    for entry in reversed(complete):
        why = damage(root, entry["name"])
        if why is None:
            return entry, skipped
        skipped[entry["name"]] = why
    return None, skipped


def read_object_manifest(path):
    """The object manifest bucket_mirror wrote (a standalone file), with its objects."""
    data, objects = read_document(path, "object manifest")
    if not isinstance(data, dict) or not isinstance(data.get("objects"), list):
        raise RatBackupError(f"{path} is not an object manifest (no 'objects' list)", path=path)
    data["objects"] = objects
    return data


def write(backup_dir, data):
    write_document(os.path.join(backup_dir, MANIFEST), data)


def expected_files(data, where):
    """{relative path: {"size", "sha256", "what"}} of every file the manifest promises.

    ``where`` (the backup directory) names the backup in errors: the name written inside the
    manifest is wrong for a backup that was copied or renamed.
    """
    files = {}
    where = f"backup {where}"
    if data.get("postgres"):
        pg = data["postgres"]
        files[fs.safe_relpath(pg.get("path", DUMP_PATH), where)] = {
            "size": pg.get("size"), "sha256": pg.get("sha256"), "what": "postgres dump"}
    if data.get("minio"):
        for obj in data["minio"]["objects"]:
            path = fs.safe_relpath(obj.get("path"), where)
            files[path] = {"size": obj.get("size"), "sha256": obj.get("sha256"),
                           "what": f"s3://{obj.get('bucket')}/{obj.get('key')}"}
    return files


def summary(data):
    """Counts and sizes for results and listings."""
    objects = data["minio"]["objects"] if data.get("minio") else []
    buckets = sorted({o.get("bucket") for o in objects} | set((data.get("minio") or {}).get("buckets", {})))
    pg = data.get("postgres") or {}
    consistency = data.get("consistency") or {}
    stored = data.get("stored") or {}
    return {
        "consistency": consistency.get("level"),
        "best_effort_buckets": sorted(b for b, level in (consistency.get("buckets") or {}).items()
                                      if level == "best-effort"),
        # Manifests written before the count was kept have none (null).
        "new_bytes": stored.get("new_bytes"),
        "copied": stored.get("copied"),
        "linked": stored.get("linked"),
        "consistency_time": consistency.get("time"),
        "changed_during": len(consistency.get("changed_during") or ()),
        "dump_bytes": pg.get("size", 0),
        "dump_sha256": pg.get("sha256"),
        "tables": len(pg.get("row_counts") or {}),
        "rows": sum((pg.get("row_counts") or {}).values()),
        "objects": len(objects),
        "object_bytes": sum(o.get("size") or 0 for o in objects),
        "buckets": buckets,
        "bytes": pg.get("size", 0) + sum(o.get("size") or 0 for o in objects),
    }


def _walk(backup_dir):
    """Every entry under the backup as {relative path: kind}, symlinks reported, never followed."""
    found = {}
    for parent, dirs, files in os.walk(backup_dir, followlinks=False):
        rel_parent = os.path.relpath(parent, backup_dir)
        for name in dirs + files:
            full = os.path.join(parent, name)
            rel = name if rel_parent == "." else rel_parent + "/" + name
            try:
                mode = os.lstat(full).st_mode
            except OSError:
                continue
            if stat.S_ISLNK(mode):
                found[rel] = "symlink"
            elif stat.S_ISREG(mode):
                found[rel] = "file"
            elif stat.S_ISDIR(mode):
                found[rel] = "dir"
            else:
                found[rel] = "special"
    return found


def verify(backup_dir, data, mode="full", dump_check=None):
    """Compare a backup directory with its manifest; no server involved.

    mode ``full`` hashes every file; ``quick`` compares sizes. ``dump_check(path)`` returns None
    when the dump is readable (pg_restore --list) or an error text. Returns a result dict with
    ``ok`` and the lists ``missing``, ``changed``, ``extra``, ``symlinks``, ``unreadable``;
    ``bad`` joins them as "<path>: <reason>" lines for an operator.
    """
    if mode not in ("full", "quick"):
        raise RatBackupError(f"verify mode must be full or quick, not {mode!r}")
    expected = expected_files(data, backup_dir)
    present = _walk(backup_dir)
    missing, changed, extra, symlinks, special, unreadable = [], [], [], [], [], []
    checked_bytes = 0
    for rel, kind in sorted(present.items()):
        if kind == "symlink":
            symlinks.append(rel)
        elif kind == "special":
            special.append(rel)
        elif kind == "file" and rel not in expected and rel != MANIFEST:
            extra.append(rel)
    for rel, want in sorted(expected.items()):
        kind = present.get(rel)
        if kind is None:
            missing.append(rel)
            continue
        if kind != "file":
            continue  # already reported as a symlink or special file
        full = os.path.join(backup_dir, rel)
        try:
            size = os.lstat(full).st_size
            if want["size"] is not None and size != want["size"]:
                changed.append({"path": rel, "reason": f"size {size}, manifest says {want['size']}"})
                continue
            if mode == "full":
                digest = fs.sha256_file(full)
                checked_bytes += size
                if want["sha256"] and digest != want["sha256"]:
                    changed.append({"path": rel, "reason": "sha256 differs from the manifest"})
        except OSError as exc:
            unreadable.append({"path": rel, "reason": exc.strerror or str(exc)})
    dump = (data.get("postgres") or {}).get("path")
    if dump and dump_check is not None and present.get(dump) == "file" \
            and not any(c["path"] == dump for c in changed):
        problem = dump_check(os.path.join(backup_dir, dump))
        if problem:
            unreadable.append({"path": dump, "reason": f"dump not readable: {problem}"})
    bad = ([f"{p}: missing" for p in missing]
           + [f"{c['path']}: {c['reason']}" for c in changed]
           + [f"{u['path']}: {u['reason']}" for u in unreadable]
           + [f"{p}: symlink (never followed)" for p in symlinks]
           + [f"{p}: special file" for p in special]
           + [f"{p}: not in the manifest" for p in extra])
    return {
        "ok": not bad,
        "mode": mode,
        "files": len(expected),
        "checked_bytes": checked_bytes,
        "missing": missing,
        "changed": changed,
        "extra": extra,
        "symlinks": symlinks,
        "special": special,
        "unreadable": unreadable,
        "bad": bad,
    }
