# -*- coding: utf-8 -*-
# Copyright: rat.backup contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""manifest.json of one backup: build, write (last, atomically), read, and verify with no server.

Format 2 (docs/layout.md; format 1 is the same document, never compressed)::

    {"format": 2, "name", "kind", "created_at", "completed_at", "host", "tools": {...},
     "consistency": {...}, "stored": {"new_bytes", "copied", "linked"},
     "postgres": <pg_dump result minus cmd, plus "path": "postgres/rat.dump"> | null,
     "minio": <object manifest written by bucket_mirror> | null}
"""

from __future__ import annotations

import os

from ansible_collections.rat.backup.plugins.module_utils import fs
from ansible_collections.rat.backup.plugins.module_utils.backup_root import layout
from ansible_collections.rat.backup.plugins.module_utils.errors import RatBackupError
from ansible_collections.rat.backup.plugins.module_utils.backup_root.layout import DUMP_PATH, MANIFEST
from ansible_collections.rat.backup.plugins.module_utils.backup_root.manifest_format import read_document, write_document, write_lines

# Format 2: manifest.json may be stored gzip-compressed (manifest_format); format 1 never is. Both are read.
FORMAT = 2
READ_FORMATS = (1, 2)
# Object lines from which a backup's manifest.json is compressed (about 9,000 objects): smaller
# ones stay plain JSON to read by eye; a lake's 100,000 lines (~46 MB) shrink about fivefold.
COMPRESS_FROM = 4 << 20


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
    if not isinstance(data, dict) or data.get("format") not in READ_FORMATS:
        raise RatBackupError(f"{path}: unknown manifest format "
                             f"{(data.get('format') if isinstance(data, dict) else None)!r} (this collection reads "
                             f"formats {', '.join(str(f) for f in READ_FORMATS)})", path=path)
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

    Its last verify record failed (a file changed, missing or unreadable), or its manifest.json is
    not the one its commit wrote (commit_problem), or, for a backup committed without a commit
    record, its manifest.json cannot be read (every object line is parsed, none kept). Such a
    backup counts toward no retention rule and is never the one a new backup links from: a rotten
    file linked again would be born failing the new manifest, and an unreadable manifest would
    fail every later backup.
    """
    return _examine(root, name)[0]


def _examine(root, name):
    """(damage(), the size of the dump its manifest records when it was found good, else None)."""
    record = layout.read_status(root, name).get("verify") or {}
    if record.get("ok") is False:
        bad = "; ".join(str(b) for b in (record.get("bad") or [])[:3])
        return f"its last verify ({record.get('verified_at', 'time unknown')}) failed" + (f": {bad}" if bad else ""), None
    committed = read_commit_record(root, name)
    if committed is not None:
        # The bytes the commit wrote (after parsing and checking every object line) are still
        # there: 10 MB hashed instead of 100,000 lines decompressed and parsed.
        why = commit_problem(os.path.join(root, name), committed)
        return (f"its {MANIFEST} {why}", None) if why else (None, committed["dump_bytes"])
    try:
        data = read(os.path.join(root, name), make=lambda item: None)
    except RatBackupError as exc:
        return exc.msg, None
    return None, summary(data, ObjectStats())["dump_bytes"]


def newest_good(root, complete):
    """(the newest of the ``complete`` listing entries with no damage(), or None; the size of its
    dump, found while proving it good (0 without one); {name: damage} of the newer ones)."""
    skipped = {}
    for entry in reversed(complete):
        why, dump_bytes = _examine(root, entry["name"])
        if why is None:
            return entry, dump_bytes, skipped
        skipped[entry["name"]] = why
    return None, 0, skipped


# What a commit records of the manifest.json it wrote, in <root>/.status/<name>.commit.json: its
# format, size and sha256 (and the dump's size, which a later backup's start needs from it).
# Backups committed before it was kept have none, and are proven the old way (their manifest read
# whole), as is one whose record names a manifest format this version does not read.
COMMIT_RECORD = "commit"
COMMIT_RECORD_FORMAT = 1


def commit_record(backup_dir, name, dump_bytes):
    """The commit record of the manifest.json just written into ``backup_dir`` (named ``name``)."""
    path = os.path.join(backup_dir, MANIFEST)
    return {"format": COMMIT_RECORD_FORMAT, "name": name, "dump_bytes": dump_bytes,
            "manifest": {"format": FORMAT, "size": os.lstat(path).st_size, "sha256": fs.sha256_file(path)}}


def read_commit_record(root, name):
    """The commit record of backup ``name``, or None when there is none to rely on (not kept by the
    version that committed it, unreadable, not of this backup, or of a manifest format this version
    does not read): its manifest is then read whole, and refused if it must be."""
    record = layout.read_status(root, name, (COMMIT_RECORD,)).get(COMMIT_RECORD)
    if not isinstance(record, dict) or record.get("format") != COMMIT_RECORD_FORMAT or record.get("name") != name:
        return None
    kept = record.get("manifest")
    if not (isinstance(kept, dict) and kept.get("format") in READ_FORMATS and _count(kept.get("size"))
            and _count(record.get("dump_bytes"))
            and isinstance(kept.get("sha256"), str) and len(kept["sha256"]) == 64):
        return None
    return record


def _count(value):
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def commit_problem(backup_dir, record):
    """Why ``backup_dir``'s manifest.json is not the one its commit ``record`` describes (a reason
    that follows the file's name), or None."""
    path = os.path.join(backup_dir, MANIFEST)
    kept = record["manifest"]
    try:
        size = os.lstat(path).st_size
        digest = fs.sha256_file(path) if size == kept["size"] else None
    except OSError as exc:
        return f"cannot be read: {exc.strerror or exc}"
    if size == kept["size"] and digest == kept["sha256"]:
        return None
    found = f"{size} bytes" + (f", sha256 {digest[:16]}..." if digest else "")
    return (f"is not the one its commit wrote ({found}; the commit recorded {kept['size']} bytes, sha256 "
            f"{kept['sha256'][:16]}... in {layout.STATUS_DIR}/{record['name']}.{COMMIT_RECORD}.json): truncated or "
            "changed since")


def read_object_manifest(path):
    """The object manifest bucket_mirror wrote (a standalone file), with its objects."""
    data, objects = read_document(path, "object manifest")
    if not isinstance(data, dict) or not isinstance(data.get("objects"), list):
        raise RatBackupError(f"{path} is not an object manifest (no 'objects' list)", path=path)
    data["objects"] = objects
    return data


def write(backup_dir, data):
    write_document(os.path.join(backup_dir, MANIFEST), data)


def write_streamed(backup_dir, data, lines, compress=False):
    """manifest.json of ``data`` with its object list streamed from ``lines`` (one JSON text each,
    consumed while written), gzip-compressed with ``compress``; an error raised by ``lines``
    leaves no manifest.json."""
    write_lines(os.path.join(backup_dir, MANIFEST), data, lines, compress)


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


class ObjectStats:
    """What summary() reports of the objects, counted as they go by (a commit never holds them)."""

    def __init__(self, objects=()):
        self.count = self.bytes = 0
        self.buckets = set()
        for item in objects:
            self.add(item)

    def add(self, item):
        self.count += 1
        self.bytes += item.get("size") or 0
        self.buckets.add(item.get("bucket"))


def summary(data, objects=None):
    """Counts and sizes for results and listings; ``objects``: ObjectStats counted by the caller
    (else the manifest's own object list is counted)."""
    if objects is None:
        objects = ObjectStats(data["minio"]["objects"] if data.get("minio") else ())
    buckets = sorted(objects.buckets | set((data.get("minio") or {}).get("buckets", {})))
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
        "objects": objects.count,
        "object_bytes": objects.bytes,
        "buckets": buckets,
        "bytes": pg.get("size", 0) + objects.bytes,
    }


class Check:
    """A backup directory compared with the files a manifest promises, given one at a time; no server.

    The tree is walked once (``layout.scan``; with ``secure`` its modes are fixed on the way), each
    promised ``file()`` is looked up in that walk (and hashed in mode ``full``), and ``result()``
    adds what is there that nothing promised. verify() feeds it a whole manifest; a commit streams
    the objects through it while it writes them into manifest.json.
    """

    def __init__(self, backup_dir, mode="full", secure=False):
        if mode not in ("full", "quick"):
            raise RatBackupError(f"verify mode must be full or quick, not {mode!r}")
        self.backup_dir = backup_dir
        self.mode = mode
        self.present = layout.scan(backup_dir, secure)
        self.promised = set()
        self.missing, self.changed, self.unreadable = [], [], []
        self.checked_bytes = 0

    def file(self, rel, size, sha256):
        """Check one promised file (``rel`` already a safe relative path)."""
        self.promised.add(rel)
        found = self.present.get(rel)
        if found is None:
            self.missing.append(rel)
            return
        kind, actual, _links = found
        if kind != "file":
            return  # reported as a symlink or special file by result()
        if size is not None and actual != size:
            self.changed.append({"path": rel, "reason": f"size {actual}, manifest says {size}"})
            return
        if self.mode == "full":
            try:
                digest = fs.sha256_file(os.path.join(self.backup_dir, rel))
            except OSError as exc:
                self.unreadable.append({"path": rel, "reason": exc.strerror or str(exc)})
                return
            self.checked_bytes += actual
            if sha256 and digest != sha256:
                self.changed.append({"path": rel, "reason": "sha256 differs from the manifest"})

    def objects(self, data, where):
        """Check the postgres dump and every object of manifest ``data`` (expected_files' rules)."""
        for rel, want in expected_files(data, where).items():
            self.file(rel, want["size"], want["sha256"])

    def result(self, dump=None, dump_check=None, ignore=()):
        """verify()'s result; ``ignore``: relative paths that are neither promised nor extra."""
        symlinks, special, extra = [], [], []
        # The walk in its own order, the (usually empty) findings sorted: sorting every entry of a
        # 100,000-file backup cost a commit ~0.06 s.
        for rel, (kind, _size, _links) in self.present.items():
            if kind == "symlink":
                symlinks.append(rel)
            elif kind == "special":
                special.append(rel)
            elif kind == "file" and rel not in self.promised and rel != MANIFEST and rel not in ignore:
                extra.append(rel)
        symlinks.sort()
        special.sort()
        extra.sort()
        missing, unreadable = sorted(self.missing), list(self.unreadable)
        changed = sorted(self.changed, key=lambda c: c["path"])
        if dump and dump_check is not None and (self.present.get(dump) or ("",))[0] == "file" \
                and not any(c["path"] == dump for c in changed):
            problem = dump_check(os.path.join(self.backup_dir, dump))
            if problem:
                unreadable.append({"path": dump, "reason": f"dump not readable: {problem}"})
        unreadable.sort(key=lambda u: u["path"])
        bad = ([f"{p}: missing" for p in missing]
               + [f"{c['path']}: {c['reason']}" for c in changed]
               + [f"{u['path']}: {u['reason']}" for u in unreadable]
               + [f"{p}: symlink (never followed)" for p in symlinks]
               + [f"{p}: special file" for p in special]
               + [f"{p}: not in the manifest" for p in extra])
        return {
            "ok": not bad,
            "mode": self.mode,
            "files": len(self.promised),
            "checked_bytes": self.checked_bytes,
            "missing": missing,
            "changed": changed,
            "extra": extra,
            "symlinks": symlinks,
            "special": special,
            "unreadable": unreadable,
            "bad": bad,
        }


def verify(backup_dir, data, mode="full", dump_check=None, committed=None):
    """Compare a backup directory with its manifest; no server involved.

    mode ``full`` hashes every file; ``quick`` compares sizes. ``dump_check(path)`` returns None
    when the dump is readable (pg_restore --list) or an error text. ``committed``: the backup's
    commit record (read_commit_record), which manifest.json itself must still match. Returns a
    result dict with ``ok`` and the lists ``missing``, ``changed``, ``extra``, ``symlinks``,
    ``unreadable``; ``bad`` joins them as "<path>: <reason>" lines for an operator.
    """
    check = Check(backup_dir, mode)
    check.objects(data, backup_dir)
    problem = commit_problem(backup_dir, committed) if committed is not None else None
    if problem:
        # What a backup's start refuses to link from: verify names it too, and records it as failed.
        check.changed.append({"path": MANIFEST, "reason": problem})
    return check.result((data.get("postgres") or {}).get("path"), dump_check)
