# -*- coding: utf-8 -*-
# Copyright: rat.backup contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""PostgreSQL through its own client programs (psql, pg_dump, pg_restore), on the host or in a container.

What lives here: the connection options (declared once, documented by the ``rat.backup.postgres``
doc fragment), the choice of client version, argv/environment building (the password only ever
travels in the environment, with --no-password), one process interface over subprocess and
Docker exec, a psql session driven over pipes (used to hold the dump's snapshot), archive TOC
parsing, and the dump and restore procedures the modules call.
"""

from __future__ import annotations

import copy
import glob
import hashlib
import json
import os
import re
import selectors
import shutil
import subprocess
import threading
import time

from ansible_collections.rat.backup.plugins.module_utils import docker_exec
from ansible_collections.rat.backup.plugins.module_utils.errors import RatBackupError
from ansible_collections.rat.backup.plugins.module_utils.layout import fsync_dir

CLIENT_ROOT = "/usr/lib/postgresql"
MASK = "********"
_CHUNK = 1 << 20
# Error text kept from a client program: enough to explain any failure, bounded whatever it prints.
_STDERR_LIMIT = 256 * 1024

_CONNECTION_ARGSPEC = dict(
    host=dict(type="str", default="127.0.0.1"),
    port=dict(type="int", default=5432),
    user=dict(type="str", default="rat"),
    password=dict(type="str", no_log=True),
    database=dict(type="str", default="rat"),
    container=dict(type="str"),
    docker_host=dict(type="str"),
    connect_timeout=dict(type="int", default=10),
    client_bin_dir=dict(type="path"),
)


def connection_argspec():
    """The connection options every PostgreSQL module shares (fresh copy, safe to extend)."""
    return copy.deepcopy(_CONNECTION_ARGSPEC)


# --- versions ---------------------------------------------------------------------------------

def version_key(text):
    """'15.18' -> (15,), '9.6.24' -> (9, 6): the major version as PostgreSQL numbers it."""
    parts = [int(p) for p in re.findall(r"\d+", text)[:2]]
    if not parts:
        raise ValueError(text)
    return tuple(parts[:2]) if parts[0] < 10 else (parts[0],)


def server_key(version_num):
    """server_version_num (150018, 90624) -> major version key."""
    num = int(version_num)
    return (num // 10000,) if num >= 100000 else (num // 10000, num // 100 % 100)


def key_text(key):
    return ".".join(str(p) for p in key)


def parse_client_version(output):
    """'pg_dump (PostgreSQL) 15.18 (Debian 15.18-0+deb12u1)' -> '15.18'."""
    match = re.search(r"\(PostgreSQL\)\s+(\d+(?:\.\d+)*)", output)
    if not match:
        raise RatBackupError(f"cannot read the client version from {output.strip()!r}")
    return match.group(1)


def installed_clients(root=CLIENT_ROOT):
    """{major key: bin dir} of the Debian/Ubuntu client installs under ``root``."""
    found = {}
    for bin_dir in glob.glob(os.path.join(root, "*", "bin")):
        if os.access(os.path.join(bin_dir, "pg_dump"), os.X_OK):
            try:
                found[version_key(os.path.basename(os.path.dirname(bin_dir)))] = bin_dir
            except ValueError:
                continue
    return found


def choose_bin_dir(server, installed, explicit=None):
    """Client directory for a server of major ``server``: explicit, else the same major, else the newest.

    ``None`` means "whatever is on PATH". Whether the choice is new enough is checked separately,
    against the version the chosen pg_dump reports.
    """
    if explicit:
        return explicit
    if server in installed:
        return installed[server]
    if installed:
        return installed[max(installed)]
    return None


def check_client_new_enough(program, client_version, server_version, server, in_container):
    """pg_dump refuses (or worse, silently mis-dumps) servers newer than itself: fail before starting."""
    if version_key(client_version) >= server:
        return
    major = key_text(server)
    if in_container:
        fixes = (f"use a container whose {program} is PostgreSQL {major} or newer, or set client_bin_dir "
                 "to such a client inside the container")
    else:
        fixes = (f"install the PostgreSQL {major} client (Debian/Ubuntu: postgresql-client-{major}, which provides "
                 f"{CLIENT_ROOT}/{major}/bin), set client_bin_dir to a client >= {major}, or use container mode "
                 "(container) so the server's own client runs")
    raise RatBackupError(
        f"{program} {client_version} is older than the server (PostgreSQL {server_version}): {fixes}",
        client_version=client_version, server_version=server_version,
    )


# --- argv and environment ---------------------------------------------------------------------

class Connection:
    """Where and as whom to connect; builds the argv part and the environment of every client."""

    def __init__(self, host, port, user, database, password=None, connect_timeout=10):
        self.host = host
        self.port = port
        self.user = user
        self.database = database
        self.password = password
        self.connect_timeout = connect_timeout

    @classmethod
    def from_params(cls, params):
        return cls(params["host"], params["port"], params["user"], params["database"],
                   params.get("password"), params["connect_timeout"])

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
        return env


def mask(argv, secrets):
    """argv safe to return or log: every secret replaced wherever it appears."""
    secrets = [s for s in secrets if s]
    masked = []
    for arg in argv:
        for secret in secrets:
            arg = arg.replace(secret, MASK)
        masked.append(arg)
    return masked


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


# --- archive table of contents ------------------------------------------------------------------

_TOC_ENTRY = re.compile(r"^(\d+); (\d+) (\d+) (.*)$")
_TOC_HEADER = re.compile(r"^;\s+([A-Za-z][\w ]*?):\s+(.*)$")


def parse_toc(text):
    """``pg_restore --list`` output -> {"header": {...}, "entries": [{"id", "oid", "kind", "schema", "name"}]}.

    The kind is the leading run of upper-case words (TABLE DATA, FK CONSTRAINT, ...). Names
    containing spaces are kept whole; the owner (last word) is dropped when present.
    """
    header = {}
    entries = []
    for line in text.splitlines():
        match = _TOC_ENTRY.match(line)
        if match:
            words = match.group(4).split(" ")
            kind = []
            while words and re.fullmatch(r"[A-Z]+", words[0]):
                kind.append(words.pop(0))
            schema = words.pop(0) if words else "-"
            name_words = words[:-1] if len(words) > 1 else words
            entries.append({
                "id": int(match.group(1)),
                "oid": int(match.group(3)),
                "catalog": int(match.group(2)),
                "kind": " ".join(kind),
                "schema": schema,
                "name": " ".join(name_words),
            })
            continue
        match = _TOC_HEADER.match(line)
        if match:
            header[match.group(1).strip()] = match.group(2).strip()
    return {"header": header, "entries": entries}


def table_data_oids(toc):
    """OIDs of the tables whose rows the archive holds (their TABLE DATA entries carry the table's OID)."""
    return sorted({e["oid"] for e in toc["entries"] if e["kind"] == "TABLE DATA"})


def toc_summary(toc):
    """What a restore of this archive brings back: counts by kind and the tables."""
    counts = {}
    for entry in toc["entries"]:
        counts[entry["kind"]] = counts.get(entry["kind"], 0) + 1
    tables = sorted(f"{e['schema']}.{e['name']}" for e in toc["entries"] if e["kind"] == "TABLE")
    header = toc["header"]
    return {
        "format": header.get("Format"),
        "dumped_from": header.get("Dumped from database version"),
        "dumped_by": header.get("Dumped by pg_dump version"),
        "source_database": header.get("dbname"),
        "entries": len(toc["entries"]),
        "counts": dict(sorted(counts.items())),
        "tables": tables,
    }


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


def first_lines(text, limit=5):
    lines = [line for line in text.strip().splitlines() if line.strip()]
    return "; ".join(lines[:limit]) or "(no message)"


# --- processes --------------------------------------------------------------------------------

class HostProcess:
    """subprocess with the same interface as docker_exec.ExecProcess."""

    def __init__(self, argv, env, stdin=False):
        self.argv = list(argv)
        full_env = dict(os.environ)
        full_env.update(env)
        try:
            self._proc = subprocess.Popen(  # pylint: disable=consider-using-with
                self.argv, env=full_env, stdin=subprocess.PIPE if stdin else subprocess.DEVNULL,
                stdout=subprocess.PIPE, stderr=subprocess.PIPE, close_fds=True)
        except OSError as exc:
            raise RatBackupError(f"cannot run {self.argv[0]}: {exc.strerror}")

    def write(self, data):
        self._proc.stdin.write(data)
        self._proc.stdin.flush()

    def close_stdin(self):
        if self._proc.stdin:
            try:
                self._proc.stdin.close()
            except (OSError, ValueError):
                pass

    def frames(self):
        streams = {self._proc.stdout.fileno(): docker_exec.STDOUT, self._proc.stderr.fileno(): docker_exec.STDERR}
        with selectors.DefaultSelector() as selector:
            for fd in streams:
                selector.register(fd, selectors.EVENT_READ)
            while streams:
                for key, _events in selector.select():
                    data = os.read(key.fd, _CHUNK)
                    if not data:
                        selector.unregister(key.fd)
                        del streams[key.fd]
                        continue
                    yield streams[key.fd], data

    def wait(self, timeout=60.0):
        try:
            return self._proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise RatBackupError(f"{self.argv[0]} did not exit within {timeout:.0f}s after closing its output")
        finally:
            self._proc.stdout.close()
            self._proc.stderr.close()

    def kill(self):
        if self._proc.poll() is None:
            self._proc.kill()
            self._proc.wait()


class Runner:
    """Where the client programs run: the host (bin_dir on disk) or a container (Docker exec)."""

    def __init__(self, container=None, docker_host=None, api=None):
        self.container = container
        self.docker_host = docker_host
        self._api = api
        if container and api is None:
            self._api = docker_exec.connect(docker_host)
            docker_exec.require_running(self._api, container)

    @property
    def in_container(self):
        return bool(self.container)

    def spawn(self, argv, env, stdin=False):
        if self.container:
            return docker_exec.ExecProcess(self._api, self.container, argv, env, stdin=stdin)
        return HostProcess(argv, env, stdin=stdin)

    def copy_in(self, path, name):
        """Copy a local file into a fresh private directory of the container; returns (dir, path)."""
        rc, out, err = communicate(self.spawn(["mktemp", "-d", "/tmp/rat-backup.XXXXXXXX"], {}))
        if rc != 0:
            raise RatBackupError(f"cannot create a temporary directory in container {self.container!r}: {first_lines(err)}")
        tmp_dir = out.decode().strip()
        docker_exec.put_file(self._api, self.container, path, tmp_dir, name)
        return tmp_dir, f"{tmp_dir}/{name}"

    def remove(self, path):
        rc, _out, err = communicate(self.spawn(["rm", "-rf", "--", path], {}))
        if rc != 0:
            raise RatBackupError(f"cannot remove {path} in container {self.container!r}: {first_lines(err)}")


def communicate(proc, stdin_path=None, sink=None):
    """Run ``proc`` to the end: feed ``stdin_path`` (a file, streamed), send stdout to ``sink`` or collect it.

    Returns (exit code, stdout bytes (empty when a sink took it), stderr text). A program that
    stops reading early (pg_restore --list reads only the TOC) just ends the feeding.
    """
    feeder = None
    fed = {"error": None}
    if stdin_path is not None:
        def feed():
            try:
                with open(stdin_path, "rb") as handle:
                    while True:
                        chunk = handle.read(_CHUNK)
                        if not chunk:
                            break
                        proc.write(chunk)
            except (BrokenPipeError, ConnectionResetError, ValueError):
                # The command stopped reading (or its output is complete and stdin was closed).
                pass
            except OSError as exc:
                fed["error"] = exc
            finally:
                proc.close_stdin()
        feeder = threading.Thread(target=feed, daemon=True)
        feeder.start()
    out = bytearray()
    err = bytearray()
    try:
        for stream, data in proc.frames():
            if stream == docker_exec.STDOUT:
                if sink is not None:
                    sink(data)
                else:
                    out += data
            elif len(err) < _STDERR_LIMIT:
                err += data[:_STDERR_LIMIT - len(err)]
    except BaseException:
        proc.kill()
        raise
    # All output is in: whatever input the command left unread is not needed.
    proc.close_stdin()
    if feeder is not None:
        feeder.join()
    rc = proc.wait()
    if fed["error"] is not None:
        raise RatBackupError(f"cannot read {stdin_path}: {fed['error']}")
    return rc, bytes(out), err.decode("utf-8", "replace")


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
            elif len(self._stderr) < _STDERR_LIMIT:
                self._stderr += data
        line, self._pending = self._pending.split(b"\n", 1)
        return line.decode("utf-8", "replace")

    def _fail(self):
        for stream, data in self._frames:
            if stream == docker_exec.STDERR and len(self._stderr) < _STDERR_LIMIT:
                self._stderr += data
        self._proc.wait()
        raise RatBackupError(first_lines(self._stderr.decode("utf-8", "replace")))


# --- the client programs of one server ----------------------------------------------------------

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
        """Connect, learn the server version, pick the client binaries; returns the open session."""
        database = database or self.conn.database
        session = PsqlSession(self.runner, self._first_psql(), self.conn, database)
        try:
            rows = session.query("SELECT current_setting('server_version_num'), current_setting('server_version');")
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

    def version_of(self, name):
        rc, out, err = communicate(self.runner.spawn([program(self.bin_dir, name), "--version"], {}))
        if rc != 0:
            where = f"in container {self.runner.container!r}" if self.runner.in_container else "on this host"
            raise RatBackupError(f"{program(self.bin_dir, name)} is not usable {where}: {first_lines(err or out.decode())}; "
                                 "install the PostgreSQL client or set client_bin_dir")
        return parse_client_version(out.decode())

    def read_toc(self, src):
        """Parse the archive's table of contents; fails on anything pg_restore cannot read."""
        rc, out, err = self._archive_command(["--list"], src)
        if rc != 0:
            raise RatBackupError(f"{src} is not a readable pg_dump archive: {first_lines(err)}", src=src)
        toc = parse_toc(out.decode("utf-8", "replace"))
        if toc["header"].get("Format") not in ("CUSTOM", "DIRECTORY", "TAR"):
            raise RatBackupError(f"{src} is not a pg_dump archive (format {toc['header'].get('Format')!r})", src=src)
        return toc

    def read_through(self, src):
        """Read and decompress every data block (output discarded): finds truncation and corruption."""
        rc, _out, err = self._archive_command(["--file=/dev/null"], src)
        if rc != 0:
            raise RatBackupError(f"{src} is damaged (pg_restore cannot read all of it): {first_lines(err)}", src=src)

    def _archive_command(self, args, src):
        argv = [program(self.bin_dir, "pg_restore")] + args
        env = {"LC_MESSAGES": "C"}
        if self.runner.in_container:
            if os.path.isdir(src):
                raise RatBackupError("a directory-format archive cannot be streamed into a container: "
                                     "use a custom-format dump in container mode", src=src)
            return communicate(self.runner.spawn(argv, env, stdin=True), stdin_path=src)
        return communicate(self.runner.spawn(argv + [src], env))


# --- dump ---------------------------------------------------------------------------------------

def _remove(path):
    if os.path.isdir(path) and not os.path.islink(path):
        shutil.rmtree(path)
    elif os.path.lexists(path):
        os.unlink(path)


def _sha256_file(path):
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(_CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


# --- archives equal but for their creation time ------------------------------------------------

_ARCHIVE_MAGIC = b"PGDMP"
_FORMAT_CUSTOM = 1
# The header fields that differ between two dumps of unchanged data: the struct tm of the creation
# time, in the order WriteHead writes them, with the values a real struct tm can hold.
_CREATION_TIME_FIELDS = (("tm_sec", 0, 61), ("tm_min", 0, 59), ("tm_hour", 0, 23), ("tm_mday", 1, 31),
                         ("tm_mon", 0, 11), ("tm_year", 0, 1100), ("tm_isdst", -1, 1))


def _read_archive_int(head, pos, int_size):
    """One integer as pg_dump's WriteInt stores it: a sign byte, then int_size bytes little-endian."""
    field = head[pos:pos + 1 + int_size]
    if len(field) != 1 + int_size or field[0] not in (0, 1):
        return None
    value = int.from_bytes(field[1:], "little")
    return -value if field[0] else value


def creation_time_span(head):
    """(start, end) offsets of the creation-time fields in the header of a custom-format archive.

    ``head`` is the start of the file. None when it is not a custom-format archive this code can
    read with certainty (other format, version before 1.4, which had no creation time, or fields
    that are not a plausible time): such archives are never treated as equal.
    """
    if len(head) < 11 or head[:5] != _ARCHIVE_MAGIC:
        return None
    version = tuple(head[5:8])
    int_size, fmt = head[8], head[10]
    if fmt != _FORMAT_CUSTOM or version < (1, 4, 0) or not 1 <= int_size <= 8:
        return None
    # From archive version 1.15 (PostgreSQL 16) the compression is one algorithm byte; before, an int.
    start = 12 if version >= (1, 15, 0) else 11 + 1 + int_size
    pos = start
    for _name, low, high in _CREATION_TIME_FIELDS:
        value = _read_archive_int(head, pos, int_size)
        if value is None or not low <= value <= high:
            return None
        pos += 1 + int_size
    return start, pos


def same_archive_but_creation_time(new_path, old_path):
    """SHA-256 of ``old_path`` when it equals ``new_path`` byte for byte outside the creation time; else None.

    pg_dump writes the time it started into the archive header, so dumps of unchanged data are
    never byte-identical; everything else (TOC, data blocks, which the server produces in the same
    order for unchanged tables) is compared exactly.
    """
    if os.path.getsize(new_path) != os.path.getsize(old_path):
        return None
    digest = hashlib.sha256()
    with open(new_path, "rb") as new, open(old_path, "rb") as old:
        new_chunk, old_chunk = new.read(_CHUNK), old.read(_CHUNK)
        span = creation_time_span(new_chunk)
        if span is None or span != creation_time_span(old_chunk):
            return None
        start, end = span
        if new_chunk[:start] != old_chunk[:start] or new_chunk[end:] != old_chunk[end:]:
            return None
        while old_chunk:
            digest.update(old_chunk)
            new_chunk, old_chunk = new.read(_CHUNK), old.read(_CHUNK)
            if new_chunk != old_chunk:
                return None
    return digest.hexdigest()


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


def _count_rows(session, oids):
    """Exact row counts of the tables ``oids`` in the session's (snapshot) transaction."""
    if not oids:
        return {}
    oid_list = ",".join(str(int(o)) for o in oids)
    rows = session.query(
        "SELECT format('SELECT json_build_object(''t'', %L, ''n'', count(*)) FROM ONLY %I.%I', "
        "n.nspname || '.' || c.relname, n.nspname, c.relname) "
        "FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
        f"WHERE c.oid = ANY ('{{{oid_list}}}'::oid[]) ORDER BY 1 \\gexec"
    )
    counts = {}
    for row in rows:
        item = json.loads(row)
        counts[item["t"]] = item["n"]
    return dict(sorted(counts.items()))


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


def dump(client, spec, check_mode=False, now=time.monotonic):
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
            result["cmd"] = mask(planned, [client.conn.password])
            return result
        session.query("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY;")
        snapshot = session.query("SELECT pg_export_snapshot();")[0]
        argv = dump_argv(client.bin_dir, client.conn, spec.fmt, snapshot=snapshot, compress=spec.compress,
                         jobs=spec.jobs, directory=partial if spec.fmt == "directory" else None, **spec.filters)
        result["cmd"] = mask(argv, [client.conn.password])
        result["snapshot"] = snapshot
        _remove(partial)
        try:
            if spec.fmt == "custom":
                result.update(_dump_to_file(client, argv, partial))
            else:
                result.update(_dump_to_directory(client, argv, partial))
            toc = client.read_toc(partial)
            result["row_counts"] = _count_rows(session, table_data_oids(toc))
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
    return result


def _dump_to_file(client, argv, partial):
    digest = hashlib.sha256()
    size = 0
    fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb", buffering=_CHUNK) as handle:
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
        files[name] = _sha256_file(path)
        size += os.path.getsize(path)
    fsync_dir(partial)
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
    fsync_dir(os.path.dirname(os.path.abspath(dest)))


# --- restore ------------------------------------------------------------------------------------

class RestoreSpec:
    """What to restore and how (module options, validated)."""

    def __init__(self, src, clean=True, if_exists=True, no_owner=True, single_transaction=True, jobs=1,
                 create_database=False, expected_sha256=None, allowed_warnings=(), maintenance_database="postgres"):
        self.src = src
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
    """Verify the archive, then pg_restore it into the connection's database."""
    spec.validate(client.runner.in_container)
    started = now()
    database = client.conn.database
    if spec.expected_sha256:
        actual = _sha256_file(spec.src)
        if actual != spec.expected_sha256:
            raise RatBackupError(f"{spec.src} does not match expected_sha256 (expected {spec.expected_sha256}, "
                                 f"file has {actual}): refusing to restore it", src=spec.src, sha256=actual)
    create = False
    if spec.create_database:
        session = client.open_session(spec.maintenance_database)
        try:
            create = not _database_exists(session, database)
        finally:
            session.close()
    else:
        client.open_session().close()
    toc = client.read_toc(spec.src)
    client.read_through(spec.src)
    streamed = client.runner.in_container and spec.jobs == 1
    argv = restore_argv(client.bin_dir, client.conn, None if streamed else spec.src, spec.clean, spec.if_exists,
                        spec.no_owner, spec.single_transaction, spec.jobs)
    result = {
        "src": spec.src, "database": database, "database_created": create,
        "server_version": client.server_version, "client_version": client.client_version,
        "restored": toc_summary(toc), "cmd": mask(argv, [client.conn.password]), "accepted_errors": [],
    }
    if check_mode:
        return result
    if create:
        session = client.open_session(spec.maintenance_database)
        try:
            session.query(f"CREATE DATABASE \"{database.replace(chr(34), chr(34) * 2)}\";")
        finally:
            session.close()
    if streamed:
        rc, _out, err = communicate(client.runner.spawn(argv, client.conn.env(), stdin=True), stdin_path=spec.src)
    elif client.runner.in_container:
        tmp_dir, inside = client.runner.copy_in(spec.src, "archive.dump")
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


def client_from_params(params):
    """The Client for a module's connection options (host or container mode)."""
    runner = Runner(params.get("container"), params.get("docker_host"))
    return Client(runner, Connection.from_params(params), params.get("client_bin_dir"))
