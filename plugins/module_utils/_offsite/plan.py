# -*- coding: utf-8 -*-
# Copyright: rat.backup contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""What to ship, link or verify: pure decisions from manifests, the off-site index and listings.

An off-site copy of backup NAME holds every file of the manifest under its relative path (plus
``.age`` when encrypted), the index ``rat-offsite.json`` (what was stored: size, sha256 and ETag of
the stored bytes, never a plaintext hash when encrypted) and, last, ``manifest.json`` (or
``manifest.json.age``). Without the manifest a copy is incomplete, like a local ``.partial``.

The index names its backup and binds the manifest (stored size and sha256, the backup's name and
creation time in it): a manifest or index moved in from another copy is refused, not trusted. It
also records the age recipients, so files are reused only by a copy made for the same keys.
"""

from __future__ import annotations

import hashlib
import json
import threading
import time

from ansible_collections.rat.backup.plugins.module_utils.backup_root import layout
from ansible_collections.rat.backup.plugins.module_utils.errors import RatBackupError
from ansible_collections.rat.backup.plugins.module_utils._offsite.crypt import AGE_SUFFIX

INDEX = "rat-offsite.json"
INDEX_FORMAT = 2
# Format 1 (no manifest binding) is still read: copies shipped before it can be verified and fetched.
INDEX_FORMATS = (1, 2)
MANIFESTS = (layout.MANIFEST, layout.MANIFEST + AGE_SUFFIX)
SELECTIONS = ("missing", "latest")


def stored_path(relpath, encrypted):
    return relpath + AGE_SUFFIX if encrypted else relpath


def manifest_name(encrypted):
    return stored_path(layout.MANIFEST, encrypted)


def choose(local, remote_complete, pruned, selection):
    """Names to ship, oldest first.

    ``missing``: every local complete backup the target lacks, except those its retention removed
    there; ``latest``: the newest local backup if the target lacks it; a list: those names.
    """
    have = set(remote_complete)
    if selection == "missing":
        return [n for n in local if n not in have and n not in pruned]
    if selection == "latest":
        return [local[-1]] if local and local[-1] not in have else []
    wanted = [layout.check_name(n, "rat_offsite_backups") for n in selection]
    unknown = sorted(set(wanted) - set(local))
    if unknown:
        raise RatBackupError(f"rat_offsite_backups names {', '.join(unknown)}, which is not a complete local backup; "
                             f"local: {', '.join(local) or 'none'}", missing=unknown)
    return sorted(n for n in set(wanted) if n not in have)


def previous(name, remote_complete, local):
    """The off-site copy to link unchanged files from: the newest complete one older than ``name``
    whose manifest is still on this host (its plaintext hashes are not readable off-site)."""
    candidates = [n for n in remote_complete if n < name and n in set(local)]
    return candidates[-1] if candidates else None


def plan_files(files, encrypted, prev_files=None, prev_index=None, done=None):
    """{"done": [...], "link": [...], "send": [...]} of (relpath, stored path, detail) tuples.

    ``files``/``prev_files``: {relpath: {"size", "sha256"}} of the manifests; ``prev_index``: the
    previous copy's index files; ``done``: index entries already shipped by an interrupted run.
    A file is linked when the previous copy holds the same relpath with the same size and sha256.
    """
    prev_files = prev_files or {}
    prev_index = prev_index or {}
    done = done or {}
    plan = {"done": [], "link": [], "send": []}
    for rel in sorted(files):
        want = files[rel]
        stored = stored_path(rel, encrypted)
        before = prev_files.get(rel)
        if rel in done and done[rel].get("stored") == stored:
            plan["done"].append((rel, stored, done[rel]))
        elif before and before.get("sha256") == want.get("sha256") and before.get("size") == want.get("size") \
                and rel in prev_index and prev_index[rel].get("stored") == stored:
            plan["link"].append((rel, stored, prev_index[rel]))
        else:
            plan["send"].append((rel, stored, want))
    return plan


def entry(rel, stored, size, sha256, etag=None):
    return {"path": rel, "stored": stored, "size": size, "sha256": sha256, "etag": etag}


def build_index(name, host, encrypted, recipients, entries, manifest=None):
    """The index of one copy. ``manifest``: see manifest_binding."""
    return {"format": INDEX_FORMAT, "name": name, "host": host, "encrypted": bool(encrypted),
            "recipients": sorted(recipients or []), "files": {e["path"]: e for e in entries}, "manifest": manifest}


def manifest_binding(stored_bytes, encrypted, data):
    """What the index records of the copy's manifest: its stored bytes and whose manifest it is."""
    return {"stored": manifest_name(encrypted), "size": len(stored_bytes),
            "sha256": hashlib.sha256(stored_bytes).hexdigest(), "name": data.get("name"),
            "created_at": data.get("created_at")}


def same_keys(index, encrypted, recipients):
    """True when the copy of ``index`` was made for exactly these recipients (or both are plain)."""
    return bool(index.get("encrypted")) == bool(encrypted) and sorted(index.get("recipients") or []) == sorted(
        recipients or [])


def index_text(index):
    return json.dumps(index, indent=1, sort_keys=True) + "\n"


def parse_index(raw, where, name):
    """The index of copy ``name``; refused when malformed or when it names another backup (moved in)."""
    try:
        data = json.loads(raw)
    except ValueError as exc:
        raise RatBackupError(f"{where}: {INDEX} is not valid JSON: {exc}", location=where)
    if not isinstance(data, dict) or data.get("format") not in INDEX_FORMATS or not isinstance(data.get("files"), dict):
        raise RatBackupError(f"{where}: {INDEX} has an unknown format", location=where)
    if data.get("name") != name:
        raise RatBackupError(f"{where}: {INDEX} is the index of backup {data.get('name')!r}, not of {name}: it was "
                             "moved or copied there; this copy cannot be trusted", location=where)
    binding = data.get("manifest")
    if data["format"] >= 2 and not (isinstance(binding, dict) and binding.get("stored") == manifest_name(
            data.get("encrypted")) and isinstance(binding.get("size"), int) and binding.get("sha256")):
        raise RatBackupError(f"{where}: {INDEX} does not bind its manifest", location=where)
    for rel, item in data["files"].items():
        if not isinstance(item, dict) or item.get("stored") != stored_path(rel, data.get("encrypted")):
            raise RatBackupError(f"{where}: {INDEX} entry {rel!r} is malformed", location=where)
    return data


def compare(index, listing, files=None, hashes=None, manifest_sha256=None):
    """Problems of one off-site copy as [{"path", "reason"}], named by the backup's relative path.

    ``listing``: {stored path: {"size", "etag"?}} as the target lists it; ``files``: the local
    manifest's files when known (every one must be in the index, plaintext hashes equal when not
    encrypted); ``hashes``: {stored path: sha256} read back in full mode; ``manifest_sha256``: of the
    stored manifest as read back, checked against the index's binding.
    """
    bad = []
    shipped = index["files"]
    for rel in sorted(shipped):
        item = shipped[rel]
        seen = listing.get(item["stored"])
        if seen is None:
            bad.append({"path": rel, "reason": f"missing off-site ({item['stored']})"})
        elif seen.get("size") != item["size"]:
            bad.append({"path": rel, "reason": f"off-site size {seen.get('size')}, shipped {item['size']}"})
        elif item.get("etag") and seen.get("etag") and seen["etag"] != item["etag"]:
            bad.append({"path": rel, "reason": f"off-site object was rewritten (ETag {seen['etag']}, shipped "
                                               f"{item['etag']})"})
        elif hashes is not None and hashes.get(item["stored"]) != item["sha256"]:
            bad.append({"path": rel, "reason": "off-site sha256 differs from what was shipped"})
    for rel in sorted(set(files or {}) - set(shipped)):
        bad.append({"path": rel, "reason": "in the manifest but not shipped"})
    if files and not index.get("encrypted"):
        for rel in sorted(set(files) & set(shipped)):
            if files[rel].get("sha256") and files[rel]["sha256"] != shipped[rel]["sha256"]:
                bad.append({"path": rel, "reason": "shipped sha256 differs from the manifest"})
    binding = index.get("manifest")
    if binding:
        seen = listing.get(binding["stored"])
        if seen is None:
            bad.append({"path": binding["stored"], "reason": "missing off-site"})
        elif seen.get("size") != binding["size"] or (manifest_sha256 is not None
                                                     and manifest_sha256 != binding["sha256"]):
            bad.append({"path": binding["stored"], "reason": "is not the manifest this copy was shipped with "
                                                             "(replaced, or moved in from another copy)"})
    known = {item["stored"] for item in shipped.values()} | {INDEX} | set(MANIFESTS)
    for stored in sorted(set(listing) - known):
        bad.append({"path": stored, "reason": "off-site file not in the index"})
    return bad


def bad_lines(bad):
    return [f"{b['path']}: {b['reason']}" for b in bad]


class Throttle:
    """A shared byte budget per second for every transfer thread of a run (0 = unlimited)."""

    def __init__(self, bytes_per_second=0, clock=time.monotonic, sleep=time.sleep):
        self.rate = float(bytes_per_second or 0)
        self.clock = clock
        self.sleep = sleep
        self.lock = threading.Lock()
        self.next_free = clock()

    def take(self, size):
        if self.rate <= 0 or size <= 0:
            return
        with self.lock:
            now = self.clock()
            start = max(now, self.next_free)
            self.next_free = start + size / self.rate
            wait = start - now
        if wait > 0:
            self.sleep(wait)
