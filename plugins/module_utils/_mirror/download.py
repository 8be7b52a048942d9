# -*- coding: utf-8 -*-
# Copyright: rat.backup contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""S3 -> disk: plan against the previous run's manifest (and link_dest), then fetch, link, delete.

What a no-change rerun relies on: the object manifest of the previous run at the destination
(plus its journal after an interrupted run), the size/ETag/version id of the listing, and the
local file still being a regular file with the recorded size and the object's LastModified as
mtime (this module sets it). ETags are compared only for equality with an ETag recorded
earlier; they are read as content only where local bytes are hashed to prove it: single-part
objects when no manifest tells us anything, and link_dest's file of a key whose listing differs
from link_dest's (a restore wrote the same bytes as a new version, or in other parts), which is
linked instead of downloaded when its MD5 (or this collection's multipart ETag) is the listed ETag.
"""

from __future__ import annotations

import hashlib
import os
import posixpath
import time

from ansible_collections.rat.backup.plugins.module_utils import fs
from ansible_collections.rat.backup.plugins.module_utils.backup_root import layout
from ansible_collections.rat.backup.plugins.module_utils import s3
from ansible_collections.rat.backup.plugins.module_utils.errors import RatBackupError
from ansible_collections.rat.backup.plugins.module_utils._mirror import key_paths
from ansible_collections.rat.backup.plugins.module_utils._mirror.key_paths import ESCAPE_DIR, TMP_DIR
from ansible_collections.rat.backup.plugins.module_utils._mirror import local_tree
from ansible_collections.rat.backup.plugins.module_utils._mirror import merge
from ansible_collections.rat.backup.plugins.module_utils._mirror import object_manifest
from ansible_collections.rat.backup.plugins.module_utils._mirror import pool
from ansible_collections.rat.backup.plugins.module_utils._mirror import ranged
from ansible_collections.rat.backup.plugins.module_utils._mirror import relink
from ansible_collections.rat.backup.plugins.module_utils._mirror.ranged import StreamBroken as _StreamBroken
from ansible_collections.rat.backup.plugins.module_utils._mirror.model import to_ms


def _key_of(entry):
    return entry.key


def _first(item):
    return item[0]


def _same(known, listed):
    """The listing describes the object ``known`` describes: same size, ETag and version id."""
    return (known.size, known.etag, known.version_id) == (listed.size, listed.etag, listed.version_id)


def _deleted(entry):
    return {"bucket": entry.bucket, "key": entry.key, "change": "deleted"}


def _is_network_error(exc):
    return isinstance(exc, (ConnectionError, TimeoutError))


class Download:
    """One S3 -> local directory run of ``mirror`` (a Mirror: options, sides, clients, counters)."""

    def __init__(self, mirror):
        self.mirror = mirror
        self.options = mirror.options
        self.tree = local_tree.LocalTree(mirror.dest.path)
        self.manifest_path = self.options.get("manifest")
        self._plan = None
        self.header = None
        self.buckets = None
        self.link_tree = None
        self.changed = False
        # One syncfs after the last file instead of an fsync per file, where the system has it.
        self.sync_at_end = layout.has_syncfs()

    def plan(self):
        m, o = self.mirror, self.options
        self.link_tree = self._link_tree()
        buckets = self.buckets = m.source_buckets()
        header = self.header = {"format": object_manifest.MANIFEST_FORMAT, "endpoint": m.src_endpoint.name,
                                "listed_at": fs.iso(fs.utcnow(), ms=True), "buckets": {}}
        if m.as_of is not None:
            header["versions_as_of"] = fs.iso(m.as_of, ms=True)
        if m.src.single_bucket:
            header["prefix"] = m.src.prefix
        versioning = m.pin(buckets)
        if m.consistency is not None:
            header["consistency"] = m.consistency
        for bucket in buckets:
            header["buckets"][bucket] = {"versioned": versioning[bucket]}
        unsorted = set()
        while True:
            try:
                manifest_complete = self._merge(versioning, unsorted)
                break
            except merge.OutOfOrder as exc:
                # Not sorted after all (a hand-written manifest, a server that does not sort):
                # planned again with that stream sorted in memory.
                self._plan.close()
                unsorted.add(exc.what)
        plan = self._plan
        result = {"plan": plan.summary(), "manifest": self.manifest_path}
        self._check_room()
        self.changed = bool(plan.count("copy") or plan.count("link") or plan.deletes) or (
            self.manifest_path is not None and not manifest_complete)
        result["changed"] = self.changed
        return result

    def _merge(self, versioning, unsorted):
        """One pass over the listing, the previous manifest (+ journal) and link_dest's manifest,
        all in (bucket, key) order, deciding per key; returns whether the previous manifest was complete."""
        m, o, tree = self.mirror, self.options, self.tree
        manifest_path = self.manifest_path
        spool = None if m.check_mode else merge.spool_in(fs.nearest_existing_dir(tree.root), tree.root)
        plan = self._plan = merge.StreamPlan(spool, line_of=self._line)

        def ordered(items, what):
            if what in unsorted:
                return merge.sorted_unique(items, merge.entry_key)
            return merge.in_order(items, merge.entry_key, what)

        def listing():
            for bucket in self.buckets:
                entries = ordered(m.lister.entries(bucket, versioning[bucket]), "listing")
                base = "" if m.src.single_bucket else bucket
                for entry, relpath in key_paths.sorted_relpaths(bucket, base, m.src.prefix, entries, _key_of):
                    entry.relpath = relpath
                    yield entry

        previous, manifest_complete = self._previous(ordered)
        links = iter(())
        if self.link_tree is not None:
            links = ordered(object_manifest.iter_entries(self._link_manifest(), "link_dest_manifest"),
                            "link_dest_manifest")
        expected = set() if o.get("delete") else None
        by_path = {}
        unknown = []
        with_previous = merge.join(listing(), previous, merge.entry_key, merge.entry_key)
        for dummy, pair, link in merge.join(with_previous, links, _first, merge.entry_key):
            listed, before = pair[1:] if pair is not None else (None, None)
            if listed is None:
                if before is not None and expected is not None and before.relpath.startswith(ESCAPE_DIR + "/"):
                    # Gone from the source: its escaped path is known only from the manifest.
                    by_path[before.relpath] = before.key
                continue
            relpath = listed.relpath
            if expected is not None:
                expected.add(relpath)
            if before is not None and _same(before, listed):
                if before.relpath == relpath and tree.matches(before):
                    plan.add("keep", before)
                    continue
                entry = before.listed()
            elif link is not None and _same(link, listed):
                # The previous mirror's Entry: same size, ETag and version id; its file still a regular
                # file of that size with the object's LastModified as mtime. A file changed in place
                # since (bit rot by a write, a hand edit) is downloaded again, never inherited.
                if self.link_tree.matches(link):
                    source, link.relpath = link.relpath, relpath
                    plan.add("link", link, source)
                    continue
                entry = link.listed()
            else:
                entry = listed
            entry.relpath = relpath
            unseen = before is None and not manifest_path
            if unseen and local_tree.is_same_size_file(tree.path(entry.relpath), entry.size):
                unknown.append(entry)
                continue
            # A copy with a source: the worker links link_dest's file if its bytes prove equal (relink).
            plan.add("copy", entry, link.relpath if relink.candidate(listed, link) else None)
        self._settle_unknown(unknown)
        if o.get("delete") and os.path.isdir(tree.root):
            for relpath in self._local_extras(expected, by_path):
                plan.add_delete(relpath)
        return manifest_complete

    def apply(self):
        m, tree, plan = self.mirror, self.tree, self._plan
        tree.prepare()
        self._delete_local(plan.deletes)
        journal = object_manifest.Journal(self.manifest_path + ".journal" if self.manifest_path else None)

        def planned():
            for action, item, source, relpath in plan.spool.rows():
                if action == "link":
                    # In this thread: a link costs less than handing it to a worker.
                    self._link(relpath, self.link_tree.path(source))
                    m.stats["linked"] += 1
                yield action, ((item, source) if action == "copy" else item)

        def work(row):
            # The manifest line is made by the worker: in worker processes, one JSON encoding
            # less per object in this one, which every object's result passes through.
            entry, source = row[1]
            if source and self.relinked(entry, source):
                return row[0], (self._line(entry), entry.size, None, True)
            entry, change = self.fetch(entry)
            if entry is None:
                return row[0], (None, None, change, False)
            return row[0], (self._line(entry), entry.size, change, False)

        def record(row):
            line, size, change, linked = row[1]
            if change is not None:
                m.changed_during.append(change)
            if linked:
                m.stats["linked"] += 1
            if line is not None:
                # Journaled (relinks too: their entry is the new listing's). Links from the plan are
                # not: a rerun links them again from link_dest, as cheaply.
                journal.add(line)
                if not linked:
                    m.count_copied(size)

        def finished():
            rows = pool.results(planned(), work, record, m.concurrency, m.progress, plan.count("copy"),
                                ready=lambda row: row[0] != "copy",
                                # A worker fetches everything over src_http, never with the boto3 client.
                                processes=m.worker_processes(m.src_http))
            for action, item in rows:
                if action != "copy":
                    yield item
                elif item[0] is not None:
                    yield item[0]
            # Before the manifest is renamed into place: it names only files on disk.
            if self.sync_at_end and (plan.count("copy") or plan.count("link")):
                layout.sync_tree(tree.root)

        written = False
        try:
            if self.manifest_path and self.changed:
                object_manifest.write_manifest(self.manifest_path, self.header, finished())
                written = True
            else:
                for dummy in finished():
                    pass
        finally:
            journal.close()
            plan.close()
        if written:
            journal.remove()
        tree.finish()

    def _line(self, entry):
        return object_manifest.manifest_line(entry, object_manifest.root_name(self.mirror.dest.path))

    # --- planning -----------------------------------------------------------------------------

    def _check_room(self):
        """Fail before the first byte is written when the planned downloads cannot fit."""
        copies = self._plan.tallies["copy"]
        needed = copies.bytes + max(0, self.options.get("min_free_bytes") or 0)
        existing = fs.nearest_existing_dir(self.tree.root)
        free = fs.free_bytes(existing)
        if needed > free:
            raise RatBackupError(
                f"not enough free space in {existing}: {copies.count} objects to download need "
                f"{-(-needed // 2 ** 20)} MiB (with min_free_bytes), {free // 2 ** 20} MiB free",
                path=existing, free_bytes=free, required_bytes=needed)

    def _settle_unknown(self, entries):
        """Without a manifest, a same-size local file is kept only if its content proves equal."""
        digests = local_tree.digests(entries, self.tree, self.mirror.concurrency)
        for entry in entries:
            if digests[id(entry)].matches_etag(entry.etag):
                self._plan.add("keep", entry)
            else:
                entry.sha256 = None
                self._plan.add("copy", entry)

    def _previous(self, ordered):
        """The Entries this destination already holds, in (bucket, key) order, and whether its manifest
        was complete (a journal left behind means the last run was interrupted; its lines win)."""
        manifest_path = self.manifest_path
        stored = iter(())
        complete = False
        if manifest_path and os.path.exists(manifest_path):
            stored = ordered(object_manifest.iter_entries(manifest_path, "manifest"), "manifest")
            complete = True
        journal_path = manifest_path + ".journal" if manifest_path else None
        if journal_path and os.path.exists(journal_path):
            # In memory: only what the interrupted run finished, in the order it finished.
            journaled = merge.sorted_unique(object_manifest.Journal.read(journal_path), merge.entry_key)
            return (b or a for dummy, a, b in merge.join(stored, journaled, merge.entry_key, merge.entry_key)), False
        return stored, complete

    def _link_tree(self):
        """The LocalTree of the previous mirror given as link_dest (None without one)."""
        link_dest = self.options.get("link_dest")
        if not link_dest:
            return None
        link_dest = os.path.abspath(link_dest)
        if not os.path.isdir(link_dest):
            raise RatBackupError(f"link_dest {link_dest} is not a directory", path=link_dest)
        return local_tree.LocalTree(link_dest)

    def _link_manifest(self):
        parent = os.path.dirname(self.link_tree.root)
        return self.options.get("link_dest_manifest") or os.path.join(parent, "manifest.json")

    def _local_extras(self, expected, by_path):
        """Local files the source no longer has, within the buckets this run mirrors (``by_path``:
        the keys of escaped paths the previous manifest names and the source no longer has)."""
        m, tree, buckets = self.mirror, self.tree, self.buckets
        own_files = set()
        for path in (self.options.get("manifest"), (self.options.get("manifest") or "") + ".journal"):
            if path and os.path.dirname(os.path.abspath(path)) == tree.root:
                own_files.add(os.path.basename(path))
        tops = []
        if m.src.single_bucket:
            tops.append(("", m.src.bucket))
        else:
            everything = not self.options.get("buckets")
            present = [n for n in os.listdir(tree.root) if not n.startswith(".")]
            tops.extend((n, n) for n in present if everything or n in buckets)
        escape_root = os.path.join(tree.root, ESCAPE_DIR)
        if os.path.isdir(escape_root):
            everything = not self.options.get("buckets") or m.src.single_bucket
            for name in os.listdir(escape_root):
                wanted = [m.src.bucket] if m.src.single_bucket else (None if everything else buckets)
                if wanted is None or name in wanted:
                    tops.append((posixpath.join(ESCAPE_DIR, name), name))
        extras = []
        for top, bucket in tops:
            for relpath in (found[0] for found in tree.walk(top)):
                if relpath in expected or relpath in own_files or relpath.split("/")[0] == TMP_DIR or \
                        (top == "" and relpath.startswith(".rat-")):
                    continue
                if top.startswith(ESCAPE_DIR):
                    key = by_path.get(relpath)
                    if key is None and m.filter.active:
                        continue
                else:
                    key = m.src.prefix + (relpath if top == "" else relpath[len(top) + 1:])
                if key is None or m.filter(key):
                    extras.append(relpath)
        return extras

    # --- running ------------------------------------------------------------------------------

    def _delete_local(self, relpaths):
        tree, buckets = self.tree, self.buckets
        keep = {"", ESCAPE_DIR} | set(buckets) | {posixpath.join(ESCAPE_DIR, b) for b in buckets}
        for relpath in relpaths:
            try:
                os.unlink(tree.path(relpath))
            except OSError as exc:
                raise RatBackupError(f"cannot delete {tree.path(relpath)}: {exc.strerror}",
                                     path=tree.path(relpath))
            self.mirror.stats["deleted"] += 1
            tree.prune_empty(relpath, keep)

    def _link(self, relpath, source):
        tree = self.tree
        tree.parent_for(relpath)
        try:
            # Nothing at the path (a fresh backup directory): one link, no temp name and rename.
            os.link(source, tree.path(relpath))
            return
        except FileExistsError:
            pass
        except OSError as exc:
            raise RatBackupError(f"cannot hard-link {source} to {tree.path(relpath)}: {exc.strerror}",
                                 path=tree.path(relpath))
        tmp = tree.temp_path()
        try:
            os.link(source, tmp)
            os.replace(tmp, tree.path(relpath))
        except OSError as exc:
            fs.unlink_quietly(tmp)
            raise RatBackupError(f"cannot hard-link {source} to {tree.path(relpath)}: {exc.strerror}",
                                 path=tree.path(relpath))

    def relinked(self, entry, source):
        """True when link_dest's ``source`` proved to hold ``entry``'s bytes and was linked in place
        of a download (relink.prove); False: download it."""
        path = self.link_tree.path(source)
        if not relink.prove(self.mirror, entry, path):
            return False
        self._link(entry.relpath, path)
        if entry.modified_ms is not None:
            # The object's LastModified as mtime, as for a download: the next backup then links it
            # from this one by the listing alone (LocalTree.matches). The inode is shared, so link_dest's
            # copy gets it too; only the newest backup is ever a link source.
            stamp = entry.modified_ms / 1000.0
            try:
                os.utime(self.tree.path(entry.relpath), (stamp, stamp))
            except OSError as exc:
                raise RatBackupError(f"cannot set the time of {self.tree.path(entry.relpath)}: {exc.strerror}",
                                     path=self.tree.path(entry.relpath))
        return True

    def fetch(self, entry):
        """Download one object into a temp file, hashing on the way, then rename it into place.

        Returns (the Entry as fetched or None when it is gone, a change_during note or None): a
        worker process hands both back, since what it changes of the mirror stays in it."""
        tree = self.tree
        tree.parent_for(entry.relpath)
        final = tree.path(entry.relpath)
        attempts = self.mirror.attempts
        for attempt in range(attempts):
            tmp = tree.temp_path()
            try:
                fetched = self.fetch_once(entry, tmp, final)
            except _StreamBroken as exc:
                fs.unlink_quietly(tmp)
                if attempt + 1 == attempts:
                    raise s3.translate(exc.cause, self.mirror.src_endpoint, "reading", entry.bucket, entry.key)
                time.sleep(min(0.5 * 2 ** attempt, 8))
                continue
            except BaseException:
                fs.unlink_quietly(tmp)
                raise
            if fetched[0] is None:
                # Gone from the source: its temp file (if any) was never renamed into place.
                fs.unlink_quietly(tmp)
                self._confirm_gone(entry)
            # Renamed into place: no unlink of a name that no longer exists (one syscall per object).
            return fetched

    def _confirm_gone(self, entry):
        """A listed object that answers "not found" is recorded as deleted during the run only when a
        fresh listing agrees; otherwise (a key this client cannot read back, a server that lies)
        the run fails naming it rather than leave it out of the backup."""
        if self.mirror.lister.still_listed(entry.bucket, entry.key):
            raise RatBackupError(f"reading {entry.bucket}/{entry.key!r} on {self.mirror.src_endpoint.name}: the server "
                                 "answers that it does not exist, yet lists it; not recorded as deleted",
                                 endpoint=self.mirror.src_endpoint.name, bucket=entry.bucket, key=entry.key)

    def fetch_once(self, entry, tmp, final):
        m = self.mirror
        if m.src_http is not None and entry.size > s3.PART_SIZE:
            return self._fetch_ranged(entry, tmp, final)
        if m.src_http is not None:
            response = m.src_http.get_object(entry.bucket, entry.key, entry.version_id,
                                             missing_ok=not entry.version_id)
        else:
            response = s3.get_object(m.src_client, m.src_endpoint, entry.bucket, entry.key, entry.version_id,
                                     missing_ok=not entry.version_id)
        if response is None:
            return None, _deleted(entry)
        digest = hashlib.sha256()
        written = 0
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
            # Buffered: a raw write may write part of a chunk (ENOSPC) without raising.
            with os.fdopen(fd, "wb") as handle:
                try:
                    for chunk in response["Body"].iter_chunks(fs.CHUNK):
                        digest.update(chunk)
                        handle.write(chunk)
                        written += len(chunk)
                except (*s3.sdk_errors(), OSError) as exc:
                    if isinstance(exc, OSError) and not _is_network_error(exc):
                        raise
                    raise _StreamBroken(exc)
                if written != response.get("ContentLength", written):
                    raise _StreamBroken(OSError(f"body ended after {written} of {response.get('ContentLength')} bytes"))
                handle.flush()
                if not self.sync_at_end:
                    os.fsync(handle.fileno())
                if os.fstat(handle.fileno()).st_size != written:
                    raise OSError(5, f"file is {os.fstat(handle.fileno()).st_size} bytes after writing {written}")
        except OSError as exc:
            raise RatBackupError(f"cannot write {final} for {entry.bucket}/{entry.key}: {exc.strerror}",
                                 path=final, bucket=entry.bucket, key=entry.key)
        finally:
            response["Body"].close()
        return self._settle(entry, response, written, digest.hexdigest(), tmp, final)

    def _fetch_ranged(self, entry, tmp, final):
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
        except OSError as exc:
            raise RatBackupError(f"cannot write {final} for {entry.bucket}/{entry.key}: {exc.strerror}",
                                 path=final, bucket=entry.bucket, key=entry.key)
        try:
            # pread for the hash needs the descriptor readable too; reopen it so.
            with open(tmp, "rb") as reader:
                fetched = ranged.fetch(self.mirror.src_http, entry, fd, reader.fileno(), s3.PART_SIZE)
            if fetched is None:
                return None, _deleted(entry)
            if not self.sync_at_end:
                os.fsync(fd)
        except OSError as exc:
            raise RatBackupError(f"cannot write {final} for {entry.bucket}/{entry.key}: {exc.strerror}",
                                 path=final, bucket=entry.bucket, key=entry.key)
        finally:
            os.close(fd)
        response, written, sha256 = fetched
        return self._settle(entry, response, written, sha256, tmp, final)

    def _settle(self, entry, response, written, sha256, tmp, final):
        """Record what the GET said in ``entry``, then give the file its mtime and its name; (entry,
        the change seen since the listing or None)."""
        etag = response.get("ETag")
        change = None
        if etag != entry.etag and not entry.version_id:
            change = {"bucket": entry.bucket, "key": entry.key, "change": "modified",
                      "listed_etag": entry.etag, "etag": etag}
        entry.etag = etag
        entry.size = written
        entry.sha256 = sha256
        if response.get("LastModified"):
            entry.modified_ms = to_ms(response["LastModified"])
        entry.take_response(response)
        try:
            stamp = entry.modified_ms / 1000.0
            os.utime(tmp, (stamp, stamp))
            os.replace(tmp, final)
        except OSError as exc:
            raise RatBackupError(f"cannot move {final} into place: {exc.strerror}", path=final)
        return entry, change
