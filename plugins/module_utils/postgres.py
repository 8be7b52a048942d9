# -*- coding: utf-8 -*-
# Copyright: rat.backup contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The PostgreSQL face: what the modules (and ``compare``) call; ``_postgres/`` is private to it.

What lives here: the connection options (declared once, documented by the ``rat.backup.postgres``
doc fragment), ``client_from_params``, and the dump (at an exported snapshot whose moment is read from
PostgreSQL in the exporting statement, the consistency point; linked to the
previous dump when only its creation time differs) and restore procedures. The client itself
(versions, argv, psql session) is ``_postgres/client.py``; client programs run on the host or in a
container through ``_postgres/programs.py`` (and ``_postgres/docker_exec.py``); reading an archive
without a server is ``_postgres/archive.py``.
"""

from __future__ import annotations

import copy
import hashlib
import os
import re
import shutil
import time

from ansible_collections.rat.backup.plugins.module_utils import consistency, fs, integrity
from ansible_collections.rat.backup.plugins.module_utils._postgres import selective
from ansible_collections.rat.backup.plugins.module_utils.errors import RatBackupError
from ansible_collections.rat.backup.plugins.module_utils.masking import mask_argv
from ansible_collections.rat.backup.plugins.module_utils._postgres.archive import (
    same_archive_but_creation_time, table_data_oids, toc_summary)
from ansible_collections.rat.backup.plugins.module_utils._postgres.client import (
    Client, Connection, check_client_new_enough, count_rows, dump_argv, restore_argv)
# Faced for backup_verify (an archive read with no server).
from ansible_collections.rat.backup.plugins.module_utils._postgres.client import archive_reader  # pylint: disable=unused-import
from ansible_collections.rat.backup.plugins.module_utils._postgres.programs import Runner, communicate, first_lines

SSL_MODES = ("disable", "allow", "prefer", "require", "verify-ca", "verify-full")

# Aliases and the TLS options carry community.postgresql's names, so its users' habits work.
_CONNECTION_ARGSPEC = dict(
    host=dict(type="str", default="127.0.0.1", aliases=["login_host"]),
    port=dict(type="int", default=5432, aliases=["login_port"]),
    user=dict(type="str", default="rat", aliases=["login_user"]),
    password=dict(type="str", no_log=True, aliases=["login_password"]),
    database=dict(type="str", default="rat", aliases=["db", "login_db"]),
    ssl_mode=dict(type="str", default="prefer", choices=list(SSL_MODES)),
    ca_cert=dict(type="str", aliases=["ssl_rootcert"]),
    container=dict(type="str"),
    docker_host=dict(type="str"),
    connect_timeout=dict(type="int", default=10),
    client_bin_dir=dict(type="path"),
)


def connection_argspec():
    """The connection options every PostgreSQL module shares (fresh copy, safe to extend)."""
    return copy.deepcopy(_CONNECTION_ARGSPEC)


def client_from_params(params):
    """The Client for a module's connection options (host or container mode)."""
    runner = Runner(params.get("container"), params.get("docker_host"))
    return Client(runner, Connection.from_params(params), params.get("client_bin_dir"))


def selection_from_params(params):
    """A selective restore's Selection from pg_restore's options; None restores the whole archive."""
    if not params["tables"] and not params["schemas"]:
        if params["data_only"] or params["with_referenced"] or params["with_dependencies"]:
            raise RatBackupError("data_only, with_referenced and with_dependencies apply to a selective restore: "
                                 "set tables or schemas")
        return None
    return selective.Selection(params["tables"], params["schemas"], params["data_only"], params["with_referenced"],
                               params["with_dependencies"])


# --- pg_restore's messages -----------------------------------------------------------------------

def parse_restore_errors(stderr):
    """Each ``pg_restore: error:`` message with the context lines that follow it ("Command was: ...")."""
    errors = []
    for line in stderr.splitlines():
        if line.startswith("pg_restore: error: "):
            errors.append(line[len("pg_restore: error: "):])
        elif line.startswith("pg_restore: "):
            continue
        elif errors and line.strip():
            errors[-1] += "\n" + line
    return errors


def unexpected_errors(errors, allowed_patterns):
    """The errors no ``allowed_patterns`` regex matches (re.search)."""
    compiled = [re.compile(p) for p in allowed_patterns]
    return [e for e in errors if not any(p.search(e) for p in compiled)]


# --- dump ---------------------------------------------------------------------------------------

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
    spec.validate(client.runner.in_container)
    started = now()
    session = client.open_session()
    try:
        check_client_new_enough("pg_dump", client.client_version, client.server_version, client.server,
                                client.runner.in_container)
        result = {
            "dest": spec.dest, "format": spec.fmt, "server_version": client.server_version,
            "client_version": client.client_version,
        }
        partial = spec.dest + ".partial"
        planned = dump_argv(client.bin_dir, client.conn, spec.fmt, compress=spec.compress, jobs=spec.jobs,
                            directory=partial if spec.fmt == "directory" else None, **spec.filters)
        if check_mode:
            result["cmd"] = mask_argv(planned, [client.conn.password])
            result["clock"] = clock_reading(session, clock)
            return result
        session.query("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY;")
        snapshot, result["consistency_point"] = export_snapshot(session, clock)
        argv = dump_argv(client.bin_dir, client.conn, spec.fmt, snapshot=snapshot, compress=spec.compress,
                         jobs=spec.jobs, directory=partial if spec.fmt == "directory" else None, **spec.filters)
        result["cmd"] = mask_argv(argv, [client.conn.password])
        result["snapshot"] = snapshot
        _remove(partial)
        try:
            if spec.fmt == "custom":
                result.update(_dump_to_file(client, argv, partial))
            else:
                result.update(_dump_to_directory(client, argv, partial))
            toc = client.read_toc(partial)
            result["row_counts"] = count_rows(session, oids=table_data_oids(toc))
            session.query("COMMIT;")
            if spec.link_dest:
                result["linked"] = _link_if_same(spec.link_dest, partial, result)
            _replace(partial, spec.dest)
        except BaseException:
            _remove(partial)
            raise
    finally:
        session.close()
    result["duration"] = round(now() - started, 3)
    # The result travels with the dump: backup_run commit reads it from disk, next to the objects'
    # manifest, instead of getting it back through the controller.
    fs.write_json_atomic(result_path(spec.dest), result)
    return result


def result_path(dest):
    """Where dump() leaves its result (JSON) beside the dump ``dest``."""
    return dest + ".json"


def _dump_to_file(client, argv, partial):
    digest = hashlib.sha256()
    size = 0
    fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb", buffering=fs.CHUNK) as handle:
        def sink(data):
            nonlocal size
            handle.write(data)
            digest.update(data)
            size += len(data)
        rc, _out, err = communicate(client.runner.spawn(argv, client.conn.env()), sink=sink)
        if rc != 0:
            raise RatBackupError(f"pg_dump failed (exit {rc}): {first_lines(err, 10)}", rc=rc)
        handle.flush()
        os.fsync(handle.fileno())
    return {"size": size, "sha256": digest.hexdigest()}


def _link_if_same(link_dest, partial, result):
    """Replace the new dump by a hard link to ``link_dest`` when only the creation time differs."""
    if not os.path.isfile(link_dest) or os.path.islink(link_dest):
        return False
    old_sha256 = same_archive_but_creation_time(partial, link_dest)
    if old_sha256 is None or not _link_in_place(link_dest, partial):
        return False
    result["sha256"] = old_sha256
    return True


def _dump_to_directory(client, argv, partial):
    rc, _out, err = communicate(client.runner.spawn(argv, client.conn.env()))
    if rc != 0:
        raise RatBackupError(f"pg_dump failed (exit {rc}): {first_lines(err, 10)}", rc=rc)
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


# --- restore ------------------------------------------------------------------------------------

class RestoreSpec:
    """What to restore and how (module options, validated)."""

    def __init__(self, src, clean=True, if_exists=True, no_owner=True, single_transaction=True, jobs=1,
                 create_database=False, expected_sha256=None, allowed_warnings=(), maintenance_database="postgres",
                 work_dir=None, selection=None):
        self.src = src
        # selective.Selection (some tables or schemas); None restores the whole archive.
        self.selection = selection
        self.work_dir = work_dir
        self.clean = clean
        self.if_exists = if_exists
        self.no_owner = no_owner
        self.single_transaction = single_transaction
        self.jobs = jobs
        self.create_database = create_database
        self.expected_sha256 = expected_sha256.lower() if expected_sha256 else None
        self.allowed_warnings = list(allowed_warnings)
        self.maintenance_database = maintenance_database

    def validate(self, in_container):
        if self.jobs < 1:
            raise RatBackupError(f"jobs must be 1 or more, got {self.jobs}")
        if self.jobs > 1 and self.single_transaction:
            raise RatBackupError("jobs > 1 cannot run in a single transaction: set single_transaction: false to "
                                 "restore in parallel (then a failed restore is not rolled back)")
        for pattern in self.allowed_warnings:
            try:
                re.compile(pattern)
            except re.error as exc:
                raise RatBackupError(f"allowed_warnings: invalid regular expression {pattern!r}: {exc}")
        if self.selection is not None:
            self.selection.validate(self.jobs)
        if self.expected_sha256 and not re.fullmatch(r"[0-9a-f]{64}", self.expected_sha256):
            raise RatBackupError(f"expected_sha256 must be 64 hex digits, got {self.expected_sha256!r}")
        if not os.path.exists(self.src):
            raise RatBackupError(f"src {self.src} does not exist", src=self.src)
        if os.path.isdir(self.src):
            if self.expected_sha256:
                raise RatBackupError("expected_sha256 applies to a custom-format file, but src is a directory",
                                     src=self.src)
            if in_container:
                raise RatBackupError("a directory-format archive cannot be restored in container mode: use a "
                                     "custom-format dump", src=self.src)
        elif not os.access(self.src, os.R_OK):
            raise RatBackupError(f"src {self.src} is not readable", src=self.src)


def _database_exists(session, name):
    rows = session.query(
        f"SELECT count(*) FROM pg_database WHERE datname = convert_from(decode('{name.encode().hex()}', 'hex'), 'UTF8');")
    return rows == ["1"]


def restore(client, spec, check_mode=False, now=time.monotonic):
    """Verify the archive, then pg_restore it into the connection's database.

    With expected_sha256 every pg_restore run reads a private copy hashed while it was made, so
    the bytes restored are the bytes checked, whatever happens to src meanwhile.
    """
    spec.validate(client.runner.in_container)
    started = now()
    if check_mode or not spec.expected_sha256:
        if spec.expected_sha256:
            _refuse_unless_expected(spec, fs.sha256_file(spec.src, follow_symlinks=True))
        return _restore(client, spec, spec.src, check_mode, started, now)
    try:
        copy_dir, copy = integrity.private_copy(spec.src, spec.expected_sha256, spec.work_dir)
    except integrity.Mismatch as exc:
        _refuse_unless_expected(spec, exc.details["actual_sha256"])
    try:
        return _restore(client, spec, copy, check_mode, started, now)
    finally:
        shutil.rmtree(copy_dir, ignore_errors=True)


def _refuse_unless_expected(spec, actual):
    if actual != spec.expected_sha256:
        raise RatBackupError(f"{spec.src} does not match expected_sha256 (expected {spec.expected_sha256}, "
                             f"file has {actual}): refusing to restore it", src=spec.src, sha256=actual)


def _restore(client, spec, archive, check_mode, started, now):
    """pg_restore ``archive`` (src itself, or its checked private copy); messages name src."""
    database = client.conn.database
    create = False
    if spec.create_database:
        session = client.open_session(spec.maintenance_database)
        try:
            create = not _database_exists(session, database)
        finally:
            session.close()
    else:
        client.open_session().close()
    toc = client.read_toc(archive, spec.src)
    client.read_through(archive, spec.src)
    if spec.selection is not None:
        return _restore_selected(client, spec, archive, toc, create, check_mode, started, now)
    streamed = client.runner.in_container and spec.jobs == 1
    argv = restore_argv(client.bin_dir, client.conn, None if streamed else archive, spec.clean, spec.if_exists,
                        spec.no_owner, spec.single_transaction, spec.jobs)
    result = {
        "src": spec.src, "database": database, "database_created": create, "sha256_checked": spec.expected_sha256,
        "server_version": client.server_version, "client_version": client.client_version,
        "restored": toc_summary(toc), "cmd": mask_argv(argv, [client.conn.password]), "accepted_errors": [],
    }
    if check_mode:
        return result
    if create:
        _create_database(client, spec)
    if streamed:
        rc, _out, err = communicate(client.runner.spawn(argv, client.conn.env(), stdin=True), stdin_path=archive)
    elif client.runner.in_container:
        tmp_dir, inside = client.runner.copy_in(archive, "archive.dump")
        try:
            argv[-1] = inside
            rc, _out, err = communicate(client.runner.spawn(argv, client.conn.env()))
        finally:
            client.runner.remove(tmp_dir)
    else:
        rc, _out, err = communicate(client.runner.spawn(argv, client.conn.env()))
    errors = parse_restore_errors(err)
    if rc != 0:
        # In a single transaction the first error has already rolled everything back, so no
        # error can be "allowed" there.
        unexpected = errors if spec.single_transaction else unexpected_errors(errors, spec.allowed_warnings)
        if unexpected or not errors:
            rolled_back = " (rolled back: the database is as before)" if spec.single_transaction else \
                " (not atomic: the database may be partly restored)"
            raise RatBackupError(
                f"pg_restore into {database} failed{rolled_back}: {first_lines(chr(10).join(unexpected) or err, 10)}",
                rc=rc, errors=unexpected or [err.strip()], cmd=result["cmd"])
    result["accepted_errors"] = errors
    result["duration"] = round(now() - started, 3)
    return result


def _create_database(client, spec):
    session = client.open_session(spec.maintenance_database)
    try:
        session.query(f"CREATE DATABASE \"{client.conn.database.replace(chr(34), chr(34) * 2)}\";")
    finally:
        session.close()


def _restore_selected(client, spec, archive, toc, create, check_mode, started, now):
    """Some tables or schemas of ``archive`` (_postgres/selective.py), with the target's rows for --diff."""
    session = None if create else client.open_session()
    try:
        prepared = selective.Prepared(client, spec, archive, toc, session, new_database=create)
        found = prepared.found
        counted = [t for t in found["existing"] if t in found["rows"]]
        live_rows = count_rows(session, tables=counted) if session is not None else {}
    finally:
        if session is not None:
            session.close()
    result = {
        "src": spec.src, "database": client.conn.database, "database_created": create,
        "sha256_checked": spec.expected_sha256, "server_version": client.server_version,
        "client_version": client.client_version, "restored": toc_summary(dict(toc, entries=prepared.entries)),
        "selection": found, "cmd": [], "accepted_errors": [], "diff": selective.diff(found, live_rows),
    }
    if not check_mode:
        if create:
            _create_database(client, spec)
        result["cmd"] = prepared.restore()
        result["duration"] = round(now() - started, 3)
    return result
