# -*- coding: utf-8 -*-
# Copyright: rat.backup contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""pg_dump at an exported snapshot (private to the ``postgres`` face, which the pg_dump module calls).

The snapshot's moment is read from PostgreSQL in the exporting statement (the consistency point);
row counts are taken at that snapshot; the dump is written beside ``dest`` and renamed into place,
or hard-linked to the previous dump when only its creation time differs.
"""

from __future__ import annotations

import os
import shutil
import time

from ansible_collections.rat.backup.plugins.module_utils import consistency, fs
from ansible_collections.rat.backup.plugins.module_utils.errors import RatBackupError
from ansible_collections.rat.backup.plugins.module_utils.masking import mask_argv
from ansible_collections.rat.backup.plugins.module_utils._postgres.archive import same_archive_but_creation_time, table_data_oids
from ansible_collections.rat.backup.plugins.module_utils._postgres.client import count_rows, dump_argv
from ansible_collections.rat.backup.plugins.module_utils._postgres.programs import first_lines
from ansible_collections.rat.backup.plugins.module_utils._postgres.versions import check_client_new_enough


def _remove(path):
    if os.path.isdir(path) and not os.path.islink(path):
        shutil.rmtree(path)
    elif os.path.lexists(path):
        os.unlink(path)


def _link_in_place(link_dest, partial):
    """Make ``partial`` a hard link to ``link_dest`` (atomically); False when the filesystem refuses."""
    staged = partial + ".link"
    _remove(staged)
    try:
        os.link(link_dest, staged)
    except OSError:
        # Another filesystem, link count limit, no links allowed: the new dump is as good, only bigger.
        return False
    try:
        os.rename(staged, partial)
    except OSError:
        _remove(staged)
        raise
    return True


def _timed(session, sql, clock):
    before = clock()
    row = session.query(sql)[0].split("|")
    return before, row, clock()


def clock_reading(session, clock=time.time):
    """PostgreSQL's clock against this host's: {"time", "host_offset": [lo, hi]} (server minus host, seconds)."""
    before, row, after = _timed(session, "SELECT extract(epoch FROM clock_timestamp());", clock)
    server = float(row[0])
    return {"time": consistency.iso_epoch(server),
            "host_offset": list(consistency.offset_interval(before, server, after))}


def export_snapshot(session, clock=time.time):
    """Export the open REPEATABLE READ transaction's snapshot; returns (snapshot id, consistency point).

    The snapshot is taken when this statement starts running: after statement_timestamp() (when the
    statement arrived) and before clock_timestamp() is evaluated in the same row. now() would be
    the BEGIN's time, before commits that the snapshot still sees. So every commit the dump holds
    ended before ``time``; ``earliest`` bounds the snapshot from below.
    """
    before, row, after = _timed(
        session, "SELECT pg_export_snapshot(), extract(epoch FROM statement_timestamp()), "
                 "extract(epoch FROM clock_timestamp());", clock)
    snapshot, earliest, latest = row[0], float(row[1]), float(row[2])
    return snapshot, {
        "time": consistency.iso_epoch(latest), "time_epoch": latest,
        "earliest": consistency.iso_epoch(earliest), "earliest_epoch": earliest,
        "obtained": "PostgreSQL clock_timestamp() read in the statement that exported snapshot " + snapshot +
                    " (REPEATABLE READ); the snapshot lies between earliest and time",
        "host_offset": list(consistency.offset_interval(before, latest, after)),
    }


def check(client, clock=time.time, keep=False):
    """What a backup checks of PostgreSQL before it starts: the server answers these credentials,
    pg_dump is new enough for it, and its clock against this host's (for the S3 clock skew). With
    ``keep``, a check that passed leaves its session to ``client`` (Client.keep) for start(): it ran
    autocommit SELECTs only, so it holds no transaction, lock or setting."""
    session = client.open_session()
    try:
        check_client_new_enough("pg_dump", client.client_version, client.server_version, client.server,
                                client.runner.in_container)
        checked = {"server_version": client.server_version, "client_version": client.client_version,
                   "clock": clock_reading(session, clock)}
    except BaseException:
        session.close()
        raise
    if keep:
        client.keep(session)
    else:
        session.close()
    return checked


class DumpSpec:
    """What to dump where (module options, validated)."""

    def __init__(self, dest, fmt="custom", jobs=1, compress=None, schemas=(), exclude_schemas=(), tables=(),
                 exclude_tables=(), exclude_table_data=(), link_dest=None):
        self.dest = dest
        self.fmt = fmt
        self.link_dest = link_dest
        self.jobs = jobs
        self.compress = compress
        self.filters = dict(schemas=list(schemas), exclude_schemas=list(exclude_schemas), tables=list(tables),
                            exclude_tables=list(exclude_tables), exclude_table_data=list(exclude_table_data))

    def validate(self, in_container):
        if self.jobs < 1:
            raise RatBackupError(f"jobs must be 1 or more, got {self.jobs}")
        if self.jobs > 1 and self.fmt != "directory":
            raise RatBackupError("jobs > 1 needs format=directory (pg_dump writes custom-format archives with one process)")
        if self.compress is not None and not 0 <= self.compress <= 9:
            raise RatBackupError(f"compress must be between 0 and 9, got {self.compress}")
        if self.fmt == "directory" and in_container:
            raise RatBackupError("format=directory is not supported in container mode (the dump would be written "
                                 "inside the container): use format=custom, which is streamed to this host")
        parent = os.path.dirname(os.path.abspath(self.dest)) or "/"
        if not os.path.isdir(parent):
            raise RatBackupError(f"the directory of dest does not exist: {parent}", dest=self.dest)
        if not os.access(parent, os.W_OK | os.X_OK):
            raise RatBackupError(f"the directory of dest is not writable: {parent}", dest=self.dest)
        if self.fmt == "custom" and os.path.isdir(self.dest):
            raise RatBackupError(f"dest {self.dest} is a directory; format=custom writes a file", dest=self.dest)
        if self.fmt == "directory" and os.path.lexists(self.dest) and not os.path.isdir(self.dest):
            raise RatBackupError(f"dest {self.dest} is a file; format=directory writes a directory", dest=self.dest)
        if self.link_dest:
            if self.fmt != "custom":
                raise RatBackupError("link_dest needs format=custom (a directory-format dump is not linked)",
                                     link_dest=self.link_dest)
            if os.path.isdir(self.link_dest):
                raise RatBackupError(f"link_dest {self.link_dest} is a directory; it must be a previous custom-format "
                                     "dump file", link_dest=self.link_dest)


def dump(client, spec, check_mode=False, now=time.monotonic, clock=time.time):
    """pg_dump at an exported snapshot, row counts at that snapshot, written to dest atomically."""
    if check_mode:
        return plan(client, spec, clock)
    return start(client, spec, now, clock).finish()


def plan(client, spec, clock=time.time):
    """Check mode: the server answers, the client is new enough; the planned argv and PostgreSQL's clock."""
    spec.validate(client.runner.in_container)
    session = client.open_session()
    try:
        result = _opened(client, spec)
        result["cmd"] = mask_argv(_argv(client, spec), [client.conn.password])
        result["clock"] = clock_reading(session, clock)
        return result
    finally:
        session.close()


def start(client, spec, now=time.monotonic, clock=time.time):
    """Export a snapshot and start pg_dump at it; returns the RunningDump (its ``point`` is known now,
    while pg_dump writes; RunningDump.finish() or abort() ends it). The snapshot's session is the one
    the check kept (check's ``keep``) when it still answers, else a new one."""
    try:
        spec.validate(client.runner.in_container)
    except BaseException:
        client.release()
        raise
    started = now()
    partial = spec.dest + ".partial"
    session = client.open_session()
    try:
        result = _opened(client, spec)
        session.query("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY;")
        snapshot, result["consistency_point"] = export_snapshot(session, clock)
        argv = _argv(client, spec, snapshot)
        result["cmd"] = mask_argv(argv, [client.conn.password])
        result["snapshot"] = snapshot
        _remove(partial)
        # Custom format: stdout is the file itself (no copy through Python on this host); the
        # directory format writes its directory (--file).
        proc = client.runner.spawn_to_file(argv, client.conn.env(), partial if spec.fmt == "custom" else None)
    except BaseException:
        # A pg_dump that could not start may leave the empty file opened for it.
        _remove(partial)
        session.close()
        raise
    return RunningDump(client, spec, session, proc, result, partial, now, started)


def _opened(client, spec):
    check_client_new_enough("pg_dump", client.client_version, client.server_version, client.server,
                            client.runner.in_container)
    return {"dest": spec.dest, "format": spec.fmt, "server_version": client.server_version,
            "client_version": client.client_version}


def _argv(client, spec, snapshot=None):
    return dump_argv(client.bin_dir, client.conn, spec.fmt, snapshot=snapshot, compress=spec.compress, jobs=spec.jobs,
                     directory=spec.dest + ".partial" if spec.fmt == "directory" else None, **spec.filters)


class RunningDump:
    """pg_dump running at an exported snapshot (start()): ``point`` is the consistency point,
    ``pid`` pg_dump's process on this host (None in a container). The session holding the snapshot
    stays open until finish() (row counts at the snapshot, dest in place) or abort(). capture.py
    finishes it as soon as pg_dump has exited, while the bucket mirror runs, and asks again (the same
    result) once the mirror has ended; one thread at a time uses it."""

    def __init__(self, client, spec, session, proc, result, partial, now, started):
        self.client = client
        self.spec = spec
        self.session = session
        self.proc = proc
        self.result = result
        self.partial = partial
        self.now = now
        self.started = started
        self.pid = proc.pid
        self.point = result["consistency_point"]
        # finish()'s result once it succeeded, or what ended it; placed: dest (and then its result)
        # was put in place, so abort() removes them.
        self.dumped = None
        self.error = None
        self.placed = False

    def exited(self):
        """True once pg_dump has exited successfully (its dump can be finished), False while it runs;
        raises failure() once it has failed. Never blocks."""
        failure = self.failure()
        if failure is not None:
            raise failure
        return self.proc.poll() == 0

    def failure(self):
        """pg_dump's error once it has exited unsuccessfully, or the error that ended finish(); None
        while pg_dump runs or after success."""
        if self.error is not None:
            return self.error
        rc = self.proc.poll()
        if rc in (None, 0):
            return None
        return _failed(*self.proc.wait())

    def finish(self):
        """Wait for pg_dump; the archive checked and hashed, rows counted at the snapshot, dest in place
        (or linked to link_dest), the result written beside it. On failure nothing is left at dest and
        the error names the dump. Once finished, the same result again."""
        if self.dumped is None:
            if self.error is not None:
                raise self.error
            try:
                self.dumped = self._finish()
            except BaseException as exc:
                self.error = exc
                raise
        return self.dumped

    def _finish(self):
        spec, result, partial = self.spec, self.result, self.partial
        try:
            try:
                rc, err = self.proc.wait()
                if rc != 0:
                    raise _failed(rc, err)
                try:
                    result.update(_file_written(partial) if spec.fmt == "custom" else _directory_written(partial))
                    toc = self.client.read_toc(partial)
                    result["row_counts"] = count_rows(self.session, oids=table_data_oids(toc))
                    self.session.query("COMMIT;")
                    if spec.link_dest:
                        result["linked"] = _link_if_same(spec.link_dest, partial, result)
                    _replace(partial, spec.dest)
                    self.placed = True
                    result["duration"] = round(self.now() - self.started, 3)
                    # The result travels with the dump: backup_run commit reads it from disk, next to
                    # the objects' manifest, instead of getting it back through the controller.
                    fs.write_json_atomic(result_path(spec.dest), result)
                except RatBackupError as exc:
                    raise RatBackupError(f"cannot finish the dump {spec.dest}: {exc.msg}", **exc.details)
                except OSError as exc:
                    raise RatBackupError(f"cannot finish the dump {spec.dest}: {exc}")
            except BaseException:
                self.proc.kill()
                self._remove_dump()
                raise
        finally:
            self._close_session()
        return result

    def abort(self):
        """Stop pg_dump (terminated and reaped, or its exec's connection closed), remove the partial
        dump or the finished one with its result, end the session (the snapshot is released). True
        when pg_dump was still running."""
        try:
            return self.proc.kill()
        finally:
            self._remove_dump()
            self._close_session()

    def _remove_dump(self):
        _remove(self.partial)
        if self.placed:
            _remove(result_path(self.spec.dest))
            _remove(self.spec.dest)
            self.placed = False

    def _close_session(self):
        if self.session is not None:
            self.session, session = None, self.session
            session.close()


def _failed(rc, err):
    return RatBackupError(f"pg_dump failed (exit {rc}): {first_lines(err, 10)}", rc=rc)


def result_path(dest):
    """Where dump() leaves its result (JSON) beside the dump ``dest``."""
    return dest + ".json"


def _file_written(partial):
    """Size and SHA-256 of the finished archive, read back once it is on disk (fsynced)."""
    with open(partial, "rb") as handle:
        os.fsync(handle.fileno())
        size = os.fstat(handle.fileno()).st_size
    return {"size": size, "sha256": fs.sha256_file(partial)}


def _link_if_same(link_dest, partial, result):
    """Replace the new dump by a hard link to ``link_dest`` when only the creation time differs."""
    if not os.path.isfile(link_dest) or os.path.islink(link_dest):
        return False
    old_sha256 = same_archive_but_creation_time(partial, link_dest)
    if old_sha256 is None or not _link_in_place(link_dest, partial):
        return False
    result["sha256"] = old_sha256
    return True


def _directory_written(partial):
    os.chmod(partial, 0o700)
    files = {}
    size = 0
    for name in sorted(os.listdir(partial)):
        path = os.path.join(partial, name)
        os.chmod(path, 0o600)
        with open(path, "rb") as handle:
            os.fsync(handle.fileno())
        files[name] = fs.sha256_file(path)
        size += os.path.getsize(path)
    fs.fsync_dir(partial)
    return {"size": size, "files": files}


def _replace(partial, dest):
    """Put the finished dump in place of dest; a previous dest stays until the new one is complete."""
    if os.path.isdir(partial) and os.path.isdir(dest):
        old = f"{dest}.replaced.{os.getpid()}"
        os.rename(dest, old)
        os.rename(partial, dest)
        shutil.rmtree(old)
    else:
        os.rename(partial, dest)
    fs.fsync_dir(os.path.dirname(os.path.abspath(dest)))
