# -*- coding: utf-8 -*-
# Copyright: rat.backup contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""disk -> S3: the files to upload (from a manifest, or found under bucket directories), what the
destination already holds with equal content, then uploads and deletes."""

from __future__ import annotations

import contextlib
import mimetypes
import os

from ansible_collections.rat.backup.plugins.module_utils import integrity, s3
from ansible_collections.rat.backup.plugins.module_utils.errors import RatBackupError
from ansible_collections.rat.backup.plugins.module_utils._mirror.key_paths import ESCAPE_DIR
from ansible_collections.rat.backup.plugins.module_utils._mirror import listing
from ansible_collections.rat.backup.plugins.module_utils._mirror import local_tree
from ansible_collections.rat.backup.plugins.module_utils._mirror import merge
from ansible_collections.rat.backup.plugins.module_utils._mirror import object_manifest
from ansible_collections.rat.backup.plugins.module_utils._mirror import pool
from ansible_collections.rat.backup.plugins.module_utils._mirror.model import Entry
from ansible_collections.rat.backup.plugins.module_utils._mirror.settings import transfer

# Files up to this size are read and checked ahead of their upload and their PUTs pipelined (held
# in memory a batch at a time): above it, a request's own cost is little of the object's.
PIPELINED_SIZE = 64 << 10


def _key_of(entry):
    return entry.key


def _first(item):
    return item[0]


def _nothing(result):
    """Planning records nothing per file: the plan is what the results say."""


class Upload:
    """One local directory -> S3 run: ``settings`` (Settings), ``sides`` (Sides), ``counter`` (Counter)."""

    def __init__(self, settings, sides, counter):
        self.settings = settings
        self.sides = sides
        self.counter = counter
        self.tree = local_tree.LocalTree(settings.src.path)
        self._plan = None
        self.skipped_files = []
        self.versioning = {}
        self._tops = None
        self._rename = False
        # Destination buckets a PUT may be sent twice into (pipelined), and in a worker the
        # (body, sha256) of files read and checked ahead of their upload, by (bucket, key).
        self.resendable = set()
        self._checked = {}

    def plan(self):
        targets, self.versioning = self._targets()
        buckets = sorted(targets | set(self.versioning))
        unsorted = set()
        settled = len(self.skipped_files)
        while True:
            # Files met while walking are skipped again if planning starts over.
            del self.skipped_files[settled:]
            plan = self._plan = merge.StreamPlan(None if self.settings.check_mode else merge.spool_in(None, "the restore"),
                                                 spooled=("copy",))
            try:
                for bucket in buckets:
                    if not s3.bucket_exists(self.sides.dest_client, self.sides.dest_endpoint, bucket):
                        self.settings.require_create_buckets(bucket, self.sides.dest_endpoint)
                        plan.create_buckets.append(bucket)
                for bucket in buckets:
                    self._plan_bucket(bucket, unsorted)
                break
            except merge.OutOfOrder as exc:
                # Not in key order (a hand-edited manifest, buckets mapped onto one): planned again
                # with that stream sorted in memory.
                plan.close()
                unsorted.add(exc.what)
        if self.sides.dest_http is not None and not self.settings.check_mode:
            self.resendable = self._unversioned(buckets, plan.create_buckets)
        return {"plan": plan.summary(), "skipped_files": self.skipped_files,
                "changed": bool(plan.count("copy") or plan.deletes or plan.create_buckets)}

    def _plan_bucket(self, bucket, unsorted):
        """Decide per key of one destination bucket: the local files (in key order) joined with its listing.

        With a manifest every file is checked against it before anything is uploaded; without one
        only files that may already be there (same size) are worth reading.
        """
        plan, tree = self._plan, self.tree

        def ordered(items, key, what):
            return merge.sorted_unique(items, key) if what in unsorted else merge.in_order(items, key, what)

        sources = ordered(self._sources(bucket), _key_of, "sources")
        present = iter(()) if bucket in plan.create_buckets else ordered(
            listing.dest_listing(self.sides.dest_client, self.sides.dest_endpoint, bucket, self.settings.dest.prefix), _first, "destination listing")

        def check(row):
            dummy, entry, current = row
            if entry.sha256 or (current is not None and current[1] == entry.size):
                digest = local_tree.entry_digest(entry, tree)
                return row + (digest, self._in_place(entry, current, digest))
            # Unreadable files fail the run here, before the first upload.
            os.close(local_tree.open_regular(tree.source_path(entry.relpath)))
            return row + (None, False)

        rows = pool.results(merge.join(sources, present, _key_of, _first), check, _nothing, self.settings.concurrency,
                            total=0, ready=lambda row: row[1] is None)
        for row in rows:
            key, entry, current = row[:3]
            if entry is None:
                if self.settings.delete and self.settings.filter(key):
                    plan.add_delete(f"{bucket}/{key}")
                continue
            digest = row[3]
            if digest is not None and entry.sha256 and digest.sha256 != entry.sha256:
                path = tree.source_path(entry.relpath)
                raise RatBackupError(f"{path} does not match its manifest (sha256 {digest.sha256}, manifest "
                                     f"{entry.sha256}); the backup is damaged, nothing was uploaded",
                                     path=path)
            if digest is not None:
                entry.sha256 = entry.sha256 or digest.sha256
            if row[4]:
                plan.add("keep", entry)
            else:
                plan.add("copy", entry)

    def _in_place(self, entry, current, digest):
        """Whether the destination already holds this entry's object: its bytes (size and ETag) and, when
        it was written again after the backup listed it, its attributes (bytes put back with another
        Content-Type or metadata keep their ETag; only a HEAD shows the difference)."""
        if current is None or current[1] != entry.size or not (
                (entry.etag is not None and current[2] == entry.etag) or digest.matches_etag(current[2])):
            return False
        # Seconds: a manifest written from GET answers holds whole seconds, a listing milliseconds.
        if entry.modified_ms is None or current[3] is None or current[3] // 1000 <= entry.modified_ms // 1000:
            return True
        head = s3.object_attributes(self.sides.dest_client, self.sides.dest_endpoint, entry.bucket, entry.key)
        return not entry.attributes_differ(head)

    def _unversioned(self, buckets, created):
        """The destination buckets without versioning: a PUT sent twice into one (a pipelined PUT sent
        again after its connection ended) writes the same bytes again, where a versioned bucket would
        keep one version more. A bucket whose versioning cannot be read counts as versioned."""
        found = set()
        for bucket in buckets:
            if bucket in created:
                versioned = self.versioning.get(bucket, False)
            else:
                try:
                    versioned = s3.is_versioned(self.sides.dest_client, self.sides.dest_endpoint, bucket,
                                                http=self.sides.dest_http)
                except RatBackupError:
                    versioned = True
            if not versioned:
                found.add(bucket)
        return found

    def apply(self):
        plan = self._plan
        try:
            for bucket in plan.create_buckets:
                s3.create_bucket(self.sides.dest_client, self.sides.dest_endpoint, bucket, self.versioning.get(bucket, False))
            transfer(self.settings, self.counter, (row[1] for row in plan.spool.rows()), self.put, plan.count("copy"),
                     self.sides.dest_http, start=self.sides.forget_dest_client, ahead=self.ahead)
        finally:
            plan.close()
        self.sides.delete_dest(plan.deletes, self.counter)

    def ahead(self, entries):
        """In a worker, before it uploads ``entries``: the files up to PIPELINED_SIZE going into a bucket
        without versioning are read and checked now, and their PUTs sent ahead (several in flight on
        one connection: the server takes them without waking in between). A file that cannot be read
        or is not the manifest's is left to ``put``, which fails on it; nothing of it is sent."""
        puts = []
        for entry in entries:
            if entry.size <= PIPELINED_SIZE and entry.bucket in self.resendable:
                try:
                    body, sha256 = self._read_checked(entry)
                except RatBackupError:
                    continue
                self._checked[entry.bucket, entry.key] = body, sha256
                puts.append((entry.bucket, entry.key, body, sha256, entry.extra_args()))
        if puts:
            self.sides.dest_http.expect(puts=puts)

    def _read_checked(self, entry):
        """(bytes, sha256) of a small entry's file, read whole; integrity.Mismatch unless they are the manifest's."""
        with self._reader(entry) as reader:
            return reader.read(entry.size), reader.finish()

    def put(self, entry):
        """Upload one file, checked as it is read: bytes that are not the manifest's never complete an object."""
        checked = self._checked.pop((entry.bucket, entry.key), None)
        if checked is not None:
            self.sides.dest_http.put_object(entry.bucket, entry.key, checked[0], checked[1], entry.extra_args())
            return entry
        with self._reader(entry) as reader:
            self.sides.put_checked(reader, entry.bucket, entry.key, entry.size, entry.sha256, entry.extra_args())
        return entry

    @contextlib.contextmanager
    def _reader(self, entry):
        """A HashingReader of the entry's file, opened without following a symlink: what it reads is
        checked against the manifest's size and sha256; a failed read names the file."""
        path = self.tree.source_path(entry.relpath)
        fd = local_tree.open_regular(path)
        with os.fdopen(fd, "rb") as handle:
            yield integrity.HashingReader(_LocalReads(handle, path), f"s3://{entry.bucket}/{entry.key} ({path})",
                                          entry.size, entry.sha256)

    def _targets(self):
        """The destination buckets that get files, and {bucket: versioned} from the manifest."""
        if not self.settings.manifest:
            self._tops = self._tree_tops()
            # A bucket directory without a file to upload is left alone (its bucket too).
            return set(b for t, b in self._tops if next(self._tree_files(t, b, []), None) is not None), {}
        o = self.settings
        path = o.manifest
        header = object_manifest.read_header(path, "manifest")
        versioning = {b: bool((v or {}).get("versioned")) for b, v in (header.get("buckets") or {}).items()}
        # One pass for what depends on the whole manifest: its buckets, and where each object goes
        # with and without renaming.
        sources, targets = set(), {False: set(), True: set()}
        for entry in object_manifest.iter_entries(path, "manifest"):
            sources.add(entry.bucket)
            for rename in (False, True):
                targets[rename].add(self._target(entry, rename))
        # A one-bucket manifest restores into whichever bucket dest names (migration, drills), and so does
        # the bucket named in buckets (a selective restore into a scratch bucket).
        picked = o.buckets if self.settings.dest.single_bucket else None
        self._rename = rename = self.settings.dest.single_bucket and (len(sources) == 1 or bool(picked))
        targets = targets[rename] - {None}
        if rename and versioning:
            versioning = {self.settings.dest.bucket: any(v for b, v in versioning.items() if not picked or b in picked)}
        renamed = o.bucket_map
        if renamed:
            wanted = set(o.buckets or versioning)
            return targets, {renamed.get(b, b): v for b, v in versioning.items() if b in wanted}
        versioning = {b: v for b, v in versioning.items() if b in targets or
                      (not self.settings.dest.single_bucket and (not o.buckets or b in o.buckets))}
        return targets, versioning

    def _target(self, entry, rename):
        """The bucket a manifest entry is restored into, None when this run leaves it out."""
        o = self.settings
        bucket = entry.bucket
        if self.settings.dest.single_bucket:
            if rename:
                if o.buckets and bucket not in o.buckets:
                    return None
                bucket = self.settings.dest.bucket
            if bucket != self.settings.dest.bucket or not entry.key.startswith(self.settings.dest.prefix):
                return None
        elif o.buckets and bucket not in o.buckets:
            return None
        if not self.settings.filter(entry.key):
            return None
        return o.bucket_map.get(bucket, bucket)

    def _sources(self, bucket):
        """The Entries to restore into ``bucket`` (with ``relpath`` under src), in the order read."""
        if self._tops is not None:
            for top, name in self._tops:
                if name == bucket:
                    yield from self._tree_files(top, name, self.skipped_files)
            return
        for entry in object_manifest.iter_entries(self.settings.manifest, "manifest"):
            if self._target(entry, self._rename) == bucket:
                entry.bucket = bucket
                yield entry

    def _tree_tops(self):
        """(directory relpath, bucket) of the local tree's bucket directories; loose files are skipped."""
        o, skipped = self.settings, self.skipped_files
        root = self.settings.src.path
        if self.settings.dest.single_bucket:
            return [("", self.settings.dest.bucket)]
        tops = [(n, n) for n in sorted(os.listdir(root)) if not n.startswith(".") and
                os.path.isdir(os.path.join(root, n)) and not os.path.islink(os.path.join(root, n))
                and (not o.buckets or n in o.buckets)]
        loose = [n for n in os.listdir(root) if n not in dict(tops) and not n.startswith(".")
                 and (not o.buckets)]
        skipped.extend({"path": os.path.join(root, n), "reason": "not inside a bucket directory"}
                       for n in sorted(loose))
        if os.path.isdir(os.path.join(root, ESCAPE_DIR)):
            skipped.append({"path": os.path.join(root, ESCAPE_DIR),
                            "reason": "escaped keys; restore them with their manifest"})
        return tops

    def _tree_files(self, top, bucket, skipped):
        """Entries of the files under one bucket directory, in key order (LocalTree.walk's order)."""
        tree = self.tree
        for relpath, kind, size in tree.walk(top):
            inner = relpath if top == "" else relpath[len(top) + 1:]
            if top == "" and relpath.startswith(".rat-"):
                if relpath.startswith(ESCAPE_DIR + "/"):
                    skipped.append({"path": tree.path(relpath), "reason": "escaped key; restore it with its manifest"})
                continue
            if kind != "file":
                skipped.append({"path": tree.path(relpath), "reason": kind})
                continue
            key = self.settings.dest.prefix + inner
            if self.settings.filter(key):
                yield Entry(bucket, key, size, relpath=relpath, content_type=mimetypes.guess_type(key)[0])


class _LocalReads:
    """A local file's reads, a failed one named as that file's: only there, since what fails while
    the bytes are sent (the network) is not the file's and must not be reported as a read error."""

    __slots__ = ("handle", "path")

    def __init__(self, handle, path):
        self.handle = handle
        self.path = path

    def read(self, size=-1):
        try:
            return self.handle.read(size)
        except OSError as exc:
            raise RatBackupError(f"cannot read local file {self.path}: {exc.strerror or exc}", path=self.path)
