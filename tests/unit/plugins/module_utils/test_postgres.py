# -*- coding: utf-8 -*-
# Copyright: rat.backup contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

import os
import sys

import pytest

from ansible_collections.rat.backup.plugins.module_utils import fs, postgres, postgres_restore
from ansible_collections.rat.backup.plugins.module_utils._postgres import docker_exec
from ansible_collections.rat.backup.plugins.module_utils._postgres import archive as pg_archive
from ansible_collections.rat.backup.plugins.module_utils._postgres import client as pg_client
from ansible_collections.rat.backup.plugins.module_utils._postgres import dump as dumping
from ansible_collections.rat.backup.plugins.module_utils._postgres import programs
from ansible_collections.rat.backup.plugins.module_utils._postgres import versions as pg_versions
from ansible_collections.rat.backup.plugins.module_utils._postgres_restore import restore as restoring
from ansible_collections.rat.backup.plugins.module_utils.errors import RatBackupError

SECRET = "s3cr3t-pw"

TOC = """;
; Archive created at 2026-11-25 18:09:20 UTC
;     dbname: rat
;     TOC Entries: 11
;     Compression: -1
;     Dump Version: 1.14-0
;     Format: CUSTOM
;     Dumped from database version: 15.18 (Debian 15.18-0+deb12u1)
;     Dumped by pg_dump version: 15.18 (Debian 15.18-0+deb12u1)
;
;
; Selected TOC Entries:
;
214; 1259 16386 TABLE public a rat
215; 1259 16393 TABLE public odd name rat
216; 1259 16403 VIEW public vb rat
3350; 0 16386 TABLE DATA public a rat
3351; 0 16393 TABLE DATA public odd name rat
3205; 2606 16392 CONSTRAINT public a a_pkey rat
3206; 2606 16398 FK CONSTRAINT public b b_id_fkey rat
3400; 0 0 ENCODING - ENCODING
"""


def conn(password=SECRET):
    return pg_client.Connection("db.example", 5433, "rat", "ratdb", password, 7)


def test_connection_argspec_when_copied_is_independent_and_password_no_log():
    spec = postgres.connection_argspec()
    spec["host"]["default"] = "changed"
    assert postgres.connection_argspec()["host"]["default"] == "127.0.0.1"
    assert spec["password"]["no_log"] is True


def test_connection_env_when_password_given_carries_it_and_argv_does_not():
    c = conn()
    assert c.env()["PGPASSWORD"] == SECRET
    assert c.env()["PGCONNECT_TIMEOUT"] == "7"
    assert SECRET not in " ".join(c.args())
    assert "--no-password" in c.args()


def test_connection_env_when_no_password_has_no_pgpassword():
    assert "PGPASSWORD" not in conn(None).env()


def test_connection_argspec_takes_community_postgresql_names():
    spec = postgres.connection_argspec()
    assert spec["host"]["aliases"] == ["login_host"] and spec["port"]["aliases"] == ["login_port"]
    assert spec["user"]["aliases"] == ["login_user"] and spec["password"]["aliases"] == ["login_password"]
    assert "db" in spec["database"]["aliases"]
    assert spec["ssl_mode"]["default"] == "prefer" and "verify-full" in spec["ssl_mode"]["choices"]


def test_connection_env_when_tls_verified_names_mode_and_root_cert():
    params = {"host": "db.example", "port": 5433, "user": "rat", "database": "ratdb", "password": SECRET,
              "connect_timeout": 7, "ssl_mode": "verify-full", "ca_cert": "/etc/rat/ca.pem"}
    env = postgres.Connection.from_params(params).env()
    assert (env["PGSSLMODE"], env["PGSSLROOTCERT"]) == ("verify-full", "/etc/rat/ca.pem")
    assert "/etc/rat/ca.pem" not in " ".join(postgres.Connection.from_params(params).args())


def test_connection_env_when_tls_not_asked_prefers_it_without_root_cert():
    env = conn().env()
    assert env["PGSSLMODE"] == "prefer" and "PGSSLROOTCERT" not in env


def test_dump_argv_when_all_options_given_is_exact():
    argv = pg_client.dump_argv("/usr/lib/postgresql/15/bin", conn(), "directory", snapshot="0003-1B-1", compress=6,
                               jobs=3, schemas=["public"], exclude_schemas=["tmp"], tables=["public.my table"],
                               exclude_tables=["x"], exclude_table_data=["public.runs"], directory="/b/d.partial")
    assert argv == [
        "/usr/lib/postgresql/15/bin/pg_dump", "--host", "db.example", "--port", "5433", "--username", "rat",
        "--dbname", "ratdb", "--no-password", "--format=directory", "--compress=6", "--jobs=3",
        "--snapshot=0003-1B-1", "--schema=public", "--exclude-schema=tmp", "--table=public.my table",
        "--exclude-table=x", "--exclude-table-data=public.runs", "--file=/b/d.partial",
    ]
    assert all(SECRET not in a for a in argv)


def test_dump_argv_when_in_container_without_bin_dir_uses_path():
    assert pg_client.dump_argv(None, conn(), "custom")[0] == "pg_dump"


def test_restore_argv_when_defaults_matches_rat_and_is_single_transaction():
    argv = restoring.restore_argv("/bin15", conn(), "/b/rat.dump")
    assert argv == ["/bin15/pg_restore", "--host", "db.example", "--port", "5433", "--username", "rat",
                    "--dbname", "ratdb", "--no-password", "--clean", "--if-exists", "--no-owner",
                    "--single-transaction", "/b/rat.dump"]


def test_restore_argv_when_parallel_without_clean_from_stdin():
    argv = restoring.restore_argv(None, conn(), None, clean=False, if_exists=True, no_owner=False,
                                  single_transaction=False, jobs=4, database="other")
    assert argv == ["pg_restore", "--host", "db.example", "--port", "5433", "--username", "rat", "--dbname", "other",
                    "--no-password", "--jobs=4"]


@pytest.mark.parametrize("text,key", [("15.18", (15,)), ("9.6.24", (9, 6)), ("16", (16,)), ("17beta1", (17,))])
def test_version_key_when_parsed_gives_major(text, key):
    assert pg_versions.version_key(text) == key


@pytest.mark.parametrize("num,key", [(150018, (15,)), (90624, (9, 6)), (170000, (17,))])
def test_server_key_when_version_num_gives_major(num, key):
    assert pg_versions.server_key(num) == key


def test_parse_client_version_when_debian_banner_gives_version():
    assert pg_versions.parse_client_version("pg_dump (PostgreSQL) 15.18 (Debian 15.18-0+deb12u1)\n") == "15.18"


def test_parse_client_version_when_garbage_raises():
    with pytest.raises(RatBackupError, match="cannot read the client version"):
        pg_versions.parse_client_version("bash: pg_dump: not found")


def test_choose_bin_dir_when_matching_major_installed_uses_it():
    installed = {(13,): "/pg/13/bin", (15,): "/pg/15/bin", (16,): "/pg/16/bin"}
    assert pg_versions.choose_bin_dir((15,), installed) == "/pg/15/bin"


def test_choose_bin_dir_when_no_match_uses_newest():
    assert pg_versions.choose_bin_dir((14,), {(13,): "/pg/13/bin", (16,): "/pg/16/bin"}) == "/pg/16/bin"


def test_choose_bin_dir_when_explicit_wins_and_none_installed_means_path():
    assert pg_versions.choose_bin_dir((15,), {(15,): "/pg/15/bin"}, "/opt/pg/bin") == "/opt/pg/bin"
    assert pg_versions.choose_bin_dir((15,), {}) is None


def test_installed_clients_when_debian_layout_finds_majors(tmp_path):
    for major in ("13", "15", "9.6"):
        bin_dir = tmp_path / major / "bin"
        bin_dir.mkdir(parents=True)
        (bin_dir / "pg_dump").write_text("#!/bin/sh\n")
        (bin_dir / "pg_dump").chmod(0o755)
    (tmp_path / "nodump" / "bin").mkdir(parents=True)
    found = pg_versions.installed_clients(str(tmp_path))
    assert found == {(13,): str(tmp_path / "13" / "bin"), (15,): str(tmp_path / "15" / "bin"),
                     (9, 6): str(tmp_path / "9.6" / "bin")}


def test_check_client_new_enough_when_older_names_both_versions_and_fixes():
    with pytest.raises(RatBackupError) as err:
        pg_versions.check_client_new_enough("pg_dump", "13.4", "16.2", (16,), in_container=False)
    assert "pg_dump 13.4 is older than the server (PostgreSQL 16.2)" in err.value.msg
    assert "postgresql-client-16" in err.value.msg and "container" in err.value.msg
    assert err.value.details == {"client_version": "13.4", "server_version": "16.2"}


def test_check_client_new_enough_when_same_or_newer_passes():
    pg_versions.check_client_new_enough("pg_dump", "15.18", "15.2", (15,), in_container=False)
    pg_versions.check_client_new_enough("pg_dump", "16.1", "15.2", (15,), in_container=True)


def test_parse_toc_when_pg_restore_list_gives_header_and_entries():
    toc = pg_archive.parse_toc(TOC)
    assert toc["header"]["Format"] == "CUSTOM"
    assert toc["header"]["Dumped by pg_dump version"] == "15.18 (Debian 15.18-0+deb12u1)"
    kinds = [e["kind"] for e in toc["entries"]]
    assert kinds == ["TABLE", "TABLE", "VIEW", "TABLE DATA", "TABLE DATA", "CONSTRAINT", "FK CONSTRAINT",
                     "ENCODING"]
    assert toc["entries"][1]["name"] == "odd name"


def test_table_data_oids_when_toc_parsed_are_the_tables_with_rows():
    assert pg_archive.table_data_oids(pg_archive.parse_toc(TOC)) == [16386, 16393]


def test_toc_summary_when_toc_parsed_counts_kinds_and_lists_tables():
    summary = pg_archive.toc_summary(pg_archive.parse_toc(TOC))
    assert summary["counts"]["TABLE DATA"] == 2
    assert summary["tables"] == ["public.a", "public.odd name"]
    assert summary["format"] == "CUSTOM" and summary["source_database"] == "rat"
    assert summary["entries"] == 8


def test_parse_restore_errors_when_stderr_has_two_errors_keeps_context():
    stderr = (
        "pg_restore: while PROCESSING TOC:\n"
        "pg_restore: from TOC entry 216; 1259 16403 VIEW vb rat\n"
        "pg_restore: error: could not execute query: ERROR:  relation \"vb\" already exists\n"
        "Command was: CREATE VIEW public.vb AS\n"
        "pg_restore: error: could not execute query: ERROR:  schema \"x\" already exists\n"
        "pg_restore: warning: errors ignored on restore: 2\n"
    )
    errors = restoring.parse_restore_errors(stderr)
    assert errors == ['could not execute query: ERROR:  relation "vb" already exists\nCommand was: CREATE VIEW public.vb AS',
                      'could not execute query: ERROR:  schema "x" already exists']
    assert restoring.unexpected_errors(errors, [r'schema "x" already exists']) == errors[:1]
    assert restoring.unexpected_errors(errors, [r"already exists"]) == []


class FakeProcess:
    """Replays canned output frames; records what was written to stdin."""

    def __init__(self, frames, rc=0):
        self._frames = list(frames)
        self.rc = rc
        self.written = bytearray()
        self.stdin_closed = False
        self.argv = ["fake"]

    def write(self, data):
        self.written += data

    def close_stdin(self):
        self.stdin_closed = True

    def frames(self):
        yield from self._frames

    def wait(self, timeout=60.0):
        return self.rc

    def kill(self):
        self.stdin_closed = True


class FakeRunner:
    in_container = False
    container = None

    def __init__(self, proc):
        self.proc = proc
        self.spawned = []

    def spawn(self, argv, env, stdin=False):
        self.spawned.append((argv, env, stdin))
        return self.proc


def test_communicate_when_sink_given_streams_stdout_and_bounds_stderr(tmp_path):
    got = []
    proc = FakeProcess([(docker_exec.STDOUT, b"ab"), (docker_exec.STDERR, b"x" * (programs.STDERR_LIMIT + 10)),
                        (docker_exec.STDOUT, b"cd")], rc=3)
    rc, out, err = programs.communicate(proc, sink=got.append)
    assert (rc, out, got) == (3, b"", [b"ab", b"cd"])
    assert len(err) == programs.STDERR_LIMIT
    assert proc.stdin_closed


def test_communicate_when_stdin_path_given_feeds_whole_file(tmp_path):
    src = tmp_path / "in.bin"
    src.write_bytes(os.urandom(3 * fs.CHUNK + 5))
    proc = FakeProcess([(docker_exec.STDOUT, b"ok")])
    rc, out, _err = programs.communicate(proc, stdin_path=str(src))
    assert (rc, out) == (0, b"ok")
    assert bytes(proc.written) == src.read_bytes()


def test_host_process_when_command_reads_stdin_round_trips_bytes(tmp_path):
    src = tmp_path / "in.bin"
    src.write_bytes(os.urandom(300000))
    proc = programs.HostProcess([sys.executable, "-c", "import sys; sys.stdout.buffer.write(sys.stdin.buffer.read())"],
                                {}, stdin=True)
    rc, out, err = programs.communicate(proc, stdin_path=str(src))
    assert (rc, out, err) == (0, src.read_bytes(), "")


def test_host_process_when_program_missing_raises_clear_error():
    with pytest.raises(RatBackupError, match="cannot run /nonexistent/pg_dump"):
        programs.HostProcess(["/nonexistent/pg_dump"], {})


def test_psql_session_when_queried_sends_sql_with_marker_and_returns_rows():
    proc = FakeProcess([(docker_exec.STDOUT, f"150018|15.18 (Debian)\n__rat.backup.{os.getpid()}.1__\n".encode())])
    runner = FakeRunner(proc)
    session = pg_client.PsqlSession(runner, "/pg/bin/psql", conn())
    assert session.query("SELECT 1;") == ["150018|15.18 (Debian)"]
    argv, env, stdin = runner.spawned[0]
    assert argv[:7] == ["/pg/bin/psql", "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1"]
    assert env["PGPASSWORD"] == SECRET and SECRET not in " ".join(argv) and stdin
    assert proc.written.decode() == f"SELECT 1;\n\\echo __rat.backup.{os.getpid()}.1__\n"


def test_psql_session_when_psql_exits_raises_its_stderr():
    proc = FakeProcess([(docker_exec.STDERR, b'psql: error: FATAL:  password authentication failed for user "rat"\n')],
                       rc=2)
    session = pg_client.PsqlSession(FakeRunner(proc), "psql", conn())
    with pytest.raises(RatBackupError, match="password authentication failed"):
        session.query("SELECT 1;")


def _spec(tmp_path, **kw):
    return postgres.DumpSpec(str(tmp_path / "rat.dump"), **kw)


def test_dump_spec_when_jobs_with_custom_format_raises(tmp_path):
    with pytest.raises(RatBackupError, match="jobs > 1 needs format=directory"):
        _spec(tmp_path, jobs=2).validate(False)


def test_dump_spec_when_directory_format_in_container_raises(tmp_path):
    with pytest.raises(RatBackupError, match="not supported in container mode"):
        _spec(tmp_path, fmt="directory").validate(True)


def test_dump_spec_when_parent_missing_raises_naming_it(tmp_path):
    with pytest.raises(RatBackupError, match="does not exist: .*/missing"):
        postgres.DumpSpec(str(tmp_path / "missing" / "rat.dump")).validate(False)


@pytest.mark.parametrize("level", [-1, 10])
def test_dump_spec_when_compress_out_of_range_raises(tmp_path, level):
    with pytest.raises(RatBackupError, match="compress must be between 0 and 9"):
        _spec(tmp_path, compress=level).validate(False)


def test_restore_spec_when_parallel_in_single_transaction_raises(tmp_path):
    (tmp_path / "a.dump").write_bytes(b"PGDMP")
    with pytest.raises(RatBackupError, match="set single_transaction: false"):
        postgres_restore.RestoreSpec(str(tmp_path / "a.dump"), jobs=2).validate(False)


def test_restore_spec_when_src_missing_raises_naming_it(tmp_path):
    with pytest.raises(RatBackupError, match="src .*nope.dump does not exist"):
        postgres_restore.RestoreSpec(str(tmp_path / "nope.dump")).validate(False)


def test_restore_spec_when_bad_regex_or_checksum_raises(tmp_path):
    (tmp_path / "a.dump").write_bytes(b"PGDMP")
    with pytest.raises(RatBackupError, match="invalid regular expression"):
        postgres_restore.RestoreSpec(str(tmp_path / "a.dump"), allowed_warnings=["("]).validate(False)
    with pytest.raises(RatBackupError, match="64 hex digits"):
        postgres_restore.RestoreSpec(str(tmp_path / "a.dump"), expected_sha256="abc").validate(False)


def test_restore_spec_when_directory_in_container_raises(tmp_path):
    with pytest.raises(RatBackupError, match="cannot be restored in container mode"):
        postgres_restore.RestoreSpec(str(tmp_path)).validate(True)


class RowSession:
    """Answers every query with one row; remembers the SQL."""

    def __init__(self, row):
        self.row = row
        self.sql = []

    def query(self, sql):
        self.sql.append(sql)
        return [self.row]


def test_export_snapshot_when_read_takes_time_from_the_exporting_statement():
    session = RowSession("00000003-0000001B-1|1795804200.25|1795804200.5")
    times = iter([1795804200.0, 1795804201.0])
    snapshot, point = dumping.export_snapshot(session, clock=lambda: next(times))
    assert snapshot == "00000003-0000001B-1"
    assert "pg_export_snapshot(), extract(epoch FROM statement_timestamp()), extract(epoch FROM clock_timestamp())" \
        in session.sql[0]
    assert point["time_epoch"] == 1795804200.5 and point["earliest_epoch"] == 1795804200.25
    assert point["time"] == "2026-11-27T18:30:00.500000Z"
    assert point["host_offset"] == [-0.5, 0.5]
    assert "00000003-0000001B-1" in point["obtained"]


def test_clock_reading_when_read_gives_server_minus_host_interval():
    times = iter([100.0, 100.002])
    reading = dumping.clock_reading(RowSession("102.001"), clock=lambda: next(times))
    assert reading["host_offset"] == pytest.approx([1.999, 2.001])


class CheckedClient:
    """A Client whose server answers ``row`` to the clock query, with ``server``'s major version."""

    class runner:  # pylint: disable=invalid-name
        in_container = False

    def __init__(self, server=(15,), client_version="15.18"):
        self.server, self.server_version, self.client_version = server, ".".join(map(str, server)), client_version
        self.session = RowSession("102.001")
        self.session.closed = False

    def open_session(self):
        self.session.close = lambda: setattr(self.session, "closed", True)
        return self.session


def test_check_when_server_answers_returns_versions_and_clock_and_closes_the_session():
    client = CheckedClient()
    times = iter([100.0, 100.002])
    checked = postgres.check(client, clock=lambda: next(times))
    assert checked["server_version"] == "15" and checked["client_version"] == "15.18"
    assert checked["clock"]["host_offset"] == pytest.approx([1.999, 2.001])
    assert client.session.closed


def test_check_when_pg_dump_older_than_server_refuses_and_closes_the_session():
    client = CheckedClient(server=(16,), client_version="15.18")
    with pytest.raises(RatBackupError, match="pg_dump"):
        postgres.check(client)
    assert client.session.closed and client.session.sql == []


class KeptSession:
    """A psql session open_session() may hand out again: answers the version query, or fails as a
    session whose connection ended."""

    def __init__(self, database="ratdb", alive=True):
        self.database, self.alive = database, alive
        self.sent, self.closed = [], False

    def query(self, sql):
        self.sent.append(sql)
        if not self.alive:
            raise RatBackupError("server closed the connection unexpectedly")
        return ["150018|15.18"]

    def close(self):
        self.closed = True


@pytest.mark.parametrize("kept, reused", [(KeptSession(), True), (KeptSession(alive=False), False),
                                          (KeptSession(database="other"), False)],
                         ids=["alive", "ended", "other_database"])
def test_open_session_when_a_session_is_kept_then_it_is_reused_only_while_it_answers(kept, reused, monkeypatch):
    opened = []
    monkeypatch.setattr(pg_client, "PsqlSession", lambda *a: opened.append(KeptSession()) or opened[-1])
    monkeypatch.setattr(pg_client.Client, "version_of", lambda self, name: "15.18")
    client = pg_client.Client(FakeRunner(None), conn(), explicit_bin_dir="/opt/pg/bin")
    client.server_version = "15.18"
    client.keep(kept)
    session = client.open_session()
    assert (session is kept) == reused and len(opened) == (0 if reused else 1)
    assert kept.closed != reused and client.server_version == "15.18"
    # Handed out once: the next session is a new one.
    assert client.open_session() is not kept


def test_check_when_kept_then_the_session_is_left_open_to_the_client():
    client = CheckedClient()
    kept = []
    client.keep = kept.append
    postgres.check(client, clock=iter([100.0, 100.002]).__next__, keep=True)
    assert kept == [client.session] and not client.session.closed
