# -*- coding: utf-8 -*-
# Copyright: rat.backup contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""manifest.json of one backup: build, write (last, atomically), read, and verify with no server.

Format 1 (docs/internals.md)::

    {"format": 1, "name", "kind", "created_at", "completed_at", "host", "tools": {...},
     "consistency": {...}, "stored": {"new_bytes", "copied", "linked"},
     "postgres": <pg_dump result minus cmd, plus "path": "postgres/rat.dump"> | null,
     "minio": <object manifest written by bucket_mirror> | null}
"""

from __future__ import annotations

import json
import os
import stat

from ansible_collections.rat.backup.plugins.module_utils import fs
from ansible_collections.rat.backup.plugins.module_utils.backup_root import layout
from ansible_collections.rat.backup.plugins.module_utils.errors import RatBackupError
from ansible_collections.rat.backup.plugins.module_utils.backup_root.layout import MANIFEST

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


# --- the one manifest format: an indented JSON document whose object list has one compact
# object per line, so it streams both ways. manifest.json holds it under "minio"; bucket_mirror's
# object manifest at the top. Other JSON (hand-written, no objects) is read whole. ------------

def objects_holder(document):
    """The dict holding the object list: manifest.json's "minio" section (None when the backup has
    no objects part), else the document itself (bucket_mirror's object manifest)."""
    if isinstance(document, dict) and "minio" in document:
        return document["minio"] if isinstance(document["minio"], dict) else None
    return document


def _placed(document, objects):
    """A copy of ``document`` with ``objects`` where its object list goes."""
    placed = dict(document)
    if "minio" in placed:
        placed["minio"] = dict(placed["minio"], objects=objects)
    else:
        placed["objects"] = objects
    return placed


def _object_line(item):
    return json.dumps(item, sort_keys=True, ensure_ascii=False, separators=(",", ":"))


def _chunks(document, lines):
    """Text of ``document`` with its object list given as ``lines`` (one JSON object each)."""
    lines = iter(lines)
    line = next(lines, None)
    if line is None:
        if objects_holder(document) is not None:
            document = _placed(document, [])
        yield json.dumps(document, indent=1, sort_keys=True, ensure_ascii=False) + "\n"
        return
    # Stands for the object list in the indented text; random, so no key or name can be mistaken for it.
    marker = "rat-backup-objects-" + os.urandom(16).hex()
    text = json.dumps(_placed(document, marker), indent=1, sort_keys=True, ensure_ascii=False)
    head, tail = text.split(json.dumps(marker), 1)
    key_line = head[head.rindex("\n") + 1:]
    indent = key_line[:len(key_line) - len(key_line.lstrip(" "))]
    yield head + "[\n"
    for following in lines:
        yield line + ",\n"
        line = following
    yield line + "\n" + indent + "]" + tail + "\n"


def _own_objects(document, objects):
    if objects is None:
        objects = (objects_holder(document) or {}).get("objects") or []
    return (_object_line(item) for item in objects)


def dumps(document, objects=None):
    """The manifest text of ``document`` (its objects in place, or given apart as ``objects``)."""
    return "".join(_chunks(document, _own_objects(document, objects)))


def write_document(path, document, objects=None):
    """Write ``document`` atomically (0600), its objects (in place, or any iterable) one per line."""
    write_lines(path, document, _own_objects(document, objects))


def write_lines(path, document, lines):
    """The one manifest writer: atomic (0600), the object list streamed from ``lines`` (JSON texts
    of one object each, consumed while written: bucket_mirror hands over the lines it journals)."""
    fs.write_lines_atomic(path, _chunks(document, lines))


class Reader:
    """The one reader of the manifest format (and of the compact header line bucket_mirror wrote
    before it): ``objects()`` yields the object list's items one line at a time, in file order;
    once it is exhausted, ``document`` holds the rest with its object list empty.

    A layout not our own (objects over several lines, no object list) is read whole. Symlinks are
    not followed unless ``follow_symlinks`` (a path an operator gave, not one inside a backup).
    """

    def __init__(self, path, what="manifest", follow_symlinks=False):
        self.path = path
        self.what = what
        self.follow_symlinks = follow_symlinks
        self.document = None

    def objects(self, parse=True):
        """The objects as dicts; ``parse=False`` skips them unparsed (only ``document`` is wanted)."""
        try:
            fd = os.open(self.path, os.O_RDONLY | (0 if self.follow_symlinks else os.O_NOFOLLOW))
            with os.fdopen(fd, "r", encoding="utf-8") as handle:
                yield from self._lines(handle, parse)
        except ValueError as exc:
            raise RatBackupError(f"{self.what} {self.path} is not valid JSON: {exc}", path=self.path)
        except OSError as exc:
            raise RatBackupError(f"cannot read {self.what} {self.path}: {exc.strerror or exc}", path=self.path)

    def _lines(self, handle, parse):
        head = []
        for line in handle:
            head.append(line)
            if line.rstrip().endswith('"objects": ['):
                break
        else:
            yield from self._whole(handle, parse)
            return
        yielded = False
        for line in handle:
            text = line.strip()
            if text.startswith("]"):
                try:
                    self.document = json.loads("".join(head) + line + handle.read())
                except ValueError:
                    if yielded:
                        raise
                    # Not our layout after all (objects over several lines): read whole.
                    yield from self._whole(handle, parse)
                return
            if not parse:
                continue
            try:
                item = json.loads(text.rstrip(","))
            except ValueError:
                if yielded:
                    raise
                item = None
            if not isinstance(item, dict):
                if yielded:
                    raise ValueError(f"line {text[:40]!r} is not an object")
                yield from self._whole(handle, parse)
                return
            yielded = True
            yield item
        raise RatBackupError(f"{self.what} {self.path} is truncated", path=self.path)

    def _whole(self, handle, parse):
        handle.seek(0)
        document = json.load(handle)
        holder = objects_holder(document)
        objects = []
        if isinstance(holder, dict) and isinstance(holder.get("objects"), list):
            objects, holder["objects"] = holder["objects"], []
        self.document = document
        if parse:
            yield from objects


def read_document(path, what="manifest", make=None, with_objects=True):
    """(document, [make(object) ...]) of a manifest in a backup (no symlink followed); the
    document's own object list is left empty. Objects are read line by line (``make`` turns each
    into what the caller keeps), so a 100,000-object manifest never exists as one parsed document;
    without ``with_objects`` they are skipped unparsed (the list is empty)."""
    make = make or (lambda item: item)
    reader = Reader(path, what)
    objects = [make(item) for item in reader.objects(parse=with_objects)]
    return reader.document, objects


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
