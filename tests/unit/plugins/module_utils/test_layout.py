# -*- coding: utf-8 -*-
# Copyright: rat.backup contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

import datetime
import errno
import json
import os
import time

import pytest

from ansible_collections.rat.backup.plugins.module_utils import fs
from ansible_collections.rat.backup.plugins.module_utils.backup_root import layout
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
    make_backup(tmp_path / "pre-restore", "20260216_092000")
    os.makedirs(tmp_path / "not-a-backup")
    os.symlink(str(tmp_path / "20260216_093000"), str(tmp_path / "20260217_000000"))
    found = layout.list_backups(str(tmp_path), NOW, sizes=True)
    assert [b["name"] for b in found["complete"]] == ["20260215_093000", "20260216_093000"]
    assert [b["name"] for b in found["partial"]] == ["20260216_100000", "20260216_110000"]
    assert [b["name"] for b in found["pre_restore"]] == ["20260216_092000"]
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
    assert layout.list_backups(str(tmp_path / "nope")) == {"complete": [], "partial": [], "pre_restore": [],
                                                           "future": []}


def test_list_backups_when_named_in_the_future_then_apart_and_never_latest(tmp_path):
    # Issue 27 item 10: a copied directory or a wrong clock named a backup a year ahead.
    make_backup(tmp_path, "20260216_093000")
    make_backup(tmp_path, "20260216_093900")  # 9 minutes ahead: within FUTURE_SKEW
    make_backup(tmp_path, "20270216_093000")
    os.makedirs(tmp_path / "pre-restore")
    make_backup(tmp_path / "pre-restore", "20270216_093000")
    found = layout.list_backups(str(tmp_path), NOW)
    assert [e["name"] for e in found["complete"]] == ["20260216_093000", "20260216_093900"]
    assert [(e["name"], e["kind"]) for e in found["future"]] == [("20270216_093000", "complete"),
                                                                 ("20270216_093000", "pre_restore")]
    assert found["pre_restore"] == [] and found["future"][0]["age_seconds"] < 0
    assert layout.newest(["20260216_093000", "20260216_093900", "20270216_093000"], NOW) == "20260216_093900"
    assert layout.newest(["20270216_093000"], NOW) is None


def test_select_when_future_named_backup_then_latest_skips_it_and_its_name_finds_it(tmp_path):
    make_backup(tmp_path, "20260215_093000")
    make_backup(tmp_path, "20991231_000000")
    assert layout.select(str(tmp_path), "latest")["name"] == "20260215_093000"
    assert layout.previous_complete(str(tmp_path))["name"] == "20260215_093000"
    assert layout.select(str(tmp_path), "20991231_000000")["name"] == "20991231_000000"
    layout.remove_tree(str(tmp_path / "20260215_093000"))
    with pytest.raises(RatBackupError) as err:
        layout.select(str(tmp_path), "latest")
    assert "only 20991231_000000, named in the future" in err.value.msg


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
    monkeypatch.setattr(fs, "_syncfs", lambda: lambda fd: calls.append(os.fstat(fd).st_ino) or 0)
    monkeypatch.setattr(fs, "fsync_dir", fsynced.append)
    fs.sync_tree(path)
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
    monkeypatch.setattr(fs, "_syncfs", lambda: syncfs)
    monkeypatch.setattr(fs, "fsync_dir", fsynced.append)
    fs.sync_tree(path)
    assert sorted(fsynced) == sorted([path] + [os.path.join(path, d) for d in
                                               ("postgres", "minio", "minio/rat", "minio/rat/a")])


@pytest.mark.parametrize("syncfs", [None, lambda fd: errno.ENOSYS], ids=["no-syncfs", "enosys"])
def test_sync_tree_when_syncfs_refused_then_file_data_fsynced_too(tmp_path, monkeypatch, syncfs):
    """Writers skip their own fsync where has_syncfs() says a syncfs will come: when it is then
    refused (seccomp), the fallback must flush file data too, not only directory entries. Where
    there is no syncfs at all the files were fsynced as written: only directories are."""
    path = make_backup(tmp_path, "20260216_093000.partial", complete=False)
    outside = tmp_path / "outside.txt"
    outside.write_text("not the tree's")
    os.makedirs(os.path.join(path, "minio", "rat"), exist_ok=True)
    with open(os.path.join(path, "minio", "rat", "a.csv"), "w") as handle:
        handle.write("1,2\n")
    os.symlink(str(outside), os.path.join(path, "minio", "link.txt"))
    monkeypatch.setattr(fs, "_syncfs", lambda: syncfs)
    monkeypatch.setattr(fs, "fsync_dir", lambda p: None)
    synced = []
    real_fsync = os.fsync
    monkeypatch.setattr(os, "fsync", lambda fd: synced.append(os.readlink(f"/proc/self/fd/{fd}")) or real_fsync(fd))
    fs.sync_tree(path)
    files = sorted(os.path.join(parent, name) for parent, dummy, names in os.walk(path) for name in names
                   if not os.path.islink(os.path.join(parent, name)))
    assert files and sorted(synced) == (files if syncfs is not None else [])


def test_sync_tree_when_syncfs_reports_write_error_then_raises_without_fallback(tmp_path, monkeypatch):
    path = make_backup(tmp_path, "20260216_093000.partial", complete=False)
    fsynced = []
    monkeypatch.setattr(fs, "_syncfs", lambda: lambda fd: errno.EIO)
    monkeypatch.setattr(fs, "fsync_dir", fsynced.append)
    with pytest.raises(RatBackupError, match="cannot make .* durable .*syncfs") as err:
        fs.sync_tree(path)
    assert err.value.details["path"] == path
    assert fsynced == []


def test_syncfs_when_linux_then_real_call_succeeds(tmp_path):
    if not os.uname().sysname == "Linux":
        pytest.skip("syncfs is Linux only")
    syncfs = fs._syncfs()
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
