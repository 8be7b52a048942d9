# -*- coding: utf-8 -*-
# Copyright: rat.backup contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""pg_dump's link_dest: archives equal but for their creation time are hard-linked."""

from __future__ import annotations

import hashlib
import json
import os

import pytest

from ansible_collections.rat.backup.plugins.module_utils import fs
from ansible_collections.rat.backup.plugins.module_utils._postgres import archive as pg_archive
from ansible_collections.rat.backup.plugins.module_utils import postgres
from ansible_collections.rat.backup.plugins.module_utils._postgres import client as pg_client
from ansible_collections.rat.backup.plugins.module_utils._postgres import dump as dumping
from ansible_collections.rat.backup.plugins.module_utils.errors import RatBackupError

BODY = b"\x00\x03\x00\x00\x00rat" + os.urandom(3 * fs.CHUNK)


def archive_int(value, int_size=4):
    return bytes([1 if value < 0 else 0]) + abs(value).to_bytes(int_size, "little")


def archive(created=(12, 39, 19, 25, 10, 126, 0), version=(1, 14, 0), fmt=1, body=BODY, int_size=4):
    """A custom-format archive as WriteHead lays it out (PostgreSQL 15: compression as an int, 16: a byte)."""
    head = b"PGDMP" + bytes(version) + bytes([int_size, 8, fmt])
    head += b"\x00" if version >= (1, 15, 0) else archive_int(-1, int_size)
    head += b"".join(archive_int(v, int_size) for v in created)
    return head + body


def write(path, data):
    path.write_bytes(data)
    return str(path)


def test_creation_time_span_when_pg15_header_covers_the_seven_time_ints():
    assert pg_archive.creation_time_span(archive()) == (16, 51)


def test_creation_time_span_when_pg16_header_starts_after_the_algorithm_byte():
    assert pg_archive.creation_time_span(archive(version=(1, 15, 0))) == (12, 47)


@pytest.mark.parametrize("data", [
    b"not an archive at all",
    archive(fmt=5),
    archive(version=(1, 3, 0)),
    archive(created=(12, 99, 19, 25, 10, 126, 0)),
    archive()[:30],
])
def test_creation_time_span_when_not_a_readable_custom_archive_is_none(data):
    assert pg_archive.creation_time_span(data) is None


def test_same_archive_when_only_creation_time_differs_gives_old_sha256(tmp_path):
    old = write(tmp_path / "old", archive(created=(1, 2, 3, 4, 5, 120, 0)))
    new = write(tmp_path / "new", archive())
    assert pg_archive.same_archive_but_creation_time(new, old) == hashlib.sha256(archive((1, 2, 3, 4, 5, 120, 0))).hexdigest()


@pytest.mark.parametrize("changed_at", [5, 60, fs.CHUNK + 7, len(archive()) - 1])
def test_same_archive_when_one_byte_outside_the_time_differs_is_none(tmp_path, changed_at):
    data = bytearray(archive())
    data[changed_at] ^= 0xFF
    old = write(tmp_path / "old", archive(created=(1, 2, 3, 4, 5, 120, 0)))
    assert pg_archive.same_archive_but_creation_time(write(tmp_path / "new", bytes(data)), old) is None


def test_same_archive_when_sizes_differ_is_none(tmp_path):
    old = write(tmp_path / "old", archive())
    assert pg_archive.same_archive_but_creation_time(write(tmp_path / "new", archive() + b"x"), old) is None


class FakeSession:
    def __init__(self):
        self.sent = []

    def query(self, sql):
        self.sent.append(sql)
        if sql.startswith("SELECT pg_export_snapshot"):
            return ["00000003-0000001B-1|1795804200.25|1795804200.5"]
        return []

    def close(self):
        self.sent.append("closed")


class WrittenArchive:
    """pg_dump's process as the dump sees it: it has written ``produced`` to its file and exited."""

    pid = None

    def __init__(self, path, produced):
        with open(path, "xb") as handle:
            handle.write(produced)

    def poll(self):
        return 0

    def wait(self):
        return 0, ""

    def kill(self):
        pass


class FakeRunner:
    in_container = False

    def __init__(self, produced):
        self.produced = produced

    def spawn_to_file(self, argv, env, path):
        return WrittenArchive(path, self.produced)


class FakeClient:
    """pg_dump that "writes" a given archive; everything else the dump needs, answered."""

    def __init__(self, produced):
        self.runner = FakeRunner(produced)
        self.conn = pg_client.Connection("127.0.0.1", 5432, "rat", "rat", "pw")
        self.bin_dir = None
        self.server_version = self.client_version = "15.18"
        self.server = (15,)

    def open_session(self):
        return FakeSession()

    def read_toc(self, src):
        return {"header": {}, "entries": []}


def test_dump_when_link_dest_equal_but_time_links_and_reports_old_sha256(tmp_path):
    old_data = archive(created=(1, 2, 3, 4, 5, 120, 0))
    old = write(tmp_path / "old.dump", old_data)
    dest = tmp_path / "new" / "rat.dump"
    dest.parent.mkdir()
    result = postgres.dump(FakeClient(archive()), postgres.DumpSpec(str(dest), link_dest=old))
    assert result["linked"] is True
    assert result["sha256"] == hashlib.sha256(old_data).hexdigest()
    assert os.stat(dest).st_ino == os.stat(old).st_ino
    # Besides the dump only its result, which backup_run commit reads from disk.
    assert sorted(os.listdir(dest.parent)) == ["rat.dump", "rat.dump.json"]
    assert json.loads((dest.parent / "rat.dump.json").read_text()) == result


def test_dump_when_link_dest_differs_keeps_new_dump(tmp_path):
    old = write(tmp_path / "old.dump", archive(body=BODY[::-1]))
    dest = tmp_path / "rat.dump"
    result = postgres.dump(FakeClient(archive()), postgres.DumpSpec(str(dest), link_dest=old))
    assert result["linked"] is False
    assert dest.read_bytes() == archive() and result["sha256"] == hashlib.sha256(archive()).hexdigest()
    assert os.stat(dest).st_nlink == 1


def test_dump_when_link_dest_missing_or_symlink_keeps_new_dump(tmp_path):
    real = write(tmp_path / "real.dump", archive(created=(1, 2, 3, 4, 5, 120, 0)))
    os.symlink(real, tmp_path / "link.dump")
    for link_dest in (tmp_path / "missing.dump", tmp_path / "link.dump"):
        dest = tmp_path / "rat.dump"
        result = postgres.dump(FakeClient(archive()), postgres.DumpSpec(str(dest), link_dest=str(link_dest)))
        assert result["linked"] is False and dest.read_bytes() == archive()
        assert os.stat(real).st_nlink == 1


def test_dump_when_filesystem_refuses_link_keeps_new_dump(tmp_path, monkeypatch):
    def refuse(_src, _dst):
        raise OSError(18, "Invalid cross-device link")
    old = write(tmp_path / "old.dump", archive(created=(1, 2, 3, 4, 5, 120, 0)))
    monkeypatch.setattr(dumping.os, "link", refuse)
    dest = tmp_path / "rat.dump"
    result = postgres.dump(FakeClient(archive()), postgres.DumpSpec(str(dest), link_dest=old))
    assert result["linked"] is False and dest.read_bytes() == archive()
    assert sorted(os.listdir(tmp_path)) == ["old.dump", "rat.dump", "rat.dump.json"]


def test_dump_without_link_dest_returns_no_linked(tmp_path):
    result = postgres.dump(FakeClient(archive()), postgres.DumpSpec(str(tmp_path / "rat.dump")))
    assert "linked" not in result


def test_dump_spec_when_link_dest_with_directory_format_raises(tmp_path):
    with pytest.raises(RatBackupError, match="link_dest needs format=custom"):
        postgres.DumpSpec(str(tmp_path / "d"), fmt="directory", link_dest=str(tmp_path / "old.dump")).validate(False)


def test_dump_spec_when_link_dest_is_a_directory_raises_naming_it(tmp_path):
    with pytest.raises(RatBackupError, match=f"link_dest {tmp_path} is a directory"):
        postgres.DumpSpec(str(tmp_path / "rat.dump"), link_dest=str(tmp_path)).validate(False)
