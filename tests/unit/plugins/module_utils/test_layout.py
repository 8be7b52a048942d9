# -*- coding: utf-8 -*-
# Copyright: rat.backup contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

import datetime
import errno
import json
import os
import signal
import subprocess
import time

import pytest

from ansible_collections.rat.backup.plugins.module_utils import layout
from ansible_collections.rat.backup.plugins.module_utils.errors import RatBackupError

NOW = datetime.datetime(2026, 2, 16, 9, 30, 0, tzinfo=datetime.timezone.utc)


def make_backup(root, name, complete=True):
    path = os.path.join(str(root), name)
    os.makedirs(os.path.join(path, "postgres"))
    with open(os.path.join(path, "postgres", "rat.dump"), "wb") as handle:
        handle.write(b"x" * 10)
    if complete:
        with open(os.path.join(path, "manifest.json"), "w") as handle:
            json.dump({"format": 1}, handle)
    return path


def test_name_for_when_utc_time_then_timestamp_name():
    assert layout.name_for(NOW) == "20260216_093000"
    assert layout.time_of("20260216_093000") == NOW


@pytest.mark.parametrize("bad", ["../20260216_093000", "20260216_093000/..", "a/b", "..", "", "latest2",
                                 "20261316_093000", "20260216_093000.partial", "/etc"])
def test_check_name_when_not_a_bare_timestamp_then_refused(bad):
    with pytest.raises(RatBackupError) as err:
        layout.check_name(bad, "rat_restore_backup")
    assert "rat_restore_backup" in err.value.msg


def test_check_name_when_yaml_read_it_as_integer_then_name_restored():
    assert layout.check_name(20260216093000) == "20260216_093000"
    assert layout.check_name("20260216093000") == "20260216_093000"


def test_list_backups_when_mixed_directories_then_grouped_and_sorted(tmp_path):
    make_backup(tmp_path, "20260216_093000")
    make_backup(tmp_path, "20260215_093000")
    make_backup(tmp_path, "20260216_100000.partial", complete=False)
    make_backup(tmp_path, "20260216_110000", complete=False)  # no manifest: never restorable
    make_backup(tmp_path / "pre-restore", "20260216_120000")
    os.makedirs(tmp_path / "not-a-backup")
    os.symlink(str(tmp_path / "20260216_093000"), str(tmp_path / "20260217_000000"))
    found = layout.list_backups(str(tmp_path), NOW, sizes=True)
    assert [b["name"] for b in found["complete"]] == ["20260215_093000", "20260216_093000"]
    assert [b["name"] for b in found["partial"]] == ["20260216_100000", "20260216_110000"]
    assert [b["name"] for b in found["pre_restore"]] == ["20260216_120000"]
    assert found["complete"][1]["age_seconds"] == 0
    assert found["complete"][1]["size"] > 10


def test_list_backups_when_file_hard_linked_then_not_unique(tmp_path):
    first = make_backup(tmp_path, "20260215_093000")
    second = make_backup(tmp_path, "20260216_093000")
    os.link(os.path.join(first, "postgres", "rat.dump"), os.path.join(second, "postgres", "linked"))
    found = layout.list_backups(str(tmp_path), NOW, sizes=True)
    by_name = {b["name"]: b for b in found["complete"]}
    assert by_name["20260216_093000"]["size"] == by_name["20260216_093000"]["unique_bytes"] + 10


def test_list_backups_when_root_missing_then_empty(tmp_path):
    assert layout.list_backups(str(tmp_path / "nope")) == {"complete": [], "partial": [], "pre_restore": []}


def test_select_when_latest_then_newest_complete(tmp_path):
    make_backup(tmp_path, "20260215_093000")
    make_backup(tmp_path, "20260216_093000")
    make_backup(tmp_path, "20260217_093000.partial", complete=False)
    assert layout.select(str(tmp_path), "latest")["name"] == "20260216_093000"


def test_select_when_unknown_name_then_error_lists_available(tmp_path):
    make_backup(tmp_path, "20260215_093000")
    with pytest.raises(RatBackupError) as err:
        layout.select(str(tmp_path), "20200101_000000")
    assert "20260215_093000" in err.value.msg
    assert err.value.details["available"] == ["20260215_093000"]


def test_select_when_partial_name_then_refused(tmp_path):
    make_backup(tmp_path, "20260216_100000", complete=False)
    with pytest.raises(RatBackupError):
        layout.select(str(tmp_path), "20260216_100000")


def test_select_when_latest_and_no_backup_then_error(tmp_path):
    with pytest.raises(RatBackupError) as err:
        layout.select(str(tmp_path), "latest")
    assert "no complete backup" in err.value.msg


def test_new_name_when_second_taken_then_next_second(tmp_path):
    make_backup(tmp_path, "20260216_093000.partial", complete=False)
    assert layout.new_name(str(tmp_path), NOW) == "20260216_093001"


def test_ensure_root_when_not_writable_then_error_names_path(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(RatBackupError) as err:
        layout.ensure_root(str(blocker / "root"))
    assert str(blocker / "root") in err.value.msg


def test_secure_tree_when_loose_modes_then_0700_0600_and_symlink_target_untouched(tmp_path):
    path = make_backup(tmp_path, "20260216_093000")
    outside = tmp_path / "outside"
    outside.write_text("x")
    os.chmod(str(outside), 0o644)
    os.symlink(str(outside), os.path.join(path, "link"))
    os.chmod(os.path.join(path, "postgres", "rat.dump"), 0o644)
    layout.secure_tree(path)
    assert os.stat(os.path.join(path, "postgres")).st_mode & 0o777 == 0o700
    assert os.stat(os.path.join(path, "postgres", "rat.dump")).st_mode & 0o777 == 0o600
    assert os.stat(str(outside)).st_mode & 0o777 == 0o644


def test_secure_tree_when_nested_dir_loose_then_0700(tmp_path):
    path = make_backup(tmp_path, "20260216_093000")
    nested = os.path.join(path, "minio", "rat", "a b")
    os.makedirs(nested)
    os.chmod(os.path.join(path, "minio"), 0o755)
    os.chmod(nested, 0o750)
    os.chmod(path, 0o755)
    layout.secure_tree(path)
    for directory in (path, os.path.join(path, "minio"), os.path.join(path, "minio", "rat"), nested):
        assert os.lstat(directory).st_mode & 0o777 == 0o700


def test_secure_tree_when_modes_already_right_then_hard_linked_inode_ctime_kept(tmp_path):
    older = make_backup(tmp_path, "20260216_093000")
    newer = os.path.join(str(tmp_path), "20260217_093000.partial")
    os.makedirs(os.path.join(newer, "postgres"), 0o700)
    os.chmod(newer, 0o700)
    shared = os.path.join(older, "postgres", "rat.dump")
    os.chmod(shared, 0o600)
    os.link(shared, os.path.join(newer, "postgres", "rat.dump"))
    before = {p: os.lstat(p).st_ctime_ns for p in (newer, os.path.join(newer, "postgres"), shared)}
    # The kernel's ctime clock ticks every few ms: long enough for a chmod to show.
    time.sleep(0.05)
    layout.secure_tree(newer)
    assert {p: os.lstat(p).st_ctime_ns for p in before} == before


def test_sync_tree_when_syncfs_works_then_no_directory_fsynced(tmp_path, monkeypatch):
    path = make_backup(tmp_path, "20260216_093000.partial", complete=False)
    calls, fsynced = [], []
    monkeypatch.setattr(layout, "_syncfs", lambda: lambda fd: calls.append(os.fstat(fd).st_ino) or 0)
    monkeypatch.setattr(layout, "fsync_dir", fsynced.append)
    layout.sync_tree(path)
    assert calls == [os.stat(path).st_ino]
    assert fsynced == []


@pytest.mark.parametrize("syncfs", [None, lambda fd: errno.ENOSYS, lambda fd: errno.EPERM],
                         ids=["no-syncfs", "enosys", "eperm"])
def test_sync_tree_when_syncfs_unavailable_then_every_directory_fsynced(tmp_path, monkeypatch, syncfs):
    path = make_backup(tmp_path, "20260216_093000.partial", complete=False)
    os.makedirs(os.path.join(path, "minio", "rat", "a"))
    outside = tmp_path / "outside"
    outside.mkdir()
    os.symlink(str(outside), os.path.join(path, "minio", "link"))
    fsynced = []
    monkeypatch.setattr(layout, "_syncfs", lambda: syncfs)
    monkeypatch.setattr(layout, "fsync_dir", fsynced.append)
    layout.sync_tree(path)
    assert sorted(fsynced) == sorted([path] + [os.path.join(path, d) for d in
                                               ("postgres", "minio", "minio/rat", "minio/rat/a")])


def test_sync_tree_when_syncfs_reports_write_error_then_raises_without_fallback(tmp_path, monkeypatch):
    path = make_backup(tmp_path, "20260216_093000.partial", complete=False)
    fsynced = []
    monkeypatch.setattr(layout, "_syncfs", lambda: lambda fd: errno.EIO)
    monkeypatch.setattr(layout, "fsync_dir", fsynced.append)
    with pytest.raises(RatBackupError, match="cannot make .* durable .*syncfs") as err:
        layout.sync_tree(path)
    assert err.value.details["path"] == path
    assert fsynced == []


def test_syncfs_when_linux_then_real_call_succeeds(tmp_path):
    if not os.uname().sysname == "Linux":
        pytest.skip("syncfs is Linux only")
    syncfs = layout._syncfs()
    fd = os.open(str(tmp_path), os.O_RDONLY | os.O_DIRECTORY)
    try:
        assert syncfs(fd) == 0
        assert syncfs(-1) == errno.EBADF
    finally:
        os.close(fd)


def test_remove_tree_when_symlinked_dir_inside_then_target_survives(tmp_path):
    path = make_backup(tmp_path, "20260216_093000.partial", complete=False)
    victim = tmp_path / "victim"
    victim.mkdir()
    (victim / "keep").write_text("x")
    os.symlink(str(victim), os.path.join(path, "minio"))
    layout.remove_tree(path)
    assert not os.path.exists(path)
    assert (victim / "keep").exists()


def test_status_when_written_then_read_back(tmp_path):
    path, note = layout.write_status(str(tmp_path), "20260216_093000", "verify", {"ok": True})
    assert (path, note) == (str(tmp_path / ".status" / "20260216_093000.verify.json"), None)
    assert layout.read_status(str(tmp_path), "20260216_093000") == {"verify": {"ok": True}}


def test_status_when_root_not_writable_then_skipped_with_note_and_nothing_left(tmp_path, monkeypatch):
    def read_only(*_args, **_kwargs):
        raise OSError(errno.EROFS, "Read-only file system")
    monkeypatch.setattr(layout.os, "makedirs", read_only)
    path, note = layout.write_status(str(tmp_path), "20260216_093000", "verify", {"ok": True})
    assert path is None
    assert note == ("the verify record of 20260216_093000 was not kept: %s cannot be written (Read-only file system)"
                    % (tmp_path / ".status"))
    assert os.listdir(str(tmp_path)) == []


def test_acquire_when_free_then_second_acquire_refused_until_release(tmp_path):
    root = str(tmp_path)
    record, stale = layout.acquire(root, "backup", 60)
    try:
        assert stale == {}
        assert layout.lock_state(root)[0] is True
        with pytest.raises(RatBackupError) as err:
            layout.acquire(root, "backup", 60)
        assert "pid %d" % record["pid"] in err.value.msg
    finally:
        assert layout.release(root, record["token"]) is True
    assert layout.lock_state(root)[0] is False
    assert layout.read_lock(root)["released_because"] == "released"


def test_acquire_when_keeper_killed_then_lock_free_and_stale_record_returned(tmp_path):
    root = str(tmp_path)
    record, _stale = layout.acquire(root, "backup", 60)
    os.kill(record["pid"], signal.SIGKILL)
    deadline = time.monotonic() + 5
    while layout.lock_state(root)[0] and time.monotonic() < deadline:
        time.sleep(0.05)
    second, stale = layout.acquire(root, "backup", 60)
    try:
        assert stale["pid"] == record["pid"]
        assert second["token"] != record["token"]
    finally:
        layout.release(root, second["token"])


def test_release_when_other_token_then_lock_kept(tmp_path):
    root = str(tmp_path)
    record, _stale = layout.acquire(root, "backup", 60)
    try:
        assert layout.release(root, "someone-else") is False
        assert layout.lock_state(root)[0] is True
    finally:
        layout.release(root, record["token"])


def test_keeper_when_lease_expires_then_lock_released(tmp_path, monkeypatch):
    monkeypatch.setattr(layout, "HEARTBEAT_SECONDS", 0.1)
    root = str(tmp_path)
    layout.acquire(root, "backup", 1)
    deadline = time.monotonic() + 5
    while layout.lock_state(root)[0] and time.monotonic() < deadline:
        time.sleep(0.05)
    assert layout.lock_state(root)[0] is False
    assert layout.read_lock(root)["released_because"] == "lease expired"


def test_release_when_keeper_slow_then_pauses_start_at_1ms_and_grow_to_50ms(tmp_path, monkeypatch):
    answers = iter([True] * 9 + [False])
    pauses = []
    monkeypatch.setattr(layout, "read_lock", lambda root: {"token": "ours", "pid": 0})
    monkeypatch.setattr(layout, "lock_state", lambda root: (next(answers), {}))
    monkeypatch.setattr(layout.time, "sleep", pauses.append)
    assert layout.release(str(tmp_path), "ours") is True
    assert pauses == [0.001, 0.002, 0.004, 0.008, 0.016, 0.032, 0.05, 0.05, 0.05]


def test_release_when_keeper_never_lets_go_then_raises_after_timeout(tmp_path, monkeypatch):
    monkeypatch.setattr(layout, "read_lock", lambda root: {"token": "ours", "pid": 0})
    monkeypatch.setattr(layout, "lock_state", lambda root: (True, {}))
    started = time.monotonic()
    with pytest.raises(RatBackupError, match="did not release"):
        layout.release(str(tmp_path), "ours", timeout=0.2)
    assert 0.2 <= time.monotonic() - started < 2


def test_release_when_own_keeper_then_lock_free_at_return(tmp_path):
    root = str(tmp_path)
    for _round in range(5):
        record, _stale = layout.acquire(root, "backup", 60)
        assert layout.release(root, record["token"]) is True
        assert layout.lock_state(root)[0] is False
        assert layout.read_lock(root)["released_because"] == "released"


def _wait_until_free(root, seconds=10):
    deadline = time.monotonic() + seconds
    while layout.lock_state(root)[0] and time.monotonic() < deadline:
        time.sleep(0.05)
    return not layout.lock_state(root)[0]


@pytest.fixture
def remote_run(monkeypatch):
    """Locks taken as by a run over SSH: no ansible-playbook on this host to follow."""
    monkeypatch.setattr(layout, "HEARTBEAT_SECONDS", 0.1)
    monkeypatch.setattr(layout, "_anchor", lambda pid: (1, "ssh"))


def test_keeper_when_remote_run_has_no_process_left_then_gives_up_after_idle(tmp_path, remote_run):
    root = str(tmp_path)
    record, _stale = layout.acquire(root, "backup", 60, idle_seconds=1)
    assert record["anchor"] == "ssh" and record["run_id"]
    assert _wait_until_free(root)
    assert layout.read_lock(root)["released_because"] == "idle: no process of the run for 1 s"


def test_keeper_when_a_process_carries_the_run_marker_then_holds_until_it_ends(tmp_path, remote_run):
    root = str(tmp_path)
    record, _stale = layout.acquire(root, "backup", 60, idle_seconds=1)
    env = dict(os.environ, **{layout.RUN_MARKER: record["run_id"]})
    task = subprocess.Popen(["sleep", "2.5"], env=env)
    try:
        assert layout.run_processes(record["run_id"]) == [task.pid]
        time.sleep(2)
        assert layout.lock_state(root)[0] is True
    finally:
        task.wait()
    assert _wait_until_free(root)
    assert layout.read_lock(root)["released_because"].startswith(layout.IDLE_REASON)


def test_reclaim_when_given_up_for_idleness_then_same_token_and_run_again(tmp_path, remote_run):
    root = str(tmp_path)
    record, _stale = layout.acquire(root, "backup", 60, idle_seconds=1)
    assert _wait_until_free(root)
    again = layout.reclaim(root, record["token"])
    try:
        assert again["token"] == record["token"] and again["run_id"] == record["run_id"]
        assert layout.lock_state(root)[0] is True
        assert layout.reclaim(root, record["token"]) is None
    finally:
        layout.release(root, record["token"])


def test_reclaim_when_another_run_took_the_lock_since_then_refused(tmp_path, remote_run):
    root = str(tmp_path)
    record, _stale = layout.acquire(root, "backup", 60, idle_seconds=1)
    assert _wait_until_free(root)
    other, _stale = layout.acquire(root, "backup", 60, idle_seconds=0)
    layout.release(root, other["token"])
    assert layout.reclaim(root, record["token"]) is None
    assert layout.lock_state(root)[0] is False


def test_reclaim_when_released_normally_or_killed_then_refused(tmp_path, remote_run):
    root = str(tmp_path)
    record, _stale = layout.acquire(root, "backup", 60, idle_seconds=0)
    layout.release(root, record["token"])
    assert layout.reclaim(root, record["token"]) is None
    record, _stale = layout.acquire(root, "backup", 60, idle_seconds=0)
    os.kill(record["pid"], signal.SIGKILL)
    assert _wait_until_free(root)
    assert layout.reclaim(root, record["token"]) is None


def test_read_lock_when_keeper_is_mid_rewrite_then_read_again_not_taken_for_empty(monkeypatch, tmp_path):
    reads = iter([b"", b'{"tok', b'{"token": "ours", "pid": 7}'])
    monkeypatch.setattr(layout, "_lock_bytes", lambda root: next(reads))
    assert layout.read_lock(str(tmp_path), pause=0) == {"token": "ours", "pid": 7}
    monkeypatch.setattr(layout, "_lock_bytes", lambda root: b"")
    assert layout.read_lock(str(tmp_path), pause=0) == {}
