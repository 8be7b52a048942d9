# -*- coding: utf-8 -*-
# Copyright: rat.backup contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""capture: the dump and the mirror of one backup at one consistency point, overlapped in one process.

The edges are faked where a server would be needed: PostgreSQL's session (the snapshot, row counts)
and pg_dump's argv (a shell script standing in for it, run as a real process on this host or as the
"container's" exec stream). The mirror is the real one on a real moto server with worker processes
(forked while pg_dump runs), or a stand-in that only calls its checkpoint."""

from __future__ import annotations

import hashlib
import json
import os
import threading
import time

import pytest
import yaml

boto3 = pytest.importorskip("boto3")
moto_server = pytest.importorskip("moto.server")

from ansible_collections.rat.backup.plugins.doc_fragments.postgres import ModuleDocFragment as PgDoc  # noqa: E402
from ansible_collections.rat.backup.plugins.doc_fragments.s3 import ModuleDocFragment as S3Doc  # noqa: E402
from ansible_collections.rat.backup.plugins.module_utils import capture, postgres  # noqa: E402
from ansible_collections.rat.backup.plugins.module_utils import fs  # noqa: E402
from ansible_collections.rat.backup.plugins.module_utils.errors import RatBackupError  # noqa: E402
from ansible_collections.rat.backup.plugins.module_utils.mirror import Mirror  # noqa: E402
from ansible_collections.rat.backup.plugins.module_utils._postgres import client as pg_client  # noqa: E402
from ansible_collections.rat.backup.plugins.module_utils._postgres import programs  # noqa: E402
from ansible_collections.rat.backup.plugins.module_utils._mirror.object_manifest import read_manifest  # noqa: E402
from ansible_collections.rat.backup.plugins.modules import backup_capture  # noqa: E402
# client and server are fixtures (the moto server of test_mirror_http), used by name.
from ansible_collections.rat.backup.tests.unit.plugins.module_utils.test_mirror_http import (  # noqa: E402,F401 pylint: disable=unused-import
    URL, client, fill, http, options, server)

ARCHIVE = b"PGDMP" + bytes(range(256)) * 64


class FakeSession:
    """The psql session holding the snapshot: exports it at this host's clock (+ ``ahead`` seconds)."""

    def __init__(self, ahead=0.0):
        self.ahead = ahead
        self.sent = []

    def query(self, sql):
        self.sent.append(sql)
        if sql.startswith("SELECT pg_export_snapshot"):
            now = time.time() + self.ahead
            return [f"00000003-0000001B-1|{now - 0.001}|{now}"]
        return []

    def close(self):
        self.sent.append("closed")


class ScriptRunner(programs.Runner):
    """pg_dump replaced by ``script`` (sh), run for real: on this host (FileProcess) or, with
    ``container``, as an exec whose output arrives on a stream (StreamedProcess over a pipe)."""

    def __init__(self, script, container=False):
        super().__init__(api=object())
        self.script = script
        self.container = "rat-postgres" if container else None
        self.started = []

    def spawn_to_file(self, argv, env, path):
        argv = ["sh", "-c", self.script]
        if self.container:
            inner = programs.HostProcess(argv, env)
            proc = programs.StreamedProcess(inner, path)
            # The "container's" process, for the tests' check that none is left.
            proc.stand_in_pid = inner._proc.pid  # pylint: disable=protected-access
        else:
            proc = programs.FileProcess(argv, env, path)
            proc.stand_in_pid = proc.pid
        self.started.append(proc)
        return proc


class FakeClient:
    def __init__(self, runner, ahead=0.0):
        self.runner = runner
        self.conn = pg_client.Connection("127.0.0.1", 5432, "rat", "rat", "pw")
        self.bin_dir = None
        self.server_version = self.client_version = "15.18"
        self.server = (15,)
        self.session = FakeSession(ahead)

    def open_session(self):
        return self.session

    def read_toc(self, src):
        with open(src, "rb") as handle:
            if handle.read(5) != b"PGDMP":
                raise RatBackupError(f"{src} is not a readable pg_dump archive")
        return {"header": {"Format": "CUSTOM"}, "entries": []}


def backup_dir(tmp_path):
    (tmp_path / "b.partial" / "postgres").mkdir(parents=True)
    return tmp_path / "b.partial"


def params(dest, **overrides):
    base = options(dest=str(dest), link_dest=None, buckets=[], use_versions=True, max_clock_skew=2.0,
                   fail_on_best_effort=False, concurrency=4, processes=2, min_free_bytes=0)
    base.update(overrides)
    return base


def start_of(client, dest):
    return lambda: postgres.start_dump(client, postgres.DumpSpec(str(dest / "postgres" / "rat.dump")))


def real_mirror(p, s3_client, after=None):
    """The mirror as capture makes it, over the moto server; ``after()`` runs once it has finished."""
    def mirror_for(point, checkpoint):
        mirror = Mirror(capture.mirror_options(p, point), s3_client, None, src_http=http(), checkpoint=checkpoint)
        if after is None:
            return mirror

        class Then:
            def run(self):
                result = mirror.run()
                after()
                return result
        return Then()
    return mirror_for


def gone(pid):
    """True when ``pid`` is no process of ours any more, not even a zombie (it was reaped)."""
    with pytest.raises(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)
    return not os.path.exists(f"/proc/{pid}")


def children():
    with open(f"/proc/{os.getpid()}/task/{os.getpid()}/children", encoding="ascii") as handle:
        return set(handle.read().split())


def archive_script(tmp_path, wait_for=None):
    """pg_dump's stand-in: writes ARCHIVE to stdout; with ``wait_for``, only once that file exists
    (and fails after 20 s without it, so a capture that never overlaps fails instead of hanging)."""
    (tmp_path / "archive.bin").write_bytes(ARCHIVE)
    wait = ""
    if wait_for:
        wait = (f"i=0; while [ ! -e '{wait_for}' ]; do i=$((i+1)); [ $i -gt 1000 ] && "
                "{ echo 'pg_dump: never overlapped' >&2; exit 3; }; sleep 0.02; done; ")
    return wait + f"cat '{tmp_path / 'archive.bin'}'"


@pytest.mark.parametrize("container", [False, True], ids=["host", "container"])
def test_capture_when_dump_and_mirror_overlap_then_both_complete_under_worker_processes(client, tmp_path, container):
    objects = {f"k/{i:03d}": os.urandom(100 + i) for i in range(40)}
    fill(client, "lake", objects)
    dest = backup_dir(tmp_path)
    go = tmp_path / "mirror-done"
    runner = ScriptRunner(archive_script(tmp_path, wait_for=go), container=container)
    pg = FakeClient(runner)
    before = children()
    dumped, mirrored, timings = capture.capture(start_of(pg, dest),
                                                real_mirror(params(dest), client, after=go.touch))
    # pg_dump could only end after the mirror had: they ran at the same time, and the mirror's
    # worker processes were forked while pg_dump (and in container mode its copier thread) ran.
    assert mirrored["copied"] == 40 and timings["mirror"] <= timings["dump"]
    assert (dest / "postgres" / "rat.dump").read_bytes() == ARCHIVE
    assert dumped["sha256"] == hashlib.sha256(ARCHIVE).hexdigest() and dumped["size"] == len(ARCHIVE)
    assert os.stat(dest / "postgres" / "rat.dump").st_mode & 0o777 == 0o600
    assert dumped["snapshot"] == "00000003-0000001B-1" and pg.session.sent[-2:] == ["COMMIT;", "closed"]
    entries = read_manifest(str(dest / "minio.json"), "manifest")[1]
    assert {e.key: e.sha256 for e in entries} == {k: hashlib.sha256(v).hexdigest() for k, v in objects.items()}
    assert children() == before


def exited(proc, seconds=10):
    """Wait until the stand-in ``proc`` has exited (polled as capture polls it)."""
    deadline = time.monotonic() + seconds
    while proc.poll() is None:
        assert time.monotonic() < deadline, "pg_dump's stand-in never exited"
        time.sleep(0.01)


def watched(mirror_for, before_first=None, seen=None):
    """``mirror_for`` whose mirror's checkpoint first runs ``before_first(calls)`` (until it returns
    True) and records what ``seen()`` says right after each call of capture's checkpoint."""
    calls = []
    records = []

    def make(point, checkpoint):
        def wrapped():
            calls.append(1)
            if before_first is not None and not records:
                if not before_first(len(calls)):
                    return
            checkpoint()
            records.append(seen())
        return mirror_for(point, wrapped)
    return make, records


@pytest.mark.parametrize("container", [False, True], ids=["host", "container"])
def test_capture_when_pg_dump_exits_during_the_plan_then_dump_finished_before_any_worker_forks(client, tmp_path, container):
    objects = {f"k/{i:03d}": os.urandom(100 + i) for i in range(40)}
    fill(client, "lake", objects)
    dest = backup_dir(tmp_path)
    runner = ScriptRunner(archive_script(tmp_path), container=container)
    pg = FakeClient(runner)
    json_path = dest / "postgres" / "rat.dump.json"
    before = children()

    def plan_made(calls):
        # The first call is the mirror's, once its plan is made: pg_dump has exited by then.
        exited(runner.started[0])
        return True

    mirror_for, records = watched(real_mirror(params(dest), client), plan_made,
                                  lambda: (json_path.exists(), pg.session.sent[-1], children() == before,
                                           finishing_threads()))
    dumped, mirrored, timings = capture.capture(start_of(pg, dest), mirror_for)
    # Finished by the plan's end: written, its session ended, the watch's thread ended, and no worker
    # process forked yet.
    assert records[0] == (True, "closed", True, []) and len(records) > 40
    assert (dest / "postgres" / "rat.dump").read_bytes() == ARCHIVE
    assert json.loads(json_path.read_text()) == dumped and dumped["sha256"] == hashlib.sha256(ARCHIVE).hexdigest()
    assert pg.session.sent[-2:] == ["COMMIT;", "closed"] and pg.session.sent.count("closed") == 1
    assert timings["snapshot"] <= timings["dump"] <= timings["mirror"]
    assert mirrored["copied"] == 40 and children() == before
    entries = read_manifest(str(dest / "minio.json"), "manifest")[1]
    assert {e.key: e.sha256 for e in entries} == {k: hashlib.sha256(v).hexdigest() for k, v in objects.items()}


PSQL = r"""#!/bin/sh
# psql's stand-in: the lines PsqlSession sends, answered; every line kept in LOG.
while IFS= read -r line; do
  printf '%s\n' "$line" >> "$LOG"
  case "$line" in
    "SELECT pg_export_snapshot"*) t=$(date +%s.%N); echo "00000003-0000001B-1|$t|$t" ;;
    '\echo '*) printf '%s\n' "${line#?echo }" ;;
    '\q') exit 0 ;;
  esac
done
"""


class PipedClient(FakeClient):
    """FakeClient whose session is PsqlSession itself, over a real process's pipes (PSQL)."""

    def __init__(self, runner, tmp_path):
        super().__init__(runner)
        self.psql = tmp_path / "psql"
        self.psql.write_text(PSQL.replace("$LOG", str(tmp_path / "psql.log")))
        self.psql.chmod(0o755)
        self.log = tmp_path / "psql.log"
        self.session = None

    def open_session(self):
        self.session = pg_client.PsqlSession(programs.Runner(), str(self.psql), self.conn)
        return self.session


def test_capture_when_pg_dump_exits_after_workers_forked_then_dump_finished_before_the_mirror_ends(
        client, tmp_path, monkeypatch):
    # Every call of the checkpoint polls pg_dump: the dump is finished at the first one after it exited.
    monkeypatch.setattr(capture, "POLL_EVERY", 0.0)
    objects = {f"k/{i:03d}": os.urandom(100 + i) for i in range(200)}
    fill(client, "lake", objects)
    dest = backup_dir(tmp_path)
    go = tmp_path / "go"
    runner = ScriptRunner(archive_script(tmp_path, wait_for=go))
    pg = PipedClient(runner, tmp_path)
    json_path = dest / "postgres" / "rat.dump.json"
    before = children()

    at_plan = set()

    def workers_forked(calls):
        # At the plan's end pg_dump and psql are this process's children; then the workers too.
        if calls == 1:
            at_plan.update(children())
        if children() <= at_plan:
            return False
        go.touch()
        exited(runner.started[0])
        return True

    mirror_for, records = watched(real_mirror(params(dest), client), workers_forked,
                                  lambda: (json_path.exists(), len(children() - at_plan)))
    dumped, mirrored, timings = capture.capture(start_of(pg, dest), mirror_for)
    # Finished between two objects while the worker processes ran (they hold copies of the psql
    # session's pipes: its end does not wait for them), well before the mirror's last object.
    assert records[0][0] is True and records[0][1] >= 1 and len(records) > 100
    sent = pg.log.read_text().splitlines()
    assert sent[-3] == "COMMIT;" and sent[-2].startswith("\\echo __rat.backup.") and sent[-1] == "\\q"
    assert json.loads(json_path.read_text()) == dumped and (dest / "postgres" / "rat.dump").read_bytes() == ARCHIVE
    assert timings["dump"] <= timings["mirror"] and mirrored["copied"] == 200 and children() == before
    entries = read_manifest(str(dest / "minio.json"), "manifest")[1]
    assert {e.key: e.sha256 for e in entries} == {k: hashlib.sha256(v).hexdigest() for k, v in objects.items()}


def test_watch_when_dump_finished_then_pg_dump_is_polled_no_more():
    clock = [0.0]

    class Running:
        polls = finishes = 0

        def exited(self):
            if threading.current_thread() is threading.main_thread():
                self.polls += 1
            return clock[0] >= 0.1

        def finish(self):
            self.finishes += 1

    running = Running()
    watch = capture._Watch(running, lambda: clock[0])  # pylint: disable=protected-access
    for dummy in range(1000):
        clock[0] += 0.001
        watch()
    # Every POLL_EVERY (50 ms) until pg_dump had exited, then the dump finished once, never polled again.
    assert (running.polls, running.finishes) == (3, 1) and watch.finished == pytest.approx(0.101, abs=0.002)
    assert not finishing_threads()


def finishing_threads():
    return [t for t in threading.enumerate() if t.name == "dump-finish"]


class Planning:
    """A mirror whose plan lasts until ``ready()`` (at most 10 s), calling no checkpoint; then, as the
    real one, it calls it once (``fail``: it fails instead)."""

    def __init__(self, checkpoint, ready, fail=False):
        self.checkpoint = checkpoint
        self.ready = ready
        self.fail = fail
        self.seen = {}

    def run(self):
        deadline = time.monotonic() + 10
        while not self.ready() and time.monotonic() < deadline:
            time.sleep(0.01)
        self.seen["ready"] = self.ready()
        if self.fail:
            raise RatBackupError("cannot write /b.partial/minio/lake/x: No space left on device")
        self.checkpoint()
        self.seen["threads after"] = len(finishing_threads())
        return {"consistency": None, "changed_during": []}


@pytest.mark.parametrize("container", [False, True], ids=["host", "container"])
def test_capture_when_pg_dump_exits_while_the_mirror_plans_then_dump_finished_beside_the_plan(tmp_path, container):
    dest = backup_dir(tmp_path)
    runner = ScriptRunner(archive_script(tmp_path), container=container)
    pg = FakeClient(runner)
    json_path = dest / "postgres" / "rat.dump.json"
    mirrors = []

    def mirror_for(point, checkpoint):
        mirrors.append(Planning(checkpoint, json_path.exists))
        return mirrors[0]

    dumped, dummy, timings = capture.capture(start_of(pg, dest), mirror_for)
    # Finished while the plan ran (no checkpoint called yet), by the watch's thread, ended by the plan's end.
    assert mirrors[0].seen == {"ready": True, "threads after": 0}
    assert json.loads(json_path.read_text()) == dumped and (dest / "postgres" / "rat.dump").read_bytes() == ARCHIVE
    assert pg.session.sent[-2:] == ["COMMIT;", "closed"] and pg.session.sent.count("closed") == 1
    assert timings["dump"] <= timings["mirror"] and gone(runner.started[0].stand_in_pid)


def test_capture_when_finishing_beside_the_plan_fails_then_mirror_stopped_at_the_plan_end_naming_the_dump(tmp_path):
    dest = backup_dir(tmp_path)
    runner = ScriptRunner(archive_script(tmp_path))

    class Unreadable(FakeClient):
        def read_toc(self, src):
            raise RatBackupError(f"{src} is not a readable pg_dump archive")

    pg = Unreadable(runner)
    mirrors = []

    def mirror_for(point, checkpoint):
        mirrors.append(Planning(checkpoint, lambda: "closed" in pg.session.sent))
        return mirrors[0]

    with pytest.raises(RatBackupError) as failed:
        capture.capture(start_of(pg, dest), mirror_for)
    dump = f"{dest}/postgres/rat.dump"
    assert failed.value.msg == (f"cannot finish the dump {dump}: {dump}.partial is not a readable pg_dump archive; "
                                "the bucket mirror was stopped")
    assert mirrors[0].seen == {"ready": True}
    assert os.listdir(dest / "postgres") == [] and pg.session.sent.count("closed") == 1
    assert "COMMIT;" not in pg.session.sent and not finishing_threads()


def test_capture_when_mirror_fails_in_its_plan_after_the_dump_was_finished_then_dump_and_its_result_removed(tmp_path):
    dest = backup_dir(tmp_path)
    runner = ScriptRunner(archive_script(tmp_path))
    json_path = dest / "postgres" / "rat.dump.json"
    mirrors = []

    def mirror_for(point, checkpoint):
        mirrors.append(Planning(checkpoint, json_path.exists, fail=True))
        return mirrors[0]

    with pytest.raises(RatBackupError) as failed:
        capture.capture(start_of(FakeClient(runner), dest), mirror_for)
    assert failed.value.msg == ("bucket mirror: cannot write /b.partial/minio/lake/x: No space left on device "
                                "(the dump pg_dump had finished was discarded)")
    assert mirrors[0].seen == {"ready": True}
    assert os.listdir(dest / "postgres") == [] and not finishing_threads()


class Endless:
    """A mirror that would run for 20 s: only the checkpoint can end it early (or ``until()`` true
    after a call, then it fails as a mirror)."""

    def __init__(self, checkpoint, until=None):
        self.checkpoint = checkpoint
        self.until = until
        self.checks = 0

    def run(self):
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            self.checks += 1
            self.checkpoint()
            if self.until is not None and self.until():
                raise RatBackupError("cannot write /b.partial/minio/lake/x: No space left on device")
            time.sleep(0.01)
        return {"consistency": None, "changed_during": []}


def test_capture_when_counting_rows_fails_while_mirror_runs_then_mirror_stopped_naming_the_dump_and_nothing_left(tmp_path):
    dest = backup_dir(tmp_path)
    runner = ScriptRunner(archive_script(tmp_path))

    class BrokenSession(FakeSession):
        def query(self, sql):
            if "pg_class" in sql:
                self.sent.append(sql)
                raise RatBackupError("server closed the connection unexpectedly")
            return super().query(sql)

    class OneTable(FakeClient):
        def read_toc(self, src):
            toc = super().read_toc(src)
            toc["entries"] = [{"kind": "TABLE DATA", "oid": 16390, "schema": "public", "name": "runs"}]
            return toc

    pg = OneTable(runner)
    pg.session = BrokenSession()
    mirrors = []

    def mirror_for(point, checkpoint):
        mirrors.append(Endless(checkpoint))
        return mirrors[0]

    started = time.monotonic()
    with pytest.raises(RatBackupError) as failed:
        capture.capture(start_of(pg, dest), mirror_for)
    assert failed.value.msg == (f"cannot finish the dump {dest}/postgres/rat.dump: server closed the connection "
                                "unexpectedly; the bucket mirror was stopped")
    assert failed.value.details == {"failed_step": "pg_dump"}
    assert time.monotonic() - started < 5 and mirrors[0].checks
    # Neither the partial dump nor a finished one or its result; the session ended once, without COMMIT.
    assert os.listdir(dest / "postgres") == [] and "COMMIT;" not in pg.session.sent
    assert pg.session.sent.count("closed") == 1 and pg.session.sent[-1] == "closed"
    assert gone(runner.started[0].pid)


def test_capture_when_mirror_fails_after_the_dump_was_finished_then_dump_and_its_result_removed(tmp_path):
    dest = backup_dir(tmp_path)
    runner = ScriptRunner(archive_script(tmp_path))
    pg = FakeClient(runner)
    finished = []

    def until():
        finished.append((dest / "postgres" / "rat.dump.json").exists())
        return finished[-1] or len(finished) > 300

    with pytest.raises(RatBackupError) as failed:
        capture.capture(start_of(pg, dest), lambda point, checkpoint: Endless(checkpoint, until))
    assert finished[-1] is True
    assert failed.value.msg == ("bucket mirror: cannot write /b.partial/minio/lake/x: No space left on device "
                                "(the dump pg_dump had finished was discarded)")
    assert os.listdir(dest / "postgres") == [] and pg.session.sent.count("closed") == 1
    assert gone(runner.started[0].pid)


@pytest.mark.parametrize("container", [False, True], ids=["host", "container"])
def test_capture_when_pg_dump_fails_while_mirror_runs_then_mirror_stopped_and_error_names_pg_dump(tmp_path, container):
    dest = backup_dir(tmp_path)
    runner = ScriptRunner("sleep 0.3; echo 'pg_dump: error: query failed: server closed the connection' >&2; exit 1",
                          container=container)
    checks = []

    class Endless:
        """A mirror that would run for 20 s: only the checkpoint can end it early."""

        def __init__(self, checkpoint):
            self.checkpoint = checkpoint

        def run(self):
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline:
                checks.append(1)
                self.checkpoint()
                time.sleep(0.01)
            return {"consistency": None, "changed_during": []}

    started = time.monotonic()
    with pytest.raises(RatBackupError) as failed:
        capture.capture(start_of(FakeClient(runner), dest), lambda point, checkpoint: Endless(checkpoint))
    assert failed.value.msg == ("pg_dump failed (exit 1): pg_dump: error: query failed: server closed the connection; "
                                "the bucket mirror was stopped")
    assert failed.value.details["failed_step"] == "pg_dump" and failed.value.details["rc"] == 1
    assert time.monotonic() - started < 5 and checks
    # The partial dump is gone; the backup directory is left for backup_run abort.
    assert sorted(os.listdir(dest / "postgres")) == [] and dest.is_dir()
    assert gone(runner.started[0].stand_in_pid)


@pytest.mark.parametrize("container", [False, True], ids=["host", "container"])
def test_capture_when_mirror_fails_while_pg_dump_runs_then_pg_dump_stopped_and_reaped(tmp_path, container):
    dest = backup_dir(tmp_path)
    runner = ScriptRunner("while :; do printf PGDMP; sleep 0.05; done" if container else "exec sleep 30",
                          container=container)
    session = []

    class Failing:
        def run(self):
            raise RatBackupError("cannot write /b.partial/minio/lake/x: No space left on device", path="/b.partial/x")

    def start():
        running = start_of(FakeClient(runner), dest)()
        session.append(running.session)
        return running

    started = time.monotonic()
    with pytest.raises(RatBackupError) as failed:
        capture.capture(start, lambda point, checkpoint: Failing())
    pid = runner.started[0].pid
    stopped = "pg_dump was stopped" if container else f"pg_dump (pid {pid}) was stopped"
    assert failed.value.msg == f"bucket mirror: cannot write /b.partial/minio/lake/x: No space left on device ({stopped})"
    assert failed.value.details == {"failed_step": "mirror", "path": "/b.partial/x"}
    assert time.monotonic() - started < 10
    assert os.listdir(dest / "postgres") == [] and session[0].sent[-1] == "closed"
    assert gone(runner.started[0].stand_in_pid) and not finishing_threads()


def test_capture_when_clock_skew_over_bound_then_fails_naming_it_and_writes_nothing(versioned_lake, tmp_path):
    client = versioned_lake
    dest = backup_dir(tmp_path)
    runner = ScriptRunner("exec sleep 30")
    # PostgreSQL's clock 30 s ahead of this host's (and so of moto's, which is this host's).
    with pytest.raises(RatBackupError) as failed:
        capture.capture(start_of(FakeClient(runner, ahead=30.0), dest), real_mirror(params(dest), client))
    assert failed.value.msg.startswith("bucket mirror: the S3 server's clock differs from PostgreSQL's by between -30.")
    assert "more than the allowed 2.0 s" in failed.value.msg
    assert failed.value.details["max_clock_skew"] == 2.0 and failed.value.details["failed_step"] == "mirror"
    assert not (dest / "minio.json").exists() and os.listdir(dest / "postgres") == []
    assert gone(runner.started[0].pid)


def test_capture_when_no_bucket_is_versioned_then_s3_clock_not_asked_and_a_skew_fails_nothing(
        client, tmp_path, monkeypatch):
    """Only versioned buckets are captured as of the snapshot: with none, S3's clock is not measured
    (the Date tick's wait, half a second on average) and a skew of 30 s does not fail the backup."""
    fill(client, "lake", {"a": b"1"})
    dest = backup_dir(tmp_path)
    asked = []
    date_reader = capture.s3_source.date_reader
    monkeypatch.setattr(capture.s3_source, "date_reader", lambda *a: asked.append(a[2]) or date_reader(*a))
    runner = ScriptRunner(archive_script(tmp_path))
    dumped, mirrored, dummy = capture.capture(start_of(FakeClient(runner, ahead=30.0), dest),
                                              real_mirror(params(dest), client))
    assert asked == [] and mirrored["copied"] == 1
    # Best-effort at the dump's snapshot, with no skew to record.
    point = mirrored["consistency"]
    assert point["level"] == "best-effort" and point["time"] and not {"clock_skew", "window"} & set(point)
    assert (dest / "minio" / "lake" / "a").read_bytes() == b"1" and dumped["size"] > 0


def test_capture_when_checkpoint_raises_then_real_mirror_stops_and_its_workers_are_reaped(client, tmp_path):
    fill(client, "lake", {f"k/{i:03d}": b"x" * i for i in range(200)})
    dest = backup_dir(tmp_path)
    calls = []

    def checkpoint():
        calls.append(1)
        if len(calls) == 20:
            raise RatBackupError("pg_dump failed (exit 1): stand-in")

    before = children()
    mirror = Mirror(capture.mirror_options(params(dest, use_versions=False)), client, None, src_http=http(),
                    checkpoint=checkpoint)
    with pytest.raises(RatBackupError, match=r"^pg_dump failed \(exit 1\): stand-in$"):
        mirror.run()
    assert len(calls) == 20 and children() == before
    assert not (dest / "minio.json").exists()


def test_mirror_options_when_built_for_a_backup_dir_name_its_parts():
    p = params("/r/b.partial", link_dest="/r/a", buckets=["rat"])
    opts = capture.mirror_options(p, {"time_epoch": 1.0})
    assert (opts["src"], opts["dest"], opts["manifest"], opts["link_dest"]) == (
        "s3://", "/r/b.partial/minio", "/r/b.partial/minio.json", "/r/a/minio")
    assert opts["consistency_point"] == {"time_epoch": 1.0} and opts["buckets"] == ["rat"]
    assert opts["retry_max_attempts"] == 2 and opts["src_endpoint"] == URL
    plain = capture.mirror_options(dict(p, use_versions=False), {"time_epoch": 1.0}, check_mode=True)
    assert plain["consistency_point"] is None and plain["manifest"] is None


def test_argument_spec_when_compared_to_documentation_matches():
    documented = yaml.safe_load(backup_capture.DOCUMENTATION)["options"]
    shared = yaml.safe_load(PgDoc.DOCUMENTATION)["options"]
    shared.update(yaml.safe_load(S3Doc.SRC)["options"])
    spec = backup_capture.argument_spec()
    assert set(spec) == set(documented) | set(shared)
    for name, option in {**documented, **shared}.items():
        assert spec[name].get("default") == option.get("default"), name
        assert spec[name]["type"] == option["type"], name


def test_capture_when_mirror_fails_after_pg_dump_finished_then_the_dump_is_discarded_and_said_so(tmp_path):
    dest = backup_dir(tmp_path)
    runner = ScriptRunner(archive_script(tmp_path))

    class Failing:
        def run(self):
            runner.started[0].wait()
            raise RatBackupError("bucket(s) lake not found on http://127.0.0.1:1")

    with pytest.raises(RatBackupError) as failed:
        capture.capture(start_of(FakeClient(runner), dest), lambda point, checkpoint: Failing())
    assert failed.value.msg == ("bucket mirror: bucket(s) lake not found on http://127.0.0.1:1 "
                                "(the dump pg_dump had finished was discarded)")
    assert os.listdir(dest / "postgres") == [] and gone(runner.started[0].pid)


def test_start_dump_when_pg_dump_cannot_run_then_no_file_left_and_session_closed(tmp_path):
    dest = backup_dir(tmp_path)

    class Missing(ScriptRunner):
        def spawn_to_file(self, argv, env, path):
            return programs.FileProcess([str(tmp_path / "no-such-pg_dump")], env, path)

    pg = FakeClient(Missing(""))
    with pytest.raises(RatBackupError, match=r"^cannot run .*no-such-pg_dump: No such file or directory$"):
        start_of(pg, dest)()
    assert os.listdir(dest / "postgres") == [] and pg.session.sent[-1] == "closed"


def test_run_when_check_mode_then_clocks_compared_plan_returned_and_nothing_written(client, tmp_path, monkeypatch):
    fill(client, "lake", {"a": b"1", "b": b"22"})
    dest = tmp_path / "root"
    dest.mkdir()
    pg = FakeClient(ScriptRunner("exit 9"))
    monkeypatch.setattr(capture.postgres, "client_from_params", lambda p: pg)
    clock = {"time": "2026-12-07T07:00:00Z", "host_offset": [-0.001, 0.001]}
    monkeypatch.setattr(capture.postgres, "check", lambda c, keep: {"server_version": "15.18", "clock": clock})
    run_params = dict(params(dest, src_endpoint=URL, buckets=["lake"]), root=str(dest), incremental=True,
                      lease_hours=1.0, idle_minutes=1.0, python_modules=[], quiesce_before=["false"],
                      quiesce_after=["false"])
    result = capture.run(run_params, check_mode=True)
    assert result["changed"] and result["dump"]["clock"] == clock and result["lock_token"] is None
    assert result["checked"]["s3"] == {"buckets": {"lake": {"versioned": False}}}
    assert result["mirror"]["plan"]["to_copy"]["count"] == 2
    # No versioned bucket: S3's clock is not compared (with one: the test below), nothing to record.
    assert result["consistency"] is None
    assert list(dest.iterdir()) == [] and pg.runner.started == [] and result["quiesce"] == {}


@pytest.mark.parametrize("check_mode", [False, True], ids=["run", "check_mode"])
def test_run_when_the_checks_read_versioning_then_the_mirror_asks_no_bucket_again(
        versioned_lake, tmp_path, monkeypatch, check_mode):
    client = versioned_lake
    client.put_object(Bucket="lake", Key="b", Body=b"22")
    fill(client, "plain", {"c": b"333"})
    asked = []
    real_is_versioned = capture.s3.is_versioned

    def is_versioned(s3_client, endpoint, bucket, http_=None):
        asked.append(bucket)
        return real_is_versioned(s3_client, endpoint, bucket, http_)

    monkeypatch.setattr(capture.s3, "is_versioned", is_versioned)
    root = tmp_path / "root"
    root.mkdir()
    pg = FakeClient(ScriptRunner(archive_script(tmp_path)))
    monkeypatch.setattr(capture.postgres, "client_from_params", lambda p: pg)
    clock = {"time": "2026-12-07T07:00:00Z", "host_offset": [-0.001, 0.001]}
    monkeypatch.setattr(capture.postgres, "check", lambda c, keep: {"server_version": "15.18", "clock": clock})
    run_params = dict(params(root, src_endpoint=URL, buckets=[]), root=str(root), incremental=True, lease_hours=1.0,
                      idle_minutes=1.0, python_modules=[], quiesce_before=[], quiesce_after=[], host_name="h",
                      log_file=None, metrics_dir=None)
    result = capture.run(run_params, check_mode=check_mode)
    # Each bucket's versioning read once, by the checks; the mirror's pin took it from them.
    assert sorted(asked) == ["lake", "plain"]
    assert result["checked"]["s3"] == {"buckets": {"lake": {"versioned": True}, "plain": {"versioned": False}}}
    if not check_mode:
        header, entries = read_manifest(result["committed"]["backup_dir"] + "/manifest.json", "manifest")
        assert header["buckets"] == {"lake": {"versioned": True}, "plain": {"versioned": False}}
        assert sorted((e.bucket, e.key) for e in entries) == [("lake", "a"), ("lake", "b"), ("plain", "c")]
        assert result["consistency"]["buckets"] == {"lake": "snapshot", "plain": "best-effort"}
    else:
        # PostgreSQL's clock stands for the snapshot: the skew is measured, no window made.
        assert set(result["consistency"]) == {"clock_skew", "max_clock_skew"}


@pytest.fixture
def versioned_lake(client):
    """The versioned bucket "lake" with the object "a" (the fixture ``client`` removes only current
    objects: its versions are removed here)."""
    fill(client, "lake", {"a": b"1"})
    client.put_bucket_versioning(Bucket="lake", VersioningConfiguration={"Status": "Enabled"})
    yield client
    for page in client.get_paginator("list_object_versions").paginate(Bucket="lake"):
        for item in page.get("Versions", []) + page.get("DeleteMarkers", []):
            client.delete_object(Bucket="lake", Key=item["Key"], VersionId=item["VersionId"])


# PostgreSQL's client programs as stand-ins in one directory (client_bin_dir), run for real: psql
# answers what a backup asks and logs each line with its pid, pg_dump writes the archive, pg_restore
# lists a custom-format TOC.
STAND_INS = {
    "psql": r"""#!/bin/sh
echo "$$ connected" >> "$LOG"
while IFS= read -r line; do
  printf '%s %s\n' "$$" "$line" >> "$LOG"
  case "$line" in
    "SELECT current_setting('server_version_num')"*) echo "150018|15.18" ;;
    "SELECT extract(epoch FROM clock_timestamp())"*) date +%s.%N ;;
    "SELECT pg_export_snapshot"*) t=$(date +%s.%N); echo "00000003-0000001B-1|$t|$t" ;;
    '\echo '*) printf '%s\n' "${line#?echo }" ;;
    '\q') exit 0 ;;
  esac
done
""",
    "pg_dump": """#!/bin/sh
case "$1" in --version) echo "pg_dump (PostgreSQL) 15.18"; exit 0 ;; esac
cat "$ARCHIVE"
""",
    "pg_restore": """#!/bin/sh
printf ';\\n; Archive created at 2026-12-07 16:00:00 UTC\\n;     Format: CUSTOM\\n;\\n'
""",
}


def stand_in_bin(tmp_path):
    (tmp_path / "archive.bin").write_bytes(ARCHIVE)
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name, text in STAND_INS.items():
        path = bin_dir / name
        path.write_text(text.replace("$LOG", str(tmp_path / "psql.log")).replace("$ARCHIVE", str(tmp_path / "archive.bin")))
        path.chmod(0o755)
    return bin_dir


def stand_in_params(tmp_path, **overrides):
    """backup_capture's params for a backup into tmp_path/root of the moto server's buckets, with
    PostgreSQL's programs as stand-ins (stand_in_bin)."""
    root = tmp_path / "root"
    root.mkdir()
    run_params = dict(params(root, src_endpoint=URL), root=str(root), incremental=True, lease_hours=1.0,
                      idle_minutes=1.0, python_modules=[], host_name="h", log_file=None, metrics_dir=None,
                      quiesce_before=[], quiesce_after=[], host="127.0.0.1", port=5432, user="rat", database="rat",
                      password=None, connect_timeout=10, ssl_mode="prefer", ca_cert=None, container=None,
                      docker_host=None, client_bin_dir=str(stand_in_bin(tmp_path)))
    run_params.update(overrides)
    return run_params


def psql_lines(tmp_path):
    """[(psql's pid, line)] in the order psql processes logged them."""
    return [tuple(line.split(" ", 1)) for line in (tmp_path / "psql.log").read_text().splitlines()]


@pytest.mark.parametrize("quiesce", [False, True], ids=["no_quiesce", "quiesce_before"])
def test_run_when_checked_then_the_check_session_holds_the_snapshot_unless_a_quiesce_runs_between(
        client, tmp_path, quiesce):
    fill(client, "lake", {"a": b"1"})
    # Logged where psql logs, so the order tells whether the check's session ended before it ran.
    quiesce_before = ["sh", "-c", f"echo 'quiesce ran' >> {tmp_path / 'psql.log'}"]
    result = capture.run(stand_in_params(tmp_path, buckets=["lake"], quiesce_before=quiesce_before if quiesce else []))
    backup = result["committed"]["backup_dir"]
    with open(os.path.join(backup, "postgres", "rat.dump"), "rb") as handle:
        assert handle.read() == ARCHIVE
    lines = psql_lines(tmp_path)
    sessions = list(dict.fromkeys(pid for pid, dummy in lines if pid != "quiesce"))
    asked = [line for dummy, line in lines if not line.startswith("\\echo")]
    version = "SELECT current_setting('server_version_num'), current_setting('server_version');"
    clock = "SELECT extract(epoch FROM clock_timestamp());"
    snapshot = ["BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY;", asked[-3], "COMMIT;", "\\q"]
    assert asked[-3].startswith("SELECT pg_export_snapshot()")
    if not quiesce:
        # One connection: the check's session, asked again whether it still answers, exports the snapshot.
        assert len(sessions) == 1
        assert asked == ["connected", version, clock, version] + snapshot
    else:
        # The check's session ended before the quiesce command ran; the dump connected again.
        assert len(sessions) == 2
        assert asked == ["connected", version, clock, "\\q", "ran", "connected", version] + snapshot


def test_run_when_a_check_fails_after_postgres_answered_then_the_kept_session_is_closed(client, tmp_path):
    with pytest.raises(RatBackupError, match="missing not found") as failed:
        capture.run(stand_in_params(tmp_path, buckets=["missing"]))
    assert failed.value.details["failed_check"] == "s3"
    assert [line for dummy, line in psql_lines(tmp_path) if not line.startswith("\\echo")][-1] == "\\q"


def test_run_when_objects_mirrored_then_the_tree_is_made_durable_once_by_the_commit(client, tmp_path, monkeypatch):
    fill(client, "lake", {"a": b"1", "d/b": b"22"})
    synced = []
    real_sync_tree = fs.sync_tree
    monkeypatch.setattr(fs, "sync_tree", lambda path: synced.append(path) or real_sync_tree(path))
    run_params = stand_in_params(tmp_path, buckets=["lake"])
    first = capture.run(run_params)
    second = capture.run(run_params)
    assert first["mirror"]["copied"] == 2 and second["mirror"]["linked"] == 2
    # One syncfs a backup: the commit's, of the whole .partial (the mirror's tree and its manifest
    # included) before its rename; the mirror in it syncs nothing of its own.
    assert synced == [first["partial"], second["partial"]]
    for result in (first, second):
        header, entries = read_manifest(os.path.join(result["backup_dir"], "manifest.json"), "manifest")
        assert sorted(e.key for e in entries) == ["a", "d/b"] and header["buckets"] == {"lake": {"versioned": False}}
