# -*- coding: utf-8 -*-
# Copyright: rat.backup contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""disk -> S3: the files to upload (from a manifest, or found under bucket directories), what the
destination already holds with equal content, then uploads and deletes."""

from __future__ import annotations

import mimetypes
import os

from ansible_collections.rat.backup.plugins.module_utils import integrity, s3
from ansible_collections.rat.backup.plugins.module_utils.errors import RatBackupError
from ansible_collections.rat.backup.plugins.module_utils.keys import ESCAPE_DIR
from ansible_collections.rat.backup.plugins.module_utils._mirror import listing
from ansible_collections.rat.backup.plugins.module_utils._mirror import local_tree
from ansible_collections.rat.backup.plugins.module_utils._mirror import object_manifest
from ansible_collections.rat.backup.plugins.module_utils._mirror.model import Entry, Plan


class Upload:
    """One local directory -> S3 run of ``mirror`` (a Mirror: options, sides, clients, counters)."""

    def __init__(self, mirror):
        self.mirror = mirror
        self.options = mirror.options
        self.tree = local_tree.LocalTree(mirror.src.path)
        self._plan = Plan()
        self.versioning = {}

    def plan(self):
        m, o, plan = self.mirror, self.options, self._plan
        sources, self.versioning = self._local_sources()
        buckets = sorted(set(e.bucket for e in sources) | set(self.versioning))
        for bucket in buckets:
            if not s3.bucket_exists(m.dest_client, m.dest_endpoint, bucket):
                m.require_create_buckets(bucket)
                plan.create_buckets.append(bucket)
        existing = {b: {} if b in plan.create_buckets else
                    listing.dest_objects(m.dest_client, m.dest_endpoint, b, m.dest.prefix)
                    for b in buckets}
        # With a manifest every file is checked against it before anything is uploaded; without
        # one only files that may already be there (same size) are worth reading.
        digests = local_tree.digests([e for e in sources if e.sha256 or
                                      existing[e.bucket].get(e.key, (None,))[0] == e.size],
                                     self.tree, m.concurrency)
        for entry in sources:
            if id(entry) not in digests:
                # Unreadable files fail the run here, before the first upload.
                os.close(local_tree.open_regular(self.tree.source_path(entry.relpath)))
        by_bucket = {}
        for entry in sources:
            by_bucket.setdefault(entry.bucket, []).append(entry)
        for bucket in buckets:
            present = existing[bucket]
            for entry in by_bucket.get(bucket, ()):
                digest = digests.get(id(entry))
                if digest is not None and entry.sha256 and digest.sha256 != entry.sha256:
                    path = self.tree.source_path(entry.relpath)
                    raise RatBackupError("{0} does not match its manifest (sha256 {1}, manifest {2}); the backup is "
                                         "damaged, nothing was uploaded".format(path, digest.sha256, entry.sha256),
                                         path=path)
                current = present.pop(entry.key, None)
                if current is not None and digest is not None and current[0] == entry.size and (
                        (entry.etag is not None and current[1] == entry.etag) or digest.matches_etag(current[1])):
                    plan.keep.append(entry)
                else:
                    plan.copy.append(entry)
            if o.get("delete"):
                plan.delete.extend("{0}/{1}".format(bucket, key) for key in sorted(present) if m.filter(key))
        return {"plan": plan.summary(), "skipped_files": plan.skipped_files,
                "changed": bool(plan.copy or plan.delete or plan.create_buckets)}

    def apply(self):
        m, plan = self.mirror, self._plan
        for bucket in plan.create_buckets:
            s3.create_bucket(m.dest_client, m.dest_endpoint, bucket, self.versioning.get(bucket, False))
        m.transfer(plan.copy, self.put)
        m.delete_dest(plan.delete)

    def put(self, entry):
        """Upload one file, checked as it is read: bytes that are not the manifest's never complete an object."""
        m = self.mirror
        path = self.tree.source_path(entry.relpath)
        fd = local_tree.open_regular(path)
        try:
            with os.fdopen(fd, "rb") as handle:
                reader = integrity.HashingReader(handle, "s3://{0}/{1} ({2})".format(entry.bucket, entry.key, path),
                                                 entry.size, entry.sha256)
                m.put_checked(reader, entry.bucket, entry.key, entry.size, entry.sha256, entry.extra_args())
        except OSError as exc:
            raise RatBackupError("cannot read local file {0}: {1}".format(path, exc.strerror), path=path)
        return entry

    def _local_sources(self):
        """Entries to upload (with ``relpath`` under src) and {bucket: versioned} from the manifest."""
        if self.options.get("manifest"):
            return self._manifest_sources()
        return self._tree_sources(), {}

    def _manifest_sources(self):
        m, o = self.mirror, self.options
        header, entries = object_manifest.read_manifest(o["manifest"], "manifest")
        versioning = {b: bool((v or {}).get("versioned")) for b, v in (header.get("buckets") or {}).items()}
        keep = []
        # A one-bucket manifest restores into whichever bucket dest names (migration, drills).
        rename = m.dest.single_bucket and len(set(e.bucket for e in entries)) == 1
        for entry in entries:
            if m.dest.single_bucket:
                if rename:
                    entry.bucket = m.dest.bucket
                if entry.bucket != m.dest.bucket or not entry.key.startswith(m.dest.prefix):
                    continue
            elif o.get("buckets") and entry.bucket not in o["buckets"]:
                continue
            if m.filter(entry.key):
                keep.append(entry)
        if rename and versioning:
            versioning = {m.dest.bucket: any(versioning.values())}
        renamed = o.get("bucket_map") or {}
        if renamed:
            wanted = set(o.get("buckets") or versioning)
            for entry in keep:
                entry.bucket = renamed.get(entry.bucket, entry.bucket)
            return keep, {renamed.get(b, b): v for b, v in versioning.items() if b in wanted}
        versioning = {b: v for b, v in versioning.items() if b in set(e.bucket for e in keep) or
                      (not m.dest.single_bucket and (not o.get("buckets") or b in o["buckets"]))}
        return keep, versioning

    def _tree_sources(self):
        m, o, tree, skipped = self.mirror, self.options, self.tree, self._plan.skipped_files
        root = m.src.path
        entries = []
        if m.dest.single_bucket:
            tops = [("", m.dest.bucket)]
        else:
            tops = [(n, n) for n in sorted(os.listdir(root)) if not n.startswith(".") and
                    os.path.isdir(os.path.join(root, n)) and not os.path.islink(os.path.join(root, n))
                    and (not o.get("buckets") or n in o["buckets"])]
            loose = [n for n in os.listdir(root) if n not in dict(tops) and not n.startswith(".")
                     and (not o.get("buckets"))]
            skipped.extend({"path": os.path.join(root, n), "reason": "not inside a bucket directory"}
                           for n in sorted(loose))
        for top, bucket in tops:
            for relpath, kind, size in tree.walk(top):
                inner = relpath if top == "" else relpath[len(top) + 1:]
                if top == "" and relpath.startswith(".rat-"):
                    if relpath.startswith(ESCAPE_DIR + "/"):
                        skipped.append({"path": tree.path(relpath),
                                        "reason": "escaped key; restore it with its manifest"})
                    continue
                if kind != "file":
                    skipped.append({"path": tree.path(relpath), "reason": kind})
                    continue
                key = m.dest.prefix + inner
                if m.filter(key):
                    entries.append(Entry(bucket, key, size, relpath=relpath,
                                         content_type=mimetypes.guess_type(key)[0]))
        if not m.dest.single_bucket and os.path.isdir(os.path.join(root, ESCAPE_DIR)):
            skipped.append({"path": os.path.join(root, ESCAPE_DIR),
                            "reason": "escaped keys; restore them with their manifest"})
        return entries
