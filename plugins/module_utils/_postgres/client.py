# -*- coding: utf-8 -*-
# Copyright: rat.backup contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""PostgreSQL's own client programs (psql, pg_dump, pg_restore) matched to one server.

The client chosen by the server's version (the rules are ``_postgres/versions.py``), argv/environment
building (the password only ever travels in the environment, with --no-password), a psql session
driven over pipes (used to hold the dump's snapshot), the exact row counts of tables, and the
pg_restore commands that read an archive.
"""

from __future__ import annotations

import json
import os
import shutil

from ansible_collections.rat.backup.plugins.module_utils._postgres import docker_exec
from ansible_collections.rat.backup.plugins.module_utils.errors import RatBackupError
from ansible_collections.rat.backup.plugins.module_utils._postgres.archive import parse_toc
from ansible_collections.rat.backup.plugins.module_utils._postgres.programs import STDERR_LIMIT, Runner, communicate, first_lines
from ansible_collections.rat.backup.plugins.module_utils._postgres.versions import (
    CLIENT_ROOT, choose_bin_dir, installed_clients, parse_client_version, server_key, version_key)


# --- argv and environment ---------------------------------------------------------------------

class Connection:
    """Where and as whom to connect; builds the argv part and the environment of every client."""

    def __init__(self, host, port, user, database, password=None, connect_timeout=10, ssl_mode="prefer",
                 ca_cert=None):
        self.host = host
        self.port = port
        self.user = user
        self.database = database
        self.password = password
        self.connect_timeout = connect_timeout
        self.ssl_mode = ssl_mode
        self.ca_cert = ca_cert

    @classmethod
    def from_params(cls, params):
        return cls(params["host"], params["port"], params["user"], params["database"],
                   params.get("password"), params["connect_timeout"], params.get("ssl_mode") or "prefer",
                   params.get("ca_cert"))

    def describe(self, database=None):
        return f"{self.host}:{self.port} as {self.user} (database {database or self.database})"

    def args(self, database=None):
        # --no-password: a missing or wrong password fails at once instead of waiting on a prompt.
        return ["--host", self.host, "--port", str(self.port), "--username", self.user,
                "--dbname", database or self.database, "--no-password"]

    def env(self):
        env = {
            "PGCONNECT_TIMEOUT": str(self.connect_timeout),
            "PGAPPNAME": "rat.backup",
            "PGCLIENTENCODING": "UTF8",
            # Client messages untranslated: pg_restore's stderr is parsed.
            "LC_MESSAGES": "C",
        }
        if self.password:
            env["PGPASSWORD"] = self.password
        # TLS through libpq's environment, like the password: the same for psql, pg_dump and
        # pg_restore, on the host or inside a container (where ca_cert is a path in the container).
        env["PGSSLMODE"] = self.ssl_mode
        if self.ca_cert:
            env["PGSSLROOTCERT"] = self.ca_cert
        return env


def program(bin_dir, name):
    return os.path.join(bin_dir, name) if bin_dir else name


def dump_argv(bin_dir, conn, fmt, snapshot=None, compress=None, jobs=1, schemas=(), exclude_schemas=(),
              tables=(), exclude_tables=(), exclude_table_data=(), directory=None):
    argv = [program(bin_dir, "pg_dump")] + conn.args() + [f"--format={fmt}"]
    if compress is not None:
        argv.append(f"--compress={compress}")
    if jobs > 1:
        argv.append(f"--jobs={jobs}")
    if snapshot:
        argv.append(f"--snapshot={snapshot}")
    for option, values in (("--schema", schemas), ("--exclude-schema", exclude_schemas), ("--table", tables),
                           ("--exclude-table", exclude_tables), ("--exclude-table-data", exclude_table_data)):
        argv.extend(f"{option}={value}" for value in values)
    if directory:
        argv.append(f"--file={directory}")
    return argv


class PsqlSession:
    """A psql process driven over its pipes: send SQL, read the rows back (unaligned, tuples only).

    Each batch ends with an ``\\echo`` of a unique marker, so the reply is known to be complete
    without a timeout. ON_ERROR_STOP makes psql exit at the first error; its stderr explains it.
    """

    def __init__(self, runner, psql, conn, database=None):
        self.conn = conn
        self.database = database or conn.database
        argv = [psql, "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1"] + conn.args(self.database)
        self._proc = runner.spawn(argv, conn.env(), stdin=True)
        self._frames = self._proc.frames()
        self._pending = b""
        self._stderr = bytearray()
        self._batches = 0

    def query(self, sql):
        """Run ``sql`` (one or more statements) and return the output lines."""
        self._batches += 1
        marker = f"__rat.backup.{os.getpid()}.{self._batches}__"
        try:
            self._proc.write(f"{sql}\n\\echo {marker}\n".encode())
        except OSError:
            self._fail()
        lines = []
        while True:
            line = self._readline()
            if line is None:
                self._fail()
            if line == marker:
                return lines
            lines.append(line)

    def close(self):
        """End the session (an open transaction is rolled back by psql's exit)."""
        try:
            self._proc.write(b"\\q\n")
        except OSError:
            pass
        self._proc.close_stdin()
        for _stream, _data in self._frames:
            pass
        self._proc.wait()

    def _readline(self):
        while b"\n" not in self._pending:
            try:
                stream, data = next(self._frames)
            except StopIteration:
                return None
            if stream == docker_exec.STDOUT:
                self._pending += data
            elif len(self._stderr) < STDERR_LIMIT:
                self._stderr += data
        line, self._pending = self._pending.split(b"\n", 1)
        return line.decode("utf-8", "replace")

    def _fail(self):
        for stream, data in self._frames:
            if stream == docker_exec.STDERR and len(self._stderr) < STDERR_LIMIT:
                self._stderr += data
        self._proc.wait()
        raise RatBackupError(first_lines(self._stderr.decode("utf-8", "replace")))


# --- the client programs of one server ----------------------------------------------------------

_VERSION_SQL = "SELECT current_setting('server_version_num'), current_setting('server_version');"


class Client:
    """PostgreSQL's client programs matched to one server, on the host or in a container."""

    def __init__(self, runner, conn, explicit_bin_dir=None, client_root=CLIENT_ROOT):
        self.runner = runner
        self.conn = conn
        self.explicit_bin_dir = explicit_bin_dir
        self.client_root = client_root
        self.bin_dir = None
        self.server_version = None
        self.server = None
        self.client_version = None
        # An open session keep() holds for the next open_session(): one connection less.
        self._kept = None

    def _first_psql(self):
        """Any psql can ask the server its version; prefer the explicit dir, then the newest install."""
        if self.runner.in_container or self.explicit_bin_dir:
            return program(self.explicit_bin_dir, "psql")
        installed = installed_clients(self.client_root)
        if installed:
            return os.path.join(installed[max(installed)], "psql")
        found = shutil.which("psql")
        if not found:
            raise RatBackupError("psql not found: install the PostgreSQL client (Debian/Ubuntu: postgresql-client) "
                                 "or set client_bin_dir")
        return found

    def open_session(self, database=None):
        """Connect, learn the server version, pick the client binaries; returns the open session
        (the one keep() holds, when it still answers the same server)."""
        database = database or self.conn.database
        kept = self._take_kept(database)
        if kept is not None:
            return kept
        session = PsqlSession(self.runner, self._first_psql(), self.conn, database)
        try:
            rows = session.query(_VERSION_SQL)
        except RatBackupError as exc:
            where = "in container " + repr(self.runner.container) + " " if self.runner.in_container else ""
            raise RatBackupError(f"cannot connect to PostgreSQL {where}at {self.conn.describe(database)}: {exc.msg}",
                                 host=self.conn.host, port=self.conn.port)
        num, self.server_version = rows[0].split("|", 1)
        self.server = server_key(num)
        if self.runner.in_container:
            self.bin_dir = self.explicit_bin_dir
        else:
            self.bin_dir = choose_bin_dir(self.server, installed_clients(self.client_root), self.explicit_bin_dir)
        self.client_version = self.version_of("pg_dump")
        return session

    def keep(self, session):
        """Hold ``session`` (open_session's, idle: no transaction open, nothing SET) for the next
        open_session() of its database instead of closing it: a backup's check hands its session to
        the dump's snapshot. ``release()`` closes it when nothing takes it."""
        self.release()
        self._kept = session

    def release(self):
        """Close the session keep() holds, if any."""
        kept, self._kept = self._kept, None
        if kept is not None:
            kept.close()

    def _take_kept(self, database):
        """The kept session for ``database`` once it has answered the question a new session is asked
        first (its connection lives, the same server); else None, the kept session closed."""
        kept, self._kept = self._kept, None
        if kept is None:
            return None
        if kept.database == database:
            try:
                version = kept.query(_VERSION_SQL)[0].split("|", 1)[1]
            except (RatBackupError, IndexError):
                # Ended meanwhile (a restart, idle_session_timeout): connected again below.
                version = None
            if version is not None and version == self.server_version:
                return kept
        kept.close()
        return None

    def version_of(self, name):
        rc, out, err = communicate(self.runner.spawn([program(self.bin_dir, name), "--version"], {}))
        if rc != 0:
            where = f"in container {self.runner.container!r}" if self.runner.in_container else "on this host"
            raise RatBackupError(f"{program(self.bin_dir, name)} is not usable {where}: {first_lines(err or out.decode())}; "
                                 "install the PostgreSQL client or set client_bin_dir")
        return parse_client_version(out.decode())

    def read_toc(self, src, name=None):
        """Parse the archive's table of contents; fails on anything pg_restore cannot read.

        ``name`` is what errors call the archive when ``src`` is a private copy of it.
        """
        rc, out, err = self._archive_command(["--list"], src)
        src = name or src
        if rc != 0:
            raise RatBackupError(f"{src} is not a readable pg_dump archive: {first_lines(err)}", src=src)
        toc = parse_toc(out.decode("utf-8", "replace"))
        if toc["header"].get("Format") not in ("CUSTOM", "DIRECTORY", "TAR"):
            raise RatBackupError(f"{src} is not a pg_dump archive (format {toc['header'].get('Format')!r})", src=src)
        return toc

    def read_through(self, src, name=None):
        """Read and decompress every data block (output discarded): finds truncation and corruption."""
        rc, _out, err = self._archive_command(["--file=/dev/null"], src)
        src = name or src
        if rc != 0:
            raise RatBackupError(f"{src} is damaged (pg_restore cannot read all of it): {first_lines(err)}", src=src)

    def archive_problem(self, src, quick=False):
        """None when pg_restore reads the archive (its TOC when ``quick``, else every data block),
        else its last complaint; for verifying a backup, where a damaged dump is a finding."""
        rc, _out, err = self._archive_command(["--list"] if quick else ["--file=/dev/null"], src)
        return None if rc == 0 else (err.strip().splitlines() or [f"exit code {rc}"])[-1]

    def table_data(self, src, table):
        """pg_restore's SQL (COPY blocks) for the rows of ``table`` (``name`` or ``schema.name``) in the archive."""
        schema, dummy, name = table.rpartition(".")
        rc, out, err = self._archive_command(["--data-only", "--file=-", f"--table={name}"] + ([f"--schema={schema}"] if schema else []),
                                             src)
        if rc != 0:
            raise RatBackupError(f"pg_restore cannot read table {table} of {src}: {first_lines(err)}", src=src)
        return out.decode("utf-8", "replace")

    def _archive_command(self, args, src):
        argv = [program(self.bin_dir, "pg_restore")] + args
        env = {"LC_MESSAGES": "C"}
        if self.runner.in_container:
            if os.path.isdir(src):
                raise RatBackupError("a directory-format archive cannot be streamed into a container: "
                                     "use a custom-format dump in container mode", src=src)
            return communicate(self.runner.spawn(argv, env, stdin=True), stdin_path=src)
        return communicate(self.runner.spawn(argv + [src], env))


def archive_reader(server_version, explicit_bin_dir=None, client_root=CLIENT_ROOT):
    """A Client on this host that reads archives dumped from a server of ``server_version``, with
    no server to ask: pg_restore from ``explicit_bin_dir``, the same major, the newest install or
    PATH; None when there is no pg_restore at all."""
    if explicit_bin_dir:
        if not os.access(program(explicit_bin_dir, "pg_restore"), os.X_OK):
            raise RatBackupError(f"client_bin_dir {explicit_bin_dir} holds no executable pg_restore")
        bin_dir = explicit_bin_dir
    else:
        try:
            server = version_key(str(server_version or ""))
        except ValueError:
            server = None
        bin_dir = choose_bin_dir(server, installed_clients(client_root))
        if bin_dir is None and not shutil.which("pg_restore"):
            return None
    client = Client(Runner(), None, explicit_bin_dir, client_root)
    client.bin_dir = bin_dir
    return client


# --- exact row counts ----------------------------------------------------------------------------

def _literal(text):
    return "'" + text.replace("'", "''") + "'"


def row_count_sql(tables=None, oids=None):
    """psql batch counting the exact rows of tables named ``schema.table`` (those that exist) or
    given by OID; ``\\gexec`` runs each generated SELECT, format()'s %L/%I quote server-side."""
    if oids is not None:
        where = "c.oid = ANY ('{" + ",".join(str(int(o)) for o in oids) + "}'::oid[])"
    else:
        names = ",".join(_literal(t) for t in sorted(tables))
        where = "c.relkind IN ('r', 'p') AND n.nspname || '.' || c.relname = ANY (ARRAY[" + names + "]::text[])"
    return ("SELECT format('SELECT json_build_object(''t'', %L, ''n'', count(*)) FROM ONLY %I.%I', "
            "n.nspname || '.' || c.relname, n.nspname, c.relname) "
            "FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE " + where + " ORDER BY 1 \\gexec")


def count_rows(session, tables=None, oids=None):
    """{schema.table: exact rows} in the session's transaction (the dump's snapshot, or now)."""
    if not (tables if oids is None else oids):
        return {}
    counts = {}
    for row in session.query(row_count_sql(tables, oids)):
        item = json.loads(row)
        counts[item["t"]] = item["n"]
    return dict(sorted(counts.items()))
