# -*- coding: utf-8 -*-
# Copyright: rat.backup contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from ansible_collections.rat.backup.plugins.module_utils.backup_root import lock
from ansible_collections.rat.backup.plugins.module_utils.errors import RatBackupError


def test_acquire_when_free_then_second_acquire_refused_until_release(tmp_path):
    root = str(tmp_path)
    record, stale = lock.acquire(root, "backup", 60)
    try:
        assert stale == {}
        assert lock.lock_state(root)[0] is True
        with pytest.raises(RatBackupError) as err:
            lock.acquire(root, "backup", 60)
        assert "pid %d" % record["pid"] in err.value.msg
    finally:
        assert lock.release(root, record["token"]) is True
    assert lock.lock_state(root)[0] is False
    assert lock.read_lock(root)["released_because"] == "released"


def test_acquire_when_keeper_killed_then_lock_free_and_stale_record_returned(tmp_path):
    root = str(tmp_path)
    record, _stale = lock.acquire(root, "backup", 60)
    os.kill(record["pid"], signal.SIGKILL)
    deadline = time.monotonic() + 5
    while lock.lock_state(root)[0] and time.monotonic() < deadline:
        time.sleep(0.05)
    second, stale = lock.acquire(root, "backup", 60)
    try:
        assert stale["pid"] == record["pid"]
        assert second["token"] != record["token"]
    finally:
        lock.release(root, second["token"])


def test_release_when_other_token_then_lock_kept(tmp_path):
    root = str(tmp_path)
    record, _stale = lock.acquire(root, "backup", 60)
    try:
        assert lock.release(root, "someone-else") is False
        assert lock.lock_state(root)[0] is True
    finally:
        lock.release(root, record["token"])


def test_keeper_when_lease_expires_then_lock_released(tmp_path, monkeypatch):
    monkeypatch.setattr(lock, "HEARTBEAT_SECONDS", 0.1)
    root = str(tmp_path)
    lock.acquire(root, "backup", 1)
    deadline = time.monotonic() + 5
    while lock.lock_state(root)[0] and time.monotonic() < deadline:
        time.sleep(0.05)
    assert lock.lock_state(root)[0] is False
    assert lock.read_lock(root)["released_because"] == "lease expired"


def test_release_when_keeper_slow_then_pauses_start_at_1ms_and_grow_to_50ms(tmp_path, monkeypatch):
    answers = iter([True] * 9 + [False])
    pauses = []
    monkeypatch.setattr(lock, "read_lock", lambda root: {"token": "ours", "pid": 0})
    monkeypatch.setattr(lock, "lock_state", lambda root: (next(answers), {}))
    monkeypatch.setattr(lock.time, "sleep", pauses.append)
    assert lock.release(str(tmp_path), "ours") is True
    assert pauses == [0.001, 0.002, 0.004, 0.008, 0.016, 0.032, 0.05, 0.05, 0.05]


def test_release_when_keeper_never_lets_go_then_raises_after_timeout(tmp_path, monkeypatch):
    monkeypatch.setattr(lock, "read_lock", lambda root: {"token": "ours", "pid": 0})
    monkeypatch.setattr(lock, "lock_state", lambda root: (True, {}))
    started = time.monotonic()
    with pytest.raises(RatBackupError, match="did not release"):
        lock.release(str(tmp_path), "ours", timeout=0.2)
    assert 0.2 <= time.monotonic() - started < 2


def test_release_when_own_keeper_then_lock_free_at_return(tmp_path):
    root = str(tmp_path)
    for _round in range(5):
        record, _stale = lock.acquire(root, "backup", 60)
        assert lock.release(root, record["token"]) is True
        assert lock.lock_state(root)[0] is False
        assert lock.read_lock(root)["released_because"] == "released"


def _wait_until_free(root, seconds=10):
    deadline = time.monotonic() + seconds
    while lock.lock_state(root)[0] and time.monotonic() < deadline:
        time.sleep(0.05)
    return not lock.lock_state(root)[0]


def in_child(take):
    """``take()`` (which takes a lock) run in a child process that then ends, as a module process
    does; returns what it returned (JSON)."""
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            os.close(read_end)
            os.write(write_end, json.dumps(take()).encode())
        finally:
            os._exit(0)
    os.close(write_end)
    with os.fdopen(read_end, "rb") as pipe:
        said = pipe.read()
    os.waitpid(pid, 0)
    assert said, "the child taking the lock failed"
    return json.loads(said)


def acquired_by_a_task(root, idle_seconds):
    """The lock as a task over SSH leaves it: taken by a process that has ended since."""
    record = in_child(lambda: lock.acquire(root, "backup", 60, idle_seconds=idle_seconds)[0])
    assert not lock._proc_alive(record["taker_pid"])  # pylint: disable=protected-access
    return record


@pytest.fixture
def remote_run(monkeypatch):
    """Locks taken as by a run over SSH: no ansible-playbook on this host to follow."""
    monkeypatch.setattr(lock, "HEARTBEAT_SECONDS", 0.1)
    monkeypatch.setattr(lock, "_anchor", lambda pid: (1, "ssh"))


def test_keeper_when_remote_run_has_no_process_left_then_gives_up_after_idle(tmp_path, remote_run):
    root = str(tmp_path)
    record = acquired_by_a_task(root, idle_seconds=1)
    assert record["anchor"] == "ssh" and record["run_id"]
    assert _wait_until_free(root)
    assert lock.read_lock(root)["released_because"] == "idle: no process of the run for 1 s"


def test_keeper_when_the_process_that_took_the_lock_lives_then_holds_until_it_ends(tmp_path, remote_run):
    """backup_capture holds the lock for its whole capture in the process that took it, which does
    not carry the run's marker itself."""
    root = str(tmp_path)
    record, _stale = lock.acquire(root, "backup", 60, idle_seconds=1)
    assert record["taker_pid"] == os.getpid() and lock.run_processes(record["run_id"]) == []
    time.sleep(2.5)
    assert lock.lock_state(root)[0] is True
    assert lock.release(root, record["token"]) is True


def test_keeper_when_the_taker_pid_is_another_process_now_then_gives_up_after_idle(tmp_path, remote_run):
    """A pid is given again once its process has ended: a living process under the taker's pid that
    started at another time is not the run (it would hold the lock to the end of the lease)."""
    root = str(tmp_path)
    record = acquired_by_a_task(root, idle_seconds=1)
    time.sleep(0.05)  # a later start, in clock ticks
    reused = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        # The keeper's record as if the taker's pid now named this other, living process.
        gone = lock._run_watch(dict(record, taker_pid=reused.pid))  # pylint: disable=protected-access
        deadline = time.monotonic() + 5
        while gone() is None and time.monotonic() < deadline:
            time.sleep(0.1)
        assert gone() == "idle: no process of the run for 1 s"
        # The very process that took it keeps it.
        started = lock._started(reused.pid)  # pylint: disable=protected-access
        alive = lock._run_watch(dict(record, taker_pid=reused.pid, taker_started=started))  # pylint: disable=protected-access
        time.sleep(1.5)
        assert alive() is None
    finally:
        reused.kill()
        reused.wait()
        _wait_until_free(root)


def test_keeper_when_a_process_carries_the_run_marker_then_holds_until_it_ends(tmp_path, remote_run):
    root = str(tmp_path)
    record = acquired_by_a_task(root, idle_seconds=1)
    env = dict(os.environ, **{lock.RUN_MARKER: record["run_id"]})
    task = subprocess.Popen(["sleep", "2.5"], env=env)
    try:
        # The kernel lets Popen return once exec is past its point of no return, a moment before
        # the new image's environment is readable in /proc: look again for up to a second.
        deadline = time.monotonic() + 1
        while lock.run_processes(record["run_id"]) != [task.pid] and time.monotonic() < deadline:
            time.sleep(0.01)
        assert lock.run_processes(record["run_id"]) == [task.pid]
        time.sleep(1.5)
        assert lock.lock_state(root)[0] is True
    finally:
        task.wait()
    assert _wait_until_free(root)
    assert lock.read_lock(root)["released_because"].startswith(lock.IDLE_REASON)


def test_reclaim_when_given_up_for_idleness_then_same_token_and_run_again(tmp_path, remote_run):
    root = str(tmp_path)
    record = acquired_by_a_task(root, idle_seconds=1)
    assert _wait_until_free(root)
    again = lock.reclaim(root, record["token"])
    try:
        assert again["token"] == record["token"] and again["run_id"] == record["run_id"]
        assert lock.lock_state(root)[0] is True
        assert lock.reclaim(root, record["token"]) is None
    finally:
        lock.release(root, record["token"])


def test_reclaim_when_another_run_took_the_lock_since_then_refused(tmp_path, remote_run):
    root = str(tmp_path)
    record = acquired_by_a_task(root, idle_seconds=1)
    assert _wait_until_free(root)
    other, _stale = lock.acquire(root, "backup", 60, idle_seconds=0)
    lock.release(root, other["token"])
    assert lock.reclaim(root, record["token"]) is None
    assert lock.lock_state(root)[0] is False


def test_reclaim_when_released_normally_or_killed_then_refused(tmp_path, remote_run):
    root = str(tmp_path)
    record, _stale = lock.acquire(root, "backup", 60, idle_seconds=0)
    lock.release(root, record["token"])
    assert lock.reclaim(root, record["token"]) is None
    record, _stale = lock.acquire(root, "backup", 60, idle_seconds=0)
    os.kill(record["pid"], signal.SIGKILL)
    assert _wait_until_free(root)
    assert lock.reclaim(root, record["token"]) is None


def test_read_lock_when_keeper_is_mid_rewrite_then_read_again_not_taken_for_empty(monkeypatch, tmp_path):
    reads = iter([b"", b'{"tok', b'{"token": "ours", "pid": 7}'])
    monkeypatch.setattr(lock, "_lock_bytes", lambda root: next(reads))
    assert lock.read_lock(str(tmp_path), pause=0) == {"token": "ours", "pid": 7}
    monkeypatch.setattr(lock, "_lock_bytes", lambda root: b"")
    assert lock.read_lock(str(tmp_path), pause=0) == {}


def test_hold_when_held_by_another_process_then_refused_until_it_exits(tmp_path):
    path = str(tmp_path / ".lock")
    holder = subprocess.Popen([sys.executable, "-c", "import fcntl, sys, time; f = open(sys.argv[1], 'w'); "
                               "fcntl.flock(f, fcntl.LOCK_EX); print('held', flush=True); time.sleep(30)", path],
                              stdout=subprocess.PIPE)
    try:
        assert holder.stdout.readline() == b"held\n"
        with pytest.raises(RatBackupError) as err:
            lock.hold(path, "busy")
        assert err.value.msg == "busy"
    finally:
        holder.kill()
        holder.wait()
    os.close(lock.hold(path, "busy"))
