# -*- coding: utf-8 -*-
# Copyright: rat.backup contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""S3 -> disk, the plan: against the previous run's manifest (and link_dest), per key keep, link, copy or delete.

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

import os
import posixpath

from ansible_collections.rat.backup.plugins.module_utils import fs, read_ahead
from ansible_collections.rat.backup.plugins.module_utils.errors import RatBackupError
from ansible_collections.rat.backup.plugins.module_utils._mirror import key_paths
from ansible_collections.rat.backup.plugins.module_utils._mirror import listing
from ansible_collections.rat.backup.plugins.module_utils._mirror import local_tree
from ansible_collections.rat.backup.plugins.module_utils._mirror import merge
from ansible_collections.rat.backup.plugins.module_utils._mirror import object_manifest
from ansible_collections.rat.backup.plugins.module_utils._mirror import relink
from ansible_collections.rat.backup.plugins.module_utils._mirror.key_paths import ESCAPE_DIR, TMP_DIR


def _key_of(entry):
    return entry.key


def _first(item):
    return item[0]


def _linked_key(item):
    return merge.entry_key(item[0])


def _same(known, listed):
    """The listing describes the object ``known`` describes: same size, ETag and version id."""
    return (known.size, known.etag, known.version_id) == (listed.size, listed.etag, listed.version_id)


class DownloadPlan:
    """The plan of one S3 -> local directory run (``Download`` runs it): ``settings`` (Settings),
    ``sides`` (Sides), ``lister`` (listing.Lister of the source). After ``plan()``: ``stream`` (the
    merge.StreamPlan), ``header`` of the object manifest, ``buckets``, ``link_tree``, ``changed``.

    ``link_now(relpath, source)`` makes one link from link_dest at once. Into a destination that
    held nothing when the plan began (a new backup's), and once S3's clock can no longer refuse the
    run, the plan makes its links as it decides them, while the listing still streams, instead of
    leaving them to ``apply``: an unchanged lake's links then cost no time after its listing. There
    nothing can be in the way of a link and nothing is deleted before it; links take no room for
    data (the room check counts downloads only), and a run that fails after some leaves them as
    apply would (a backup's .partial is removed by its abort; a rerun links again over them)."""

    def __init__(self, settings, sides, lister, link_now=None):
        self.settings = settings
        self.sides = sides
        self.lister = lister
        self.link_now = link_now
        self.tree = local_tree.LocalTree(settings.dest.path)
        self.manifest_path = settings.manifest
        self.stream = None
        self.header = None
        self.buckets = None
        self.link_tree = None
        self.changed = False
        self.readers = []
        self.fresh = False

    def plan(self):
        o, sides = self.settings, self.sides
        self.link_tree = self._link_tree()
        self.fresh = local_tree.is_empty(self.tree.root)
        buckets = self.buckets = listing.buckets(sides.src_client, sides.src_endpoint, o.src, o.buckets, sides.src_http)
        header = self.header = {"format": object_manifest.MANIFEST_FORMAT, "endpoint": self.sides.src_endpoint.name,
                                "listed_at": fs.iso(fs.utcnow(), ms=True), "buckets": {}}
        if self.settings.as_of is not None:
            header["versions_as_of"] = fs.iso(self.settings.as_of, ms=True)
        if self.settings.src.single_bucket:
            header["prefix"] = self.settings.src.prefix
        # With a consistency point S3's clock is measured meanwhile (the Date-tick wait, Lister.pin):
        # unversioned buckets are listed and planned beside it, versioned ones listed once the
        # snapshot's window is known. Its skew is refused before this returns, so before anything is written.
        versioning = self.lister.pin(buckets, o.consistency_point, o.max_clock_skew, o.fail_on_best_effort)
        try:
            for bucket in buckets:
                header["buckets"][bucket] = {"versioned": versioning[bucket]}
            manifest_complete = self._merged(versioning)
            pinned = self.lister.pinned()
        finally:
            # Nothing of the clock's measurement runs once this returns (apply() forks workers).
            self.lister.close()
        if pinned is not None:
            header["consistency"] = pinned
        plan = self.stream
        result = {"plan": plan.summary(), "manifest": self.manifest_path, "consistency": pinned}
        self._check_room()
        self.changed = bool(plan.count("copy") or plan.count("link") or plan.deletes) or (
            self.manifest_path is not None and not manifest_complete)
        result["changed"] = self.changed
        return result

    def _merged(self, versioning):
        """_merge until it has read every stream in order; returns whether the previous manifest was complete."""
        unsorted = set()
        while True:
            try:
                return self._merge(versioning, unsorted)
            except merge.OutOfOrder as exc:
                # Not sorted after all (a hand-written manifest, a server that does not sort):
                # planned again with that stream sorted in memory.
                self._unlink_made()
                self.stream.close()
                unsorted.add(exc.what)
            finally:
                # A plan stopped early (OutOfOrder, an error) leaves no thread reading a listing.
                while self.readers:
                    self.readers.pop().close()

    def _merge(self, versioning, unsorted):
        """One pass over the listing, the previous manifest (+ journal) and link_dest's manifest,
        all in (bucket, key) order, deciding per key; returns whether the previous manifest was complete."""
        o, tree = self.settings, self.tree
        manifest_path = self.manifest_path
        spool = None if self.settings.check_mode else merge.spool_in(fs.nearest_existing_dir(tree.root), tree.root)
        plan = self.stream = merge.StreamPlan(spool, line_of=self.line)

        def ordered(items, what, key=merge.entry_key):
            if what in unsorted:
                return merge.sorted_unique(items, key)
            return merge.in_order(items, key, what)

        def listed():
            for bucket in self.buckets:
                # Listed by a thread of its own while this one plans: the server's time per page is
                # hidden behind the plan's instead of added to it.
                self.readers.append(read_ahead.ReadAhead(self.lister.entries(bucket, versioning[bucket])))
                entries = ordered(self.readers[-1], "listing")
                base = "" if self.settings.src.single_bucket else bucket
                for entry, relpath in key_paths.sorted_relpaths(bucket, base, self.settings.src.prefix, entries, _key_of):
                    entry.relpath = relpath
                    yield entry

        previous, manifest_complete = self._previous(ordered)
        eager = self.fresh and plan.spool is not None and self.link_now is not None
        links = iter(())
        if self.link_tree is not None:
            # With each Entry its line in link_dest's manifest, when that line names the same root.
            links = ordered(object_manifest.iter_entries(self._link_manifest(), "link_dest_manifest",
                                                         self.root_name), "link_dest_manifest", _linked_key)
        expected = set() if o.delete else None
        by_path = {}
        unknown = []
        with_previous = merge.join(listed(), previous, merge.entry_key, merge.entry_key)
        for dummy, pair, linked in merge.join(with_previous, links, _first, _linked_key):
            link, link_line = linked if linked is not None else (None, None)
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
                    done = eager and self.lister.settled()
                    if done:
                        self.link_now(relpath, source)
                    # Unchanged and at the same path: its line is link_dest's, passed on as it is
                    # (it is what to_manifest would write again from the same Entry).
                    plan.add("link", link, source, link_line if source == relpath else None, done)
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
        if o.delete and not self.fresh and os.path.isdir(tree.root):
            for relpath in self._local_extras(expected, by_path):
                plan.add_delete(relpath)
        return manifest_complete

    def _unlink_made(self):
        """Remove the links the stopped plan made while it listed. Read in order again, a key can get
        another path (``a`` is escaped once ``a/b`` is listed): its link left at the first would stand
        where a directory must be, or outside the manifest (the delete walk skips a fresh destination)."""
        spool = self.stream.spool
        if spool is None:
            return
        for action, dummy, dummy, relpath in spool.rows():
            if action == "linked":
                fs.unlink_quietly(self.tree.path(relpath))

    @property
    def root_name(self):
        return object_manifest.root_name(self.settings.dest.path)

    def line(self, entry):
        return object_manifest.manifest_line(entry, self.root_name)

    def _check_room(self):
        """Fail before the first byte is written when the planned downloads cannot fit."""
        copies = self.stream.tallies["copy"]
        needed = copies.bytes + self.settings.min_free_bytes
        existing = fs.nearest_existing_dir(self.tree.root)
        free = fs.free_bytes(existing)
        if needed > free:
            raise RatBackupError(
                f"not enough free space in {existing}: {copies.count} objects to download need "
                f"{-(-needed // 2 ** 20)} MiB (with min_free_bytes), {free // 2 ** 20} MiB free",
                path=existing, free_bytes=free, required_bytes=needed)

    def _settle_unknown(self, entries):
        """Without a manifest, a same-size local file is kept only if its content proves equal."""
        digests = local_tree.digests(entries, self.tree, self.settings.concurrency)
        for entry in entries:
            if digests[id(entry)].matches_etag(entry.etag):
                self.stream.add("keep", entry)
            else:
                entry.sha256 = None
                self.stream.add("copy", entry)

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
        link_dest = self.settings.link_dest
        if not link_dest:
            return None
        link_dest = os.path.abspath(link_dest)
        if not os.path.isdir(link_dest):
            raise RatBackupError(f"link_dest {link_dest} is not a directory", path=link_dest)
        return local_tree.LocalTree(link_dest)

    def _link_manifest(self):
        parent = os.path.dirname(self.link_tree.root)
        return self.settings.link_dest_manifest or os.path.join(parent, "manifest.json")

    def _local_extras(self, expected, by_path):
        """Local files the source no longer has, within the buckets this run mirrors (``by_path``:
        the keys of escaped paths the previous manifest names and the source no longer has)."""
        o, tree, buckets = self.settings, self.tree, self.buckets
        own_files = set()
        for path in (self.settings.manifest, (self.settings.manifest or "") + ".journal"):
            if path and os.path.dirname(os.path.abspath(path)) == tree.root:
                own_files.add(os.path.basename(path))
        tops = []
        if self.settings.src.single_bucket:
            tops.append(("", self.settings.src.bucket))
        else:
            everything = not self.settings.buckets
            present = [n for n in os.listdir(tree.root) if not n.startswith(".")]
            tops.extend((n, n) for n in present if everything or n in buckets)
        escape_root = os.path.join(tree.root, ESCAPE_DIR)
        if os.path.isdir(escape_root):
            everything = not self.settings.buckets or self.settings.src.single_bucket
            for name in os.listdir(escape_root):
                wanted = [self.settings.src.bucket] if self.settings.src.single_bucket else (None if everything else buckets)
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
                    if key is None and self.settings.filter.active:
                        continue
                else:
                    key = self.settings.src.prefix + (relpath if top == "" else relpath[len(top) + 1:])
                if key is None or self.settings.filter(key):
                    extras.append(relpath)
        return extras
