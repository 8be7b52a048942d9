# -*- coding: utf-8 -*-
# Copyright: rat.backup contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

import hashlib
import io
import os

import pytest

from ansible_collections.rat.backup.plugins.module_utils import integrity, postgres, postgres_restore
from ansible_collections.rat.backup.plugins.module_utils.errors import RatBackupError

DATA = b"PGDMP" + bytes(range(256)) * 40


def sha(data):
    return hashlib.sha256(data).hexdigest()


def test_hashing_reader_when_bytes_match_then_finish_returns_sha256():
    reader = integrity.HashingReader(io.BytesIO(DATA), "s3://b/k", len(DATA), sha(DATA))
    assert reader.read(100) + reader.read() == DATA
    assert reader.finish() == sha(DATA)


def test_hashing_reader_when_same_size_other_bytes_then_mismatch_names_object():
    other = b"X" + DATA[1:]
    reader = integrity.HashingReader(io.BytesIO(other), "s3://b/k", len(DATA), sha(DATA))
    reader.read()
    with pytest.raises(integrity.Mismatch) as err:
        reader.finish()
    assert err.value.msg.startswith("s3://b/k changed since it was verified: the bytes read have sha256 %s" % sha(other))


def test_hashing_reader_when_file_grew_then_mismatch():
    reader = integrity.HashingReader(io.BytesIO(DATA + b"more"), "f", len(DATA), sha(DATA))
    reader.read(len(DATA))
    with pytest.raises(integrity.Mismatch) as err:
        reader.finish()
    assert "longer than the %d bytes" % len(DATA) in err.value.msg


def test_private_copy_when_source_matches_then_copy_in_private_directory(tmp_path):
    src = tmp_path / "rat.dump"
    src.write_bytes(DATA)
    directory, path = integrity.private_copy(str(src), sha(DATA), str(tmp_path))
    assert os.path.dirname(path) == directory and open(path, "rb").read() == DATA
    assert os.stat(directory).st_mode & 0o777 == 0o700


def test_private_copy_when_source_changed_then_refused_and_nothing_left(tmp_path):
    src = tmp_path / "rat.dump"
    src.write_bytes(DATA)
    with pytest.raises(integrity.Mismatch) as err:
        integrity.private_copy(str(src), sha(b"other"), str(tmp_path))
    assert "%s changed since it was verified" % src in err.value.msg
    assert os.listdir(str(tmp_path)) == ["rat.dump"]


def test_private_copy_when_work_dir_too_small_then_refused_before_copying(tmp_path, monkeypatch):
    src = tmp_path / "rat.dump"
    src.write_bytes(DATA)
    monkeypatch.setattr(integrity, "_free_bytes", lambda _path: 10)
    with pytest.raises(RatBackupError) as err:
        integrity.private_copy(str(src), sha(DATA), str(tmp_path))
    assert "not enough room in %s" % tmp_path in err.value.msg and "set work_dir" in err.value.msg
    assert os.listdir(str(tmp_path)) == ["rat.dump"]


class FakeClient:
    """Records which archive every pg_restore step read and what it saw there."""

    def __init__(self, src, change_to):
        self.src, self.change_to = src, change_to
        self.read = []
        self.runner = postgres.Runner(api=object())
        self.conn = postgres.Connection("h", 5432, "rat", "db", "pw")
        self.bin_dir, self.server_version, self.client_version = None, "15", "15"

    def open_session(self, _database=None):
        # The source changes once its copy is made: what is restored must not see it.
        with open(self.src, "wb") as handle:
            handle.write(self.change_to)
        return type("S", (), {"close": lambda self: None})()

    def read_toc(self, archive, name):
        self.read.append((archive, name, open(archive, "rb").read()))
        return {"header": {"Format": "CUSTOM"}, "entries": []}

    def read_through(self, archive, name):
        self.read.append((archive, name, open(archive, "rb").read()))


def _no_pg_restore(*_args, **_kwargs):
    raise StopIteration  # the restore itself is the integration tests' part


def test_restore_when_src_changes_after_check_then_every_step_reads_the_checked_copy(tmp_path):
    src = tmp_path / "rat.dump"
    src.write_bytes(DATA)
    client = FakeClient(str(src), b"Y" * len(DATA))
    client.runner.spawn = _no_pg_restore
    spec = postgres_restore.RestoreSpec(str(src), expected_sha256=sha(DATA), work_dir=str(tmp_path))
    with pytest.raises(StopIteration):
        postgres_restore.restore(client, spec)
    assert [(name, data) for _archive, name, data in client.read] == [(str(src), DATA), (str(src), DATA)]
    assert all(archive != str(src) for archive, _name, _data in client.read)
    assert os.listdir(str(tmp_path)) == ["rat.dump"]


def test_restore_when_check_mode_then_src_hashed_in_place_and_no_copy(tmp_path):
    src = tmp_path / "rat.dump"
    src.write_bytes(DATA)
    client = FakeClient(str(src), DATA)
    spec = postgres_restore.RestoreSpec(str(src), expected_sha256=sha(DATA), work_dir=str(tmp_path))
    result = postgres_restore.restore(client, spec, check_mode=True)
    assert result["sha256_checked"] == sha(DATA)
    assert [archive for archive, _name, _data in client.read] == [str(src), str(src)]


def test_restore_when_src_changed_before_copy_then_refused_naming_expected_sha256(tmp_path):
    src = tmp_path / "rat.dump"
    src.write_bytes(b"Y" * len(DATA))
    client = FakeClient(str(src), DATA)
    spec = postgres_restore.RestoreSpec(str(src), expected_sha256=sha(DATA), work_dir=str(tmp_path))
    with pytest.raises(RatBackupError) as err:
        postgres_restore.restore(client, spec)
    assert err.value.msg == "%s does not match expected_sha256 (expected %s, file has %s): refusing to restore it" % (
        src, sha(DATA), sha(b"Y" * len(DATA)))
    assert client.read == [] and os.listdir(str(tmp_path)) == ["rat.dump"]
