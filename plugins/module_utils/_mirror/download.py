# -*- coding: utf-8 -*-
# Copyright: rat.backup contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""S3 -> disk, the run of the plan ``download_plan.py`` makes: fetch (with retries, ranged above
PART_SIZE), hard links from link_dest, relinks proven in the worker, local deletes, the object
manifest written last. A fetched file gets the object's LastModified as mtime, which the next
run's plan relies on (download_plan.py says what else it relies on).
"""

from __future__ import annotations

import hashlib
import os
import posixpath
import time

from ansible_collections.rat.backup.plugins.module_utils import fs
from ansible_collections.rat.backup.plugins.module_utils import s3
from ansible_collections.rat.backup.plugins.module_utils.errors import RatBackupError
from ansible_collections.rat.backup.plugins.module_utils._mirror.key_paths import ESCAPE_DIR
from ansible_collections.rat.backup.plugins.module_utils._mirror import object_manifest
from ansible_collections.rat.backup.plugins.module_utils._mirror import pool
from ansible_collections.rat.backup.plugins.module_utils._mirror import ranged
from ansible_collections.rat.backup.plugins.module_utils._mirror import relink
from ansible_collections.rat.backup.plugins.module_utils._mirror.download_plan import DownloadPlan
from ansible_collections.rat.backup.plugins.module_utils._mirror.ranged import StreamBroken as _StreamBroken
from ansible_collections.rat.backup.plugins.module_utils._mirror.model import to_ms


# Objects above this size are asked for one at a time: a request's own cost is little of theirs.
PIPELINED_SIZE = 1 << 20


def _deleted(entry):
    return {"bucket": entry.bucket, "key": entry.key, "change": "deleted"}


def _is_network_error(exc):
    return isinstance(exc, (ConnectionError, TimeoutError))


class Download:
    """One S3 -> local directory run: ``settings`` (Settings), ``sides`` (Sides), ``counter``
    (Counter), ``lister`` (listing.Lister of the source). ``fetch`` runs in worker processes too."""

    def __init__(self, settings, sides, counter, lister):
        self.settings = settings
        self.sides = sides
        self.counter = counter
        self.lister = lister
        self.planned = DownloadPlan(settings, sides, lister, self._link_now)
        self._prepared = False
        self.tree = self.planned.tree
        # One syncfs after the last file instead of an fsync per file, where the system has it.
        self.sync_at_end = fs.has_syncfs()

    def plan(self):
        return self.planned.plan()

    def apply(self):
        planned, tree = self.planned, self.tree
        plan = planned.stream
        tree.prepare()
        self._delete_local(plan.deletes)
        journal = object_manifest.Journal(planned.manifest_path + ".journal" if planned.manifest_path else None)

        def rows_of_plan():
            checkpoint = self.counter.checkpoint
            for action, item, source, relpath in plan.spool.rows():
                checkpoint()
                if action == "link":
                    # In this thread: a link costs less than handing it to a worker.
                    self._link(relpath, planned.link_tree.path(source))
                if action in ("link", "linked"):
                    # "linked": made by the plan while it listed, counted here, so once even when a
                    # plan read again in order (merge.OutOfOrder) made it twice.
                    self.counter.linked()
                yield action, ((item, source) if action == "copy" else item)

        def work(row):
            # The manifest line is made by the worker: in worker processes, one JSON encoding
            # less per object in this one, which every object's result passes through.
            entry, source = row[1]
            if source and self.relinked(entry, source):
                return row[0], (planned.line(entry), entry.size, None, True)
            entry, change = self.fetch(entry)
            if entry is None:
                return row[0], (None, None, change, False)
            return row[0], (planned.line(entry), entry.size, change, False)

        def record(row):
            line, size, change, linked = row[1]
            if change is not None:
                self.counter.changed(change)
            if linked:
                self.counter.linked()
            if line is not None:
                # Journaled (relinks too: their entry is the new listing's). Links from the plan are
                # not: a rerun links them again from link_dest, as cheaply.
                journal.add(line)
                if not linked:
                    self.counter.copied(size)

        def finished():
            rows = pool.results(rows_of_plan(), work, record, self.settings.concurrency, self.counter.progress, plan.count("copy"),
                                ready=lambda row: row[0] != "copy",
                                # A worker fetches everything over src_http, never with the boto3 client.
                                processes=self.settings.worker_processes(self.sides.src_http), ahead=self.ahead)
            for action, item in rows:
                if action != "copy":
                    yield item
                elif item[0] is not None:
                    yield item[0]
            # Before the manifest is renamed into place: it names only files on disk. Left to the
            # commit in a backup's .partial, which is never used before that syncfs (a crash's is
            # removed by the next begin or backup_run abort, never resumed or linked from).
            if self.sync_at_end and not self.settings.synced_by_commit and (plan.count("copy") or plan.count("link")):
                fs.sync_tree(tree.root)

        written = False
        try:
            if planned.manifest_path and planned.changed:
                object_manifest.write_manifest(planned.manifest_path, planned.header, finished())
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

    # --- running ------------------------------------------------------------------------------

    def _delete_local(self, relpaths):
        tree, buckets = self.tree, self.planned.buckets
        keep = {"", ESCAPE_DIR} | set(buckets) | {posixpath.join(ESCAPE_DIR, b) for b in buckets}
        for relpath in relpaths:
            try:
                os.unlink(tree.path(relpath))
            except OSError as exc:
                raise RatBackupError(f"cannot delete {tree.path(relpath)}: {exc.strerror}",
                                     path=tree.path(relpath))
            self.counter.deleted()
            tree.prune_empty(relpath, keep)

    def _link_now(self, relpath, source):
        """One link the plan makes while it still lists (DownloadPlan's ``link_now``)."""
        if not self._prepared:
            self.tree.prepare()
            self._prepared = True
        self._link(relpath, self.planned.link_tree.path(source))

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

    def ahead(self, rows):
        """In a worker, before it fetches ``rows``: the plain GETs they will make (objects up to
        PIPELINED_SIZE with no link_dest file to prove first), for the transport to send ahead
        (several in flight on one connection: the server serves them without waking in between)."""
        self.sides.src_http.expect([(entry.bucket, entry.key, entry.version_id, entry.etag, entry.size)
                                    for dummy, (entry, source) in rows if not source and entry.size <= PIPELINED_SIZE])

    def relinked(self, entry, source):
        """True when link_dest's ``source`` proved to hold ``entry``'s bytes and was linked in place
        of a download (relink.prove); False: download it."""
        path = self.planned.link_tree.path(source)
        if not relink.prove(self.sides, entry, path):
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
        attempts = self.settings.attempts
        for attempt in range(attempts):
            tmp = tree.temp_path()
            try:
                fetched = self.fetch_once(entry, tmp, final)
            except _StreamBroken as exc:
                fs.unlink_quietly(tmp)
                if attempt + 1 == attempts:
                    raise s3.translate(exc.cause, self.sides.src_endpoint, "reading", entry.bucket, entry.key)
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
        if self.lister.still_listed(entry.bucket, entry.key):
            raise RatBackupError(f"reading {entry.bucket}/{entry.key!r} on {self.sides.src_endpoint.name}: the server "
                                 "answers that it does not exist, yet lists it; not recorded as deleted",
                                 endpoint=self.sides.src_endpoint.name, bucket=entry.bucket, key=entry.key)

    def fetch_once(self, entry, tmp, final):
        if self.sides.src_http is not None and entry.size > s3.PART_SIZE:
            return self._fetch_ranged(entry, tmp, final)
        if self.sides.src_http is not None:
            response = self.sides.src_http.get_object(entry.bucket, entry.key, entry.version_id,
                                                      missing_ok=not entry.version_id)
        else:
            response = s3.get_object(self.sides.src_client, self.sides.src_endpoint, entry.bucket, entry.key, entry.version_id,
                                     missing_ok=not entry.version_id)
        if response is None:
            return None, _deleted(entry)
        digest = hashlib.sha256()
        written = 0
        try:
            # Written through the descriptor itself (no buffered file object around it: its
            # fstat, isatty and lseek calls and its copy cost more than a small object's write).
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
            try:
                try:
                    for chunk in response["Body"].iter_chunks(fs.CHUNK):
                        digest.update(chunk)
                        _write_all(fd, chunk)
                        written += len(chunk)
                except (*s3.sdk_errors(), OSError) as exc:
                    if isinstance(exc, OSError) and not _is_network_error(exc):
                        raise
                    raise _StreamBroken(exc)
                if written != response.get("ContentLength", written):
                    raise _StreamBroken(OSError(f"body ended after {written} of {response.get('ContentLength')} bytes"))
                change = self._finish_file(fd, entry, response, written, digest.hexdigest())
            finally:
                os.close(fd)
        except OSError as exc:
            raise RatBackupError(f"cannot write {final} for {entry.bucket}/{entry.key}: {exc.strerror}",
                                 path=final, bucket=entry.bucket, key=entry.key)
        finally:
            response["Body"].close()
        _move_into_place(tmp, final)
        return entry, change

    def _fetch_ranged(self, entry, tmp, final):
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
        except OSError as exc:
            raise RatBackupError(f"cannot write {final} for {entry.bucket}/{entry.key}: {exc.strerror}",
                                 path=final, bucket=entry.bucket, key=entry.key)
        try:
            # pread for the hash needs the descriptor readable too; reopen it so.
            with open(tmp, "rb") as reader:
                fetched = ranged.fetch(self.sides.src_http, entry, fd, reader.fileno(), s3.PART_SIZE)
            if fetched is None:
                return None, _deleted(entry)
            response, written, sha256 = fetched
            change = self._finish_file(fd, entry, response, written, sha256)
        except OSError as exc:
            raise RatBackupError(f"cannot write {final} for {entry.bucket}/{entry.key}: {exc.strerror}",
                                 path=final, bucket=entry.bucket, key=entry.key)
        finally:
            os.close(fd)
        _move_into_place(tmp, final)
        return entry, change

    def _finish_file(self, fd, entry, response, written, sha256):
        """Before the temp file ``fd`` is closed: make it durable (unless one syncfs does that at
        the end), check its size, record what the GET said in ``entry`` and give the file the
        object's LastModified as mtime; returns the change seen since the listing or None."""
        if not self.sync_at_end:
            os.fsync(fd)
        size = os.fstat(fd).st_size
        if size != written:
            raise OSError(5, f"file is {size} bytes after writing {written}")
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
        # Through the descriptor (futimens), in whole nanoseconds: no lookup of the path again.
        stamp = entry.modified_ms * 1000000
        os.utime(fd, ns=(stamp, stamp))
        return change


def _write_all(fd, data):
    """Write all of ``data``: a raw write may write part of it (a full disk) without raising;
    the next one then raises."""
    done = os.write(fd, data)
    if done == len(data):
        return
    view = memoryview(data)
    while done < len(data):
        more = os.write(fd, view[done:])
        if not more:
            raise OSError(5, f"write stopped after {done} of {len(data)} bytes")
        done += more


def _move_into_place(tmp, final):
    try:
        os.replace(tmp, final)
    except OSError as exc:
        raise RatBackupError(f"cannot move {final} into place: {exc.strerror}", path=final)
