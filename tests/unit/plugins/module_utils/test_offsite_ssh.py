# -*- coding: utf-8 -*-
# Copyright: rat.backup contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

import pytest

from ansible_collections.rat.backup.plugins.module_utils.errors import RatBackupError
from ansible_collections.rat.backup.plugins.module_utils._offsite.ssh_target import SshTarget, quote


def target(**kwargs):
    settings = dict(port=2222, user="bk", key_file="/k/id", known_hosts_file="/k/known", bwlimit_kib=512)
    settings.update(kwargs)
    return SshTarget("backup.example", "/srv/off site", "rat-01", **settings)


def test_ssh_argv_when_configured_then_batch_mode_key_and_host_key_checking():
    assert target().ssh_argv() == [
        "ssh", "-p", "2222", "-o", "BatchMode=yes", "-o", "ConnectTimeout=10", "-o", "ServerAliveInterval=15",
        "-o", "ServerAliveCountMax=4", "-o", "StrictHostKeyChecking=yes", "-o", "UserKnownHostsFile=/k/known",
        "-i", "/k/id", "-o", "IdentitiesOnly=yes", "-l", "bk"]


def test_remote_argv_when_command_then_after_double_dash_with_private_umask():
    argv = target().remote_argv("true")
    assert argv[-3:] == ["--", "backup.example", "umask 077; true"]


def test_rsync_argv_when_bwlimit_then_limit_partial_dir_and_files_from_stdin():
    argv = target().rsync_argv("/var/backups/rat/20260101_000000", "20260101_000000")
    assert "--bwlimit=512" in argv and "--partial-dir=.rsync-partial" in argv and "--files-from=-" in argv
    assert argv[-2:] == ["/var/backups/rat/20260101_000000/", "backup.example:/srv/off site/rat-01/20260101_000000.partial/"]
    assert argv[[a.startswith("--rsh=") for a in argv].index(True)].startswith("--rsh=ssh -p 2222")


def test_rsync_argv_when_no_limit_then_no_bwlimit():
    assert not [a for a in target(bwlimit_kib=0).rsync_argv("/r/x", "x") if a.startswith("--bwlimit")]


def test_quote_when_spaces_and_quotes_then_one_word_each():
    assert quote(["cat", "--", "/a b/it's"]) == "cat -- '/a b/it'\"'\"'s'"


@pytest.mark.parametrize("path", ["relative/dir", ""])
def test_target_when_path_not_absolute_then_error_names_variable(path):
    with pytest.raises(RatBackupError) as err:
        SshTarget("h", path, "rat-01")
    assert "rat_offsite_ssh_path" in err.value.msg


def test_target_when_server_looks_like_an_option_then_refused():
    with pytest.raises(RatBackupError) as err:
        SshTarget("-oProxyCommand=x", "/srv", "rat-01")
    assert "rat_offsite_ssh_host" in err.value.msg


def test_backups_when_listing_then_complete_needs_a_manifest(monkeypatch):
    t = target()
    listing = "\0".join(["20260101_000000", "20260101_000000/manifest.json", "20260102_000000",
                         "20260102_000000/minio", "20260103_000000.partial", "20260104_000000",
                         "20260104_000000/manifest.json.age", "lost+found", ""])
    monkeypatch.setattr(t, "remote", lambda command, what, stdin=b"": listing.encode())
    assert t.backups() == {"complete": ["20260101_000000", "20260104_000000"],
                           "partial": ["20260102_000000", "20260103_000000"]}


def test_failure_when_ssh_exit_255_then_unreachable_message():
    error = target()._failure(255, b"ssh: connect to host backup.example port 2222: Connection refused\n", "listing")
    assert "unreachable over SSH" in error.msg and "Connection refused" in error.msg
    assert error.details["unreachable"] is True


def test_failure_when_remote_command_fails_then_names_step_and_error():
    error = target()._failure(1, b"mv: cannot move: File exists\n", "renaming")
    assert "renaming failed: mv: cannot move: File exists" in error.msg
