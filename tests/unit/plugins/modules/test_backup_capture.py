# -*- coding: utf-8 -*-
# Copyright: rat.backup contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

import json
import os
import signal
import sys
import threading
import time

import pytest
import yaml
from ansible_collections.rat.backup.tests.unit.plugins.modules.module_args import patch_module_args

from ansible_collections.rat.backup.plugins.doc_fragments.postgres import ModuleDocFragment as PostgresDocs
from ansible_collections.rat.backup.plugins.doc_fragments.s3 import ModuleDocFragment as S3Docs
from ansible_collections.rat.backup.plugins.module_utils import capture, postgres, quiesce_commands, s3_source
from ansible_collections.rat.backup.plugins.module_utils.backup_root import layout, lock
from ansible_collections.rat.backup.plugins.module_utils.errors import RatBackupError
from ansible_collections.rat.backup.plugins.modules import backup_capture
from ansible_collections.rat.backup.tests.unit.plugins.module_utils.test_backup_dir import fill, prepare_partial
from ansible_collections.rat.backup.tests.unit.plugins.module_utils.test_lock import in_child

REAL_COMMIT = capture.commit
CLOCK = {"time": "2026-02-16T09:30:00.000000Z", "host_offset": [0.0, 0.001]}


def run_module(capsys, args):
    with patch_module_args(args):
        with pytest.raises(SystemExit):
            backup_capture.main()
    return json.loads(capsys.readouterr().out)


@pytest.fixture
def services(monkeypatch):
    """PostgreSQL and S3 as the checks see them, and the capture itself (capture.capture_into, tested
    in test_capture) and its commit (backup_dir.commit, tested in test_backup_dir; the whole in the
    integration targets) as stand-ins that record what they were given; ``calls`` records what was
    asked, in order."""
    calls = []

    def pg_check(client, keep=False):
        calls.append(("postgres", client.conn.host, client.conn.port))
        return {"server_version": "15.8", "client_version": "15.8", "clock": CLOCK}

    def check_source(client, endpoint, wanted, fail_on_best_effort, http=None):
        # Which path carries the requests: the fast transport for an endpoint given by URL with keys.
        calls.append(("s3", endpoint.name, wanted, fail_on_best_effort, type(http).__name__))
        return {"buckets": {b: {"versioned": True} for b in wanted}}

    def capture_into(params, log=None):
        held = lock.lock_state(params["root"])[0]
        calls.append(("capture", params["dest"], params["link_dest"], held, os.environ.get(lock.RUN_MARKER)))
        if "fail_capture" in params["buckets"]:
            raise RatBackupError("bucket mirror: disk full", failed_step="mirror")
        return {"changed": True, "dump": {}, "mirror": {}, "consistency": None, "changed_during": [], "timings": {}}

    class PlanOnly:
        def run(self):
            return {"consistency": None, "plan": {"to_copy": {"count": 0}}}

    def mirror(params, point, log, check_mode, checkpoint=None):
        calls.append(("plan", params["dest"], params["link_dest"], point, check_mode))
        return PlanOnly()

    def commit(params, begun, captured, log=None):
        calls.append(("commit", begun["name"], lock.lock_state(params["root"])[0]))
        if "fail_commit" in params["buckets"]:
            raise RatBackupError(f"backup {begun['partial']} is inconsistent, not committed: minio/x missing")
        # As the real one does, for the runs whose result carries no token to release it with.
        lock.release(params["root"], begun["lock_token"])
        return {"name": begun["name"], "backup_dir": begun["backup_dir"], "log_line": "status=ok"}

    monkeypatch.setattr(postgres, "check", pg_check)
    monkeypatch.setattr(s3_source, "check", check_source)
    monkeypatch.setattr(capture, "capture_into", capture_into)
    monkeypatch.setattr(capture, "commit", commit)
    monkeypatch.setattr(capture, "_mirror", mirror)
    monkeypatch.delenv(lock.RUN_MARKER, raising=False)
    return calls


def args(root, **overrides):
    base = {"root": str(root), "host": "127.0.0.1", "port": 15432, "password": "a-long-enough-password",
            "src_endpoint": "http://127.0.0.1:19000", "src_access_key": "key",
            "src_secret_key": "a-long-enough-secret", "buckets": ["rat"]}
    base.update(overrides)
    return base


def test_argument_spec_when_compared_to_documentation_and_fragments_then_same_options():
    documented = yaml.safe_load(backup_capture.DOCUMENTATION)["options"]
    documented.update(yaml.safe_load(PostgresDocs.DOCUMENTATION)["options"])
    documented.update(yaml.safe_load(S3Docs.SRC)["options"])
    spec = backup_capture.argument_spec()
    assert set(spec) == set(documented)
    for name, option in documented.items():
        assert spec[name].get("default") == option.get("default"), name
        assert spec[name]["type"] == option["type"], name


def test_capture_start_when_services_answer_then_checked_before_the_lock_and_backup_started(
        capsys, tmp_path, services, monkeypatch):
    held = []
    monkeypatch.setattr(s3_source, "check",
                        lambda *a: held.append(lock.lock_state(str(tmp_path))[0]) or {"buckets": {}})
    result = run_module(capsys, args(tmp_path / "root"))
    assert held == [False], "S3 was checked while the lock was held"
    try:
        assert not result.get("failed"), result
        assert result["checked"]["postgres"]["clock"] == CLOCK
        # The lock held until the commit (below), which releases it.
        assert os.path.isdir(result["partial"]) and not lock.lock_state(str(tmp_path / "root"))[0]
        # Captured into the .partial holding the lock, every program it starts marked as the run's.
        assert services == [("postgres", "127.0.0.1", 15432),
                            ("capture", result["partial"], None, True, result["lock"]["run_id"]),
                            ("commit", result["name"], True)]
        assert result["committed"]["backup_dir"] == result["backup_dir"]
        assert result["quiesce"] == {} and result["lock"]["taker_pid"] == os.getpid()
    finally:
        lock.release(str(tmp_path / "root"), result["lock_token"])


def test_capture_start_when_checked_then_s3_asked_over_the_fast_transport_with_its_options(capsys, tmp_path, services):
    result = run_module(capsys, args(tmp_path, fail_on_best_effort=True))
    lock.release(str(tmp_path), result["lock_token"])
    assert [call for call in services if call[0] == "s3"] == [("s3", "http://127.0.0.1:19000", ["rat"], True,
                                                              "Transport")]
    assert result["checked"]["s3"] == {"buckets": {"rat": {"versioned": True}}}


def test_capture_start_when_s3_and_postgres_asked_then_at_the_same_time(capsys, tmp_path, services, monkeypatch):
    """S3's clock waits for its Date header's tick: PostgreSQL's check runs meanwhile, not after it."""
    s3_started, pg_done = threading.Event(), threading.Event()
    check_pg, check_s3 = postgres.check, s3_source.check

    def slow_s3(*a):
        s3_started.set()
        assert pg_done.wait(10), "PostgreSQL was not checked while S3 was"
        return check_s3(*a)

    def pg(client, keep=False):
        assert s3_started.wait(10), "S3 was not checked while PostgreSQL was"
        try:
            return check_pg(client, keep)
        finally:
            pg_done.set()
    monkeypatch.setattr(s3_source, "check", slow_s3)
    monkeypatch.setattr(postgres, "check", pg)
    result = run_module(capsys, args(tmp_path))
    lock.release(str(tmp_path), result["lock_token"])
    assert not result.get("failed"), result


@pytest.mark.parametrize("failing", ["postgres", "s3", "both"])
def test_capture_start_when_a_service_fails_then_named_and_nothing_started(capsys, tmp_path, services, monkeypatch, failing):
    def refuse(*_args, **_kwargs):
        raise RatBackupError(f"{failing} does not answer", endpoint="somewhere")
    if failing in ("postgres", "both"):
        monkeypatch.setattr(postgres, "check", refuse)
    if failing in ("s3", "both"):
        monkeypatch.setattr(s3_source, "check", refuse)
    # Both failing: PostgreSQL's error is the one named (as when it was asked first).
    failing = "postgres" if failing == "both" else failing
    result = run_module(capsys, args(tmp_path / "root"))
    assert result["failed"] and result["msg"] == f"{failing} does not answer"
    assert result["failed_check"] == failing and result["endpoint"] == "somewhere"
    assert layout.list_backups(str(tmp_path / "root"))["partial"] == []
    assert not lock.lock_state(str(tmp_path / "root"))[0]
    assert "a-long-enough-password" not in json.dumps(result) and "a-long-enough-secret" not in json.dumps(result)


def test_capture_start_when_python_package_missing_then_refused_before_any_service_is_asked(capsys, tmp_path, services):
    result = run_module(capsys, args(tmp_path, python_modules=["no_such_module_4711"]))
    assert result["failed"] and "no_such_module_4711" in result["msg"] and "failed_check" not in result
    assert services == []


def test_capture_start_when_check_mode_then_checks_run_and_nothing_is_created(capsys, tmp_path, services):
    marker = tmp_path / "quiesced"
    result = run_module(capsys, dict(args(tmp_path / "root"), _ansible_check_mode=True,
                                     quiesce_before=["touch", str(marker)], quiesce_after=["touch", str(marker)]))
    assert not result.get("failed"), result
    assert result["checked"]["s3"]["buckets"] == {"rat": {"versioned": True}}
    assert result["lock_token"] is None and not (tmp_path / "root").exists()
    # The plan is made in the nearest existing directory at PostgreSQL's clock; no command ran.
    assert services[-1] == ("plan", str(tmp_path), None, CLOCK, True)
    assert result["quiesce"] == {} and not marker.exists()


def sh(log, line, rc=0):
    """A quiesce command appending ``line`` and the run's marker to ``log``, exiting ``rc``."""
    return ["sh", "-c", f'echo "{line} $RAT_BACKUP_RUN" >> {log}; echo said-{line} >&2; exit {rc}']


@pytest.mark.parametrize("fails", [None, "capture", "before", "after", "capture+after", "commit"])
def test_capture_when_quiesce_commands_given_then_before_holds_lock_after_always_runs(
        capsys, tmp_path, services, fails):
    log = tmp_path / "order"
    root = tmp_path / "root"
    buckets = ["rat", "fail_" + fails.split("+")[0]] if fails in ("capture", "capture+after", "commit") else ["rat"]
    result = run_module(capsys, args(root, buckets=buckets,
                                     quiesce_before=sh(log, "before", 3 if fails == "before" else 0),
                                     quiesce_after=sh(log, "after", 4 if fails and "after" in fails else 0)))
    try:
        run_id = result["lock"]["run_id"] if "lock" in result else next(c[4] for c in services if c[0] == "capture")
        # Both commands carry the run's lock marker; after runs whatever failed.
        expected = ["before", "after"] if fails == "before" else ["before", "after"]
        assert log.read_text().split("\n")[:-1] == [f"{step} {run_id}" for step in expected]
        captured = [c for c in services if c[0] == "capture"]
        assert len(captured) == (0 if fails == "before" else 1)
        # Committed after every capture that succeeded, also when the command after it failed.
        committed = ["commit"] if fails in (None, "commit", "after") else []
        assert [c[0] for c in services if c[0] == "commit"] == committed
        assert result["quiesce"]["after"]["rc"] == (4 if fails and "after" in fails else 0)
        assert result["quiesce"]["before"]["stderr"] == "said-before" if fails != "before" else True
        if fails is None:
            assert not result.get("failed"), result
            return
        if fails == "after":
            # Complete: nothing for abort to remove, the failure said with the backup it kept.
            assert result["failed"] and not {"partial", "lock_token"} & set(result)
            assert result["msg"] == (f"backup {result['committed']['name']} is complete in "
                                     f"{result['committed']['backup_dir']}, but quiesce_after command "
                                     f"{' '.join(sh(log, 'after', 4))} failed (rc 4): said-after; "
                                     "the platform may still be quiesced")
            return
        # A failure holding the lock names what abort needs; the .partial is left for it.
        assert result["failed"] and os.path.isdir(result["partial"]) and result["lock_token"]
        assert lock.lock_state(str(root))[0] and result["name"] in result["partial"]
        messages = {"capture": "bucket mirror: disk full",
                    "commit": f"backup {result['partial']} is inconsistent, not committed: minio/x missing",
                    "before": f"quiesce_before command {' '.join(sh(log, 'before', 3))} failed (rc 3): said-before",
                    "after": f"quiesce_after command {' '.join(sh(log, 'after', 4))} failed (rc 4): said-after"}
        assert result["msg"] == "; then ".join(messages[part] for part in fails.split("+"))
    finally:
        lock.release(str(root), result.get("lock_token"))


def test_capture_when_the_command_after_fails_after_a_good_capture_then_committed_and_the_run_logged_failed(
        capsys, tmp_path, services, monkeypatch):
    """A backup taken between the two commands is good whatever the command after did: kept (the real
    commit), then the run is failed in the log and the metrics, with this backup as the last success."""
    def capture_into(params, log=None):
        started = {"partial": params["dest"]}
        prepare_partial(started)
        with open(os.path.join(params["dest"], "postgres", "rat.dump.json"), "w") as handle:
            json.dump(fill(params["dest"]), handle)
        return {"changed": True, "dump": {}, "mirror": {}, "consistency": None, "changed_during": [], "timings": {}}
    monkeypatch.setattr(capture, "capture_into", capture_into)
    monkeypatch.setattr(capture, "commit", REAL_COMMIT)
    root, log = tmp_path / "root", tmp_path / "order"
    began = time.time()
    result = run_module(capsys, args(root, host_name="rat-lab", quiesce_after=sh(log, "after", 4),
                                     log_file=str(tmp_path / "backup.log"), metrics_dir=str(tmp_path)))
    name = result["committed"]["name"]
    assert result["failed"] and result["msg"].startswith(f"backup {name} is complete in ")
    assert result["msg"].endswith("failed (rc 4): said-after; the platform may still be quiesced")
    assert not {"partial", "lock_token"} & set(result) and result["quiesce"]["after"]["rc"] == 4
    assert [b["name"] for b in layout.list_backups(str(root))["complete"]] == [name]
    assert not lock.lock_state(str(root))[0]
    ok, failed = (tmp_path / "backup.log").read_text().splitlines()
    assert f"status=ok name={name}" in ok and f"status=failed name={name}" in failed
    assert "reason=backup " in failed and "said-after" in failed
    metrics = (tmp_path / "rat_backup.prom").read_text()
    assert 'rat_backup_last_status{host="rat-lab"} 0' in metrics
    last_success = [line for line in metrics.splitlines() if line.startswith("rat_backup_last_success_timestamp")]
    assert float(last_success[0].split()[1]) >= began - 1


def test_capture_when_the_command_after_and_the_commit_fail_then_both_said_and_left_to_abort(
        capsys, tmp_path, services):
    log, root = tmp_path / "order", tmp_path / "root"
    result = run_module(capsys, args(root, buckets=["rat", "fail_commit"], quiesce_after=sh(log, "after", 4)))
    try:
        assert result["failed"] and os.path.isdir(result["partial"]) and "committed" not in result
        assert result["msg"] == (f"quiesce_after command {' '.join(sh(log, 'after', 4))} failed (rc 4): said-after; "
                                 f"then backup {result['partial']} is inconsistent, not committed: minio/x missing")
    finally:
        lock.release(str(root), result.get("lock_token"))


def test_capture_when_lock_is_held_by_another_run_then_no_command_runs_and_none_is_said(capsys, tmp_path, services):
    root = tmp_path / "root"
    root.mkdir()
    other, _stale = lock.acquire(str(root), "backup", 60)
    log = tmp_path / "order"
    try:
        result = run_module(capsys, args(root, quiesce_before=sh(log, "before"), quiesce_after=sh(log, "after")))
    finally:
        lock.release(str(root), other["token"])
    assert result["failed"] and "another backup is running" in result["msg"]
    # Said: no quiesce command ran, so the role must not run the one after either.
    assert result["quiesce"] == {} and not log.exists() and "partial" not in result


def test_capture_when_quiesce_command_missing_then_named_and_after_still_runs(capsys, tmp_path, services):
    log = tmp_path / "order"
    result = run_module(capsys, args(tmp_path / "root", quiesce_before=[str(tmp_path / "no-such-command")],
                                     quiesce_after=sh(log, "after")))
    lock.release(str(tmp_path / "root"), result["lock_token"])
    assert result["failed"] and result["msg"] == (f"quiesce_before command {str(tmp_path / 'no-such-command')!r} "
                                                  "could not run: No such file or directory")
    assert log.read_text().startswith("after ") and not [c for c in services if c[0] == "capture"]


def test_capture_when_it_fails_unexpectedly_then_said_with_what_abort_needs(
        capsys, tmp_path, services, monkeypatch):
    def broken(params, log=None):
        raise KeyError("consistency")
    monkeypatch.setattr(capture, "capture_into", broken)
    result = run_module(capsys, args(tmp_path / "root"))
    lock.release(str(tmp_path / "root"), result["lock_token"])
    assert result["failed"] and result["msg"] == "capture failed: KeyError: 'consistency'"
    assert os.path.isdir(result["partial"]) and result["quiesce"] == {} and result["name"] in result["partial"]


def test_capture_when_it_fails_after_the_commit_then_said_complete_with_nothing_for_abort(
        capsys, tmp_path, services, monkeypatch):
    """The role aborts when a failure names a .partial (or a failed check, or an rc): a failure after
    the rename names the complete backup instead, with what the quiesce commands did."""
    def committed_then_fails(params, begun, captured, log=None):
        lock.release(params["root"], begun["lock_token"])
        raise RatBackupError(f"backup {begun['name']} is complete in {begun['backup_dir']}, but after its commit: "
                             "metrics", committed={"name": begun["name"], "backup_dir": begun["backup_dir"]})
    monkeypatch.setattr(capture, "commit", committed_then_fails)
    log = tmp_path / "order"
    result = run_module(capsys, args(tmp_path / "root", quiesce_after=sh(log, "after")))
    assert result["failed"] and result["msg"].endswith("but after its commit: metrics")
    assert not {"partial", "lock_token", "failed_check", "rc"} & set(result)
    assert result["committed"]["name"] == result["committed"]["backup_dir"].rsplit("/", 1)[1]
    assert result["quiesce"]["after"]["rc"] == 0


@pytest.mark.parametrize("ending", [KeyboardInterrupt, SystemExit])
def test_capture_when_interrupted_then_a_result_with_what_abort_needs_and_the_command_after_said(
        capsys, tmp_path, services, monkeypatch, ending):
    """An interrupt is no process death: the command after the quiesce ran, and the result says so
    (the role would run it again for a result without ``quiesce``) with the .partial for abort."""
    def interrupted(params, log=None):
        raise ending()
    monkeypatch.setattr(capture, "capture_into", interrupted)
    log = tmp_path / "order"
    result = run_module(capsys, args(tmp_path / "root", quiesce_after=sh(log, "after")))
    lock.release(str(tmp_path / "root"), result["lock_token"])
    assert result["failed"] and result["msg"] == f"capture failed: {ending.__name__}"
    assert os.path.isdir(result["partial"]) and result["quiesce"]["after"]["rc"] == 0
    assert len(log.read_text().splitlines()) == 1


@pytest.mark.parametrize("ending", [ValueError("no such field"), KeyboardInterrupt()])
def test_capture_start_when_a_check_fails_unexpectedly_then_said_with_no_quiesce_and_nothing_started(
        capsys, tmp_path, services, monkeypatch, ending):
    """Not a process death either: the role must not run the command after a quiesce that never ran."""
    def broken(*_args, **_kwargs):
        raise ending
    monkeypatch.setattr(postgres, "check", broken)
    result = run_module(capsys, args(tmp_path / "root"))
    if isinstance(ending, ValueError):
        # A bug in a check is a failed check: the role records the failed run.
        assert result["msg"] == "the postgres check failed: ValueError: no such field"
        assert result["failed_check"] == "postgres"
    else:
        assert result["msg"] == "the backup's start failed: KeyboardInterrupt" and "failed_check" not in result
    assert result["failed"] and result["quiesce"] == {} and "partial" not in result
    assert not lock.lock_state(str(tmp_path / "root"))[0]


def test_capture_when_sigterm_arrives_then_the_command_after_runs_and_a_result_says_so(tmp_path, services, monkeypatch):
    """The schedule's timeout sends SIGTERM to the whole process group: the capture's process runs the
    command after the quiesce and fails with a result; a process it forked (a mirror worker) still
    ends by the signal. Run in a child process, which SIGTERM would end before the fix."""
    log, root = tmp_path / "order", tmp_path / "root"
    ended = tmp_path / "worker"

    def terminated(params, log=None):
        ready, up = os.pipe()
        worker = os.fork()
        if worker == 0:
            os.write(up, b"up")
            time.sleep(30)
            os._exit(0)
        os.read(ready, 2)
        os.kill(worker, signal.SIGTERM)
        ended.write_text(str(os.waitpid(worker, 0)[1]))
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(10)
        raise AssertionError("SIGTERM did not stop the capture")
    monkeypatch.setattr(capture, "capture_into", terminated)
    params = {name: spec.get("default") for name, spec in backup_capture.argument_spec().items()}
    params.update(args(root, quiesce_after=sh(log, "after")))

    def run():
        before = signal.getsignal(signal.SIGTERM)
        try:
            return capture.run(params)
        except RatBackupError as exc:
            return dict(exc.details, failed=True, msg=exc.msg, handler_restored=signal.getsignal(signal.SIGTERM) == before)
    result = in_child(run)
    lock.release(str(root), result["lock_token"])
    assert result["failed"] and result["msg"] == "capture failed: Terminated: SIGTERM received; the run was stopped"
    assert result["quiesce"]["after"]["rc"] == 0 and log.read_text().startswith("after ")
    assert os.path.isdir(result["partial"])
    status = int(ended.read_text())
    assert os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGTERM
    assert result["handler_restored"]


def test_capture_when_interrupted_and_the_command_after_fails_then_both_said(capsys, tmp_path, services, monkeypatch):
    """The platform may still be quiesced: the message must say so, not only the interrupt."""
    def interrupted(params, log=None):
        raise KeyboardInterrupt()
    monkeypatch.setattr(capture, "capture_into", interrupted)
    log = tmp_path / "order"
    result = run_module(capsys, args(tmp_path / "root", quiesce_after=sh(log, "after", 4)))
    lock.release(str(tmp_path / "root"), result["lock_token"])
    assert result["msg"] == (f"capture failed: KeyboardInterrupt; then quiesce_after command {' '.join(sh(log, 'after', 4))}"
                             " failed (rc 4): said-after")
    assert result["quiesce"]["after"]["rc"] == 4 and os.path.isdir(result["partial"])


def test_quiesce_command_when_it_leaves_a_program_running_with_its_output_then_returns_when_it_exits():
    """A command starting a service in the background that keeps the command's stdout and stderr: the
    quiesce returns once the command has exited (Ansible's command module did), not when the service ends."""
    started = time.monotonic()
    said = quiesce_commands.run(["sh", "-c", "sleep 8 & echo started; echo warned >&2"], "quiesce_after")
    assert time.monotonic() - started < 4, "waited for the program left running"
    assert said["rc"] == 0 and said["stdout"] == "started" and said["stderr"] == "warned"


def test_quiesce_command_when_it_says_much_then_the_tail_of_it_is_kept():
    said = quiesce_commands.run([sys.executable, "-c", "print('é' * 3_000_000 + 'end')"], "quiesce_before")
    assert said["stdout"] == "é" * 1997 + "end"


def test_quiesce_command_when_the_program_it_left_running_writes_on_then_not_into_a_hidden_file(tmp_path):
    """As with Ansible's command module, the output is not read once the command has exited: a program
    left writing to it ends at its next write (SIGPIPE) instead of filling an unlinked file for ever."""
    pid_file = tmp_path / "pid"
    # It writes without a pause: there is always output ready to read.
    script = f'sh -c "echo \\$\\$ > {pid_file}; while :; do echo x; done" & echo started'

    def hung(*_args):
        raise AssertionError("still reading the output of the program left running")
    previous = signal.signal(signal.SIGALRM, hung)
    signal.alarm(10)
    try:
        said = quiesce_commands.run(["sh", "-c", script], "quiesce_after")
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)
    assert said["rc"] == 0
    deadline = time.monotonic() + 5
    while not pid_file.exists() or not pid_file.read_text().strip():
        assert time.monotonic() < deadline
        time.sleep(0.05)
    pid = int(pid_file.read_text())
    try:
        while os.path.exists(f"/proc/{pid}") and open(f"/proc/{pid}/stat").read().split(") ")[1][0] != "Z":
            assert time.monotonic() < deadline, "the program left running still writes"
            time.sleep(0.05)
    finally:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
