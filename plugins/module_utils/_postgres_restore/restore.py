# -*- coding: utf-8 -*-
# Copyright: rat.backup contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""pg_restore of an archive the manifest vouches for (private to the ``postgres_restore`` face, which
the pg_restore module calls): the archive's sha256 checked, a private copy read, the database made
when asked, pg_restore's error messages told apart from the ones allowed; some tables or schemas
only through ``_postgres_restore/selective.py``.
"""

from __future__ import annotations

import os
import re
import shutil
import time

from ansible_collections.rat.backup.plugins.module_utils import fs, integrity
from ansible_collections.rat.backup.plugins.module_utils.errors import RatBackupError
from ansible_collections.rat.backup.plugins.module_utils.masking import mask_argv
from ansible_collections.rat.backup.plugins.module_utils.postgres import communicate, count_rows, first_lines, program, toc_summary
from ansible_collections.rat.backup.plugins.module_utils._postgres_restore import selective


def restore_argv(bin_dir, conn, src=None, clean=True, if_exists=True, no_owner=True, single_transaction=True,
                 jobs=1, database=None):
    """pg_restore into ``database``; without ``src`` the archive is read from stdin."""
    argv = [program(bin_dir, "pg_restore")] + conn.args(database)
    if clean:
        argv.append("--clean")
        if if_exists:
            argv.append("--if-exists")
    if no_owner:
        argv.append("--no-owner")
    if single_transaction:
        argv.append("--single-transaction")
    if jobs > 1:
        argv.append(f"--jobs={jobs}")
    if src:
        argv.append(src)
    return argv


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
    """Some tables or schemas of ``archive`` (_postgres_restore/selective.py), with the target's rows for --diff."""
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
