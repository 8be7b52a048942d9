# -*- coding: utf-8 -*-
# Copyright: rat.backup contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

import datetime
import hashlib
import os
import stat

import pytest

from ansible_collections.rat.backup.plugins.module_utils import fs
from ansible_collections.rat.backup.plugins.module_utils.errors import RatBackupError

WHEN = datetime.datetime(2026, 2, 16, 9, 30, 0, 123456, tzinfo=datetime.timezone.utc)


def test_iso_when_seconds_or_ms_then_utc_with_z():
    local = WHEN.astimezone(datetime.timezone(datetime.timedelta(hours=2)))
    assert fs.iso(local) == "2026-02-16T09:30:00Z"
    assert fs.iso(local, ms=True) == "2026-02-16T09:30:00.123Z"
    assert fs.parse_time(fs.iso(WHEN)) == WHEN.replace(microsecond=0)
    assert fs.parse_time("yesterday") is None


@pytest.mark.parametrize("path", ["../etc/passwd", "/etc/passwd", "minio//x", "minio/./x", "", "a/\x00", "a/b\nc",
                                  "a/\x7f", None])
def test_safe_relpath_when_path_could_escape_or_is_not_text_then_refused(path):
    with pytest.raises(RatBackupError, match="unsafe path"):
        fs.safe_relpath(path, "manifest.json")


def test_safe_relpath_when_backslash_or_unicode_then_kept_as_linux_allows_them():
    assert fs.safe_relpath("minio/rat/a\\b ü", "manifest.json") == "minio/rat/a\\b ü"


def test_atomic_writer_when_mode_given_then_exact_mode_despite_umask(tmp_path):
    old = os.umask(0o077)
    try:
        with fs.atomic_writer(str(tmp_path / "m.prom"), mode=0o644) as handle:
            handle.write("x 1\n")
    finally:
        os.umask(old)
    assert stat.S_IMODE(os.stat(tmp_path / "m.prom").st_mode) == 0o644
    assert os.listdir(tmp_path) == ["m.prom"]


def test_atomic_writer_when_body_fails_then_old_file_kept_and_no_temp_left(tmp_path):
    path = tmp_path / "state.json"
    fs.write_text_atomic(str(path), "old\n")
    with pytest.raises(ValueError):
        with fs.atomic_writer(str(path)) as handle:
            handle.write("half")
            raise ValueError("boom")
    assert path.read_text() == "old\n"
    assert os.listdir(tmp_path) == ["state.json"]
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600


def test_sha256_file_when_symlink_then_refused_unless_followed(tmp_path):
    (tmp_path / "f").write_bytes(b"x" * (fs.CHUNK + 3))
    os.symlink("f", str(tmp_path / "l"))
    expected = hashlib.sha256(b"x" * (fs.CHUNK + 3)).hexdigest()
    assert fs.sha256_file(str(tmp_path / "f")) == expected
    assert fs.sha256_file(str(tmp_path / "l"), follow_symlinks=True) == expected
    with pytest.raises(OSError):
        fs.sha256_file(str(tmp_path / "l"))


def test_nearest_existing_dir_when_path_not_made_yet_then_closest_parent(tmp_path):
    assert fs.nearest_existing_dir(str(tmp_path / "a" / "b")) == str(tmp_path)
    assert fs.free_bytes(str(tmp_path)) > 0


def test_json_lines_when_last_line_torn_then_it_is_passed_over(tmp_path):
    path = tmp_path / "run.journal"
    path.write_bytes(b'{"path": "a"}\n{"path": "b\xc3\xbc"}\n{"path": "c", "si')
    assert list(fs.json_lines(str(path))) == [{"path": "a"}, {"path": "b\u00fc"}]
