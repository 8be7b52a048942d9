# -*- coding: utf-8 -*-
# Copyright: rat.backup contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

import gzip
import hashlib
import json
import os
import threading

import pytest

from ansible_collections.rat.backup.plugins.module_utils.backup_root import manifest as mf
from ansible_collections.rat.backup.plugins.module_utils.backup_root import manifest_format
from ansible_collections.rat.backup.plugins.module_utils.errors import RatBackupError
from ansible_collections.rat.backup.plugins.module_utils._mirror import object_manifest as mirror_manifest

DUMP = b"PGDMP" + b"\x00" * 100
OBJECTS = {"minio/rat/a b/ü.csv": b"a,b\n1,2\n", "minio/rat/empty": b"",
           "minio/.rat-keys/rat/" + "0" * 64: b"escaped"}


def sha(data):
    return hashlib.sha256(data).hexdigest()


def pg_result():
    return {"size": len(DUMP), "sha256": sha(DUMP), "server_version": "15.18", "client_version": "15.18",
            "row_counts": {"public.runs": 3, "public.pipelines": 2}, "cmd": ["pg_dump", "-Fc"], "changed": True,
            "invocation": {"module_args": {"password": "VALUE_SPECIFIED_IN_NO_LOG_PARAMETER"}}}


def object_manifest():
    objects = []
    for path, data in OBJECTS.items():
        key = path.split("/", 2)[2] if not path.startswith("minio/.rat-keys") else "../escaped"
        objects.append({"bucket": "rat", "key": key, "path": path, "size": len(data), "sha256": sha(data),
                        "etag": '"x"', "version_id": None, "content_type": "text/csv", "metadata": {}})
    return {"format": 1, "listed_at": "2026-02-16T09:30:01Z", "buckets": {"rat": {"versioned": True}},
            "objects": objects}


@pytest.fixture
def backup(tmp_path):
    path = tmp_path / "20260216_093000"
    (path / "postgres").mkdir(parents=True)
    (path / "postgres" / "rat.dump").write_bytes(DUMP)
    for rel, data in OBJECTS.items():
        target = path / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)
    data = mf.build("20260216_093000", "backup", "rat-lab", "2026-02-16T09:30:00Z", "2026-02-16T09:30:05Z",
                    {"rat.backup": "0.1.0"}, pg_result(), object_manifest())
    mf.write(str(path), data)
    return path


def test_build_when_pg_result_registered_then_cmd_and_invocation_dropped(backup):
    data = mf.read(str(backup))
    assert "cmd" not in data["postgres"] and "invocation" not in data["postgres"]
    assert data["postgres"]["path"] == "postgres/rat.dump"
    assert data["postgres"]["row_counts"] == {"public.runs": 3, "public.pipelines": 2}


def test_write_when_done_then_file_0600_and_valid_json(backup):
    path = backup / "manifest.json"
    assert os.stat(str(path)).st_mode & 0o777 == 0o600
    assert json.loads(path.read_text())["format"] == mf.FORMAT == 2


def test_verify_when_intact_then_ok(backup):
    for mode in ("full", "quick"):
        result = mf.verify(str(backup), mf.read(str(backup)), mode, dump_check=lambda p: None)
        assert result["ok"], result["bad"]
        assert result["files"] == 4


def test_verify_when_same_size_rewrite_then_full_catches_quick_does_not(backup):
    (backup / "minio/rat/a b/ü.csv").write_bytes(b"a,b\n9,9\n")
    data = mf.read(str(backup))
    assert mf.verify(str(backup), data, "quick")["ok"]
    result = mf.verify(str(backup), data, "full")
    assert result["changed"] == [{"path": "minio/rat/a b/ü.csv", "reason": "sha256 differs from the manifest"}]


def test_verify_when_truncated_dump_then_changed_and_dump_check_skipped(backup):
    (backup / "postgres" / "rat.dump").write_bytes(DUMP[:10])
    calls = []
    result = mf.verify(str(backup), mf.read(str(backup)), "quick", dump_check=calls.append)
    assert result["changed"][0]["path"] == "postgres/rat.dump"
    assert calls == []
    assert not result["ok"]


def test_verify_when_dump_unreadable_then_reported(backup):
    result = mf.verify(str(backup), mf.read(str(backup)), "full", dump_check=lambda p: "not an archive")
    assert result["unreadable"] == [{"path": "postgres/rat.dump", "reason": "dump not readable: not an archive"}]


def test_verify_when_missing_extra_and_symlink_then_each_reported(backup, tmp_path):
    (backup / "minio/rat/empty").unlink()
    (backup / "minio/rat/new").write_bytes(b"planted")
    secret = tmp_path / "secret"
    secret.write_bytes(b"x")
    os.symlink(str(secret), str(backup / "minio/rat/link"))
    result = mf.verify(str(backup), mf.read(str(backup)), "full")
    assert result["missing"] == ["minio/rat/empty"]
    assert result["extra"] == ["minio/rat/new"]
    assert result["symlinks"] == ["minio/rat/link"]
    assert len(result["bad"]) == 3


def test_verify_when_several_extras_and_symlinks_then_each_list_sorted_by_path(backup, tmp_path):
    # The walk's order is the file system's (depth first, directory order); the findings are sorted.
    for rel in ("minio/rat/z/9", "minio/rat/a b/y", "minio/b", "minio/rat/a b/x", "minio/.rat-keys/rat/q"):
        (backup / rel).parent.mkdir(parents=True, exist_ok=True)
        (backup / rel).write_bytes(b"planted")
    for rel in ("minio/rat/z/l", "minio/l", "minio/rat/a b/l"):
        os.symlink(str(tmp_path), str(backup / rel))
    result = mf.verify(str(backup), mf.read(str(backup)), "quick")
    assert result["extra"] == sorted(["minio/rat/z/9", "minio/rat/a b/y", "minio/b", "minio/rat/a b/x",
                                      "minio/.rat-keys/rat/q"])
    assert result["symlinks"] == ["minio/l", "minio/rat/a b/l", "minio/rat/z/l"]
    assert result["bad"][:3] == ["minio/l: symlink (never followed)", "minio/rat/a b/l: symlink (never followed)",
                                 "minio/rat/z/l: symlink (never followed)"]


def test_verify_when_object_replaced_by_symlink_then_not_followed(backup, tmp_path):
    target = backup / "minio/rat/a b/ü.csv"
    outside = tmp_path / "outside.csv"
    outside.write_bytes(target.read_bytes())
    target.unlink()
    os.symlink(str(outside), str(target))
    result = mf.verify(str(backup), mf.read(str(backup)), "full")
    assert result["symlinks"] == ["minio/rat/a b/ü.csv"]
    assert not result["ok"]


def test_verify_when_directory_symlinked_then_files_missing(backup, tmp_path):
    os.rename(str(backup / "minio" / "rat"), str(tmp_path / "moved"))
    os.symlink(str(tmp_path / "moved"), str(backup / "minio" / "rat"))
    result = mf.verify(str(backup), mf.read(str(backup)), "full")
    assert "minio/rat" in result["symlinks"]
    assert "minio/rat/empty" in result["missing"]


@pytest.mark.parametrize("bad_path", ["../../etc/passwd", "/etc/passwd", "minio//x", "minio/./x", ""])
def test_expected_files_when_manifest_path_escapes_then_refused(backup, bad_path):
    data = mf.read(str(backup))
    data["minio"]["objects"][0]["path"] = bad_path
    with pytest.raises(RatBackupError) as err:
        mf.expected_files(data, str(backup))
    assert "unsafe path" in err.value.msg


def test_verify_when_renamed_backup_has_unsafe_path_then_error_names_its_directory(backup, tmp_path):
    data = mf.read(str(backup))
    data["name"] = "19990101_000000"
    data["minio"]["objects"][0]["path"] = "/etc/hostname"
    with pytest.raises(RatBackupError) as err:
        mf.verify(str(backup), data, "quick")
    assert err.value.msg.startswith("backup %s: unsafe path '/etc/hostname'" % backup)
    assert "19990101_000000" not in err.value.msg


def test_read_when_manifest_garbage_then_error_names_file(backup):
    (backup / "manifest.json").write_text("{not json")
    with pytest.raises(RatBackupError) as err:
        mf.read(str(backup))
    assert str(backup / "manifest.json") in err.value.msg


def test_read_when_unknown_format_then_refused(backup):
    (backup / "manifest.json").write_text(json.dumps({"format": 99}))
    with pytest.raises(RatBackupError) as err:
        mf.read(str(backup))
    assert "format 99" in err.value.msg


def test_read_when_manifest_is_symlink_then_refused(backup, tmp_path):
    real = tmp_path / "real.json"
    os.rename(str(backup / "manifest.json"), str(real))
    os.symlink(str(real), str(backup / "manifest.json"))
    with pytest.raises(RatBackupError):
        mf.read(str(backup))


def test_summary_when_built_then_counts(backup):
    stats = mf.summary(mf.read(str(backup)))
    assert stats["objects"] == 3
    assert stats["rows"] == 5
    assert stats["bytes"] == len(DUMP) + sum(len(d) for d in OBJECTS.values())
    assert stats["buckets"] == ["rat"]


def test_build_when_pg_result_lacks_sha256_then_refused():
    with pytest.raises(RatBackupError):
        mf.build("20260216_093000", "backup", "h", "t", "t", {}, {"size": 1}, None)


def test_dumps_when_objects_then_one_compact_line_each_and_same_data():
    objects = [{"bucket": "rat", "key": 'odd "key"\nwith newline', "size": 1, "metadata": {"a": "b"}},
               {"bucket": "rat", "key": "ü/x", "size": 2, "metadata": {}}]
    data = {"format": 1, "name": "20260216_093000", "consistency": {"changed_during": ["rat/objects"]},
            "minio": {"buckets": {"rat": {"versioned": False}}, "objects": objects, "prefix": ""},
            "postgres": None}
    text = manifest_format.dumps(data)
    assert json.loads(text) == data
    lines = text.splitlines()
    assert [json.loads(line.rstrip(",")) for line in lines if line.startswith('{"bucket"')] == objects
    assert text.endswith("\n")


def test_dumps_when_no_objects_then_plain_indented_json():
    data = {"format": 1, "minio": None, "postgres": {"size": 3}}
    assert manifest_format.dumps(data) == json.dumps(data, indent=1, sort_keys=True) + "\n"


def test_summary_when_consistency_recorded_shows_level_time_and_changes():
    data = {"consistency": {"level": "best-effort", "time": "2026-11-27T18:30:00.1Z",
                            "changed_during": [{"bucket": "b", "key": "k", "change": "modified"}]}}
    stats = mf.summary(data)
    assert (stats["consistency"], stats["consistency_time"], stats["changed_during"]) == (
        "best-effort", "2026-11-27T18:30:00.1Z", 1)
    assert mf.summary({})["consistency"] is None


LINE_OBJECTS = [{"bucket": "rat", "key": "a", "path": "minio/rat/a", "size": 1},
                {"bucket": "rat", "key": "b\u00fc", "path": "minio/rat/b\u00fc", "size": 2}]


def test_read_document_when_backup_manifest_then_objects_streamed_without_json_load(tmp_path, monkeypatch):
    data = {"format": 1, "name": "20260216_093000", "postgres": {"size": 3},
            "minio": {"buckets": {"rat": {}}, "objects": LINE_OBJECTS}}
    mf.write(str(tmp_path), data)

    def refuse(*_args, **_kwargs):
        raise AssertionError("the whole manifest was loaded at once")

    monkeypatch.setattr(manifest_format.json, "load", refuse)
    document, objects = manifest_format.read_document(str(tmp_path / "manifest.json"), make=lambda item: item["key"])
    assert objects == ["a", "b\u00fc"]
    assert document["minio"] == {"buckets": {"rat": {}}, "objects": []} and document["postgres"] == {"size": 3}


def test_read_document_when_object_manifest_of_older_runs_then_read_line_by_line(tmp_path):
    # The compact header line bucket_mirror wrote before the one format; still read the same way.
    path = tmp_path / "minio.json"
    path.write_text('{"buckets": {"rat": {}}, "format": 1, "objects": [\n'
                    + ",\n".join(json.dumps(o, sort_keys=True) for o in LINE_OBJECTS) + "\n]}\n")
    document, objects = manifest_format.read_document(str(path))
    assert objects == LINE_OBJECTS and document == {"buckets": {"rat": {}}, "format": 1, "objects": []}


def test_write_document_when_object_manifest_then_same_layout_as_manifest_json(tmp_path):
    path = tmp_path / "minio.json"
    manifest_format.write_document(str(path), {"format": 1, "buckets": {"rat": {}}}, iter(LINE_OBJECTS))
    lines = path.read_text().splitlines()
    assert lines[0] == "{" and ' "objects": [' in lines
    assert [json.loads(line.rstrip(",")) for line in lines if line.startswith("{\"")] == LINE_OBJECTS
    assert mf.read_object_manifest(str(path))["objects"] == LINE_OBJECTS


def test_read_document_when_cut_short_then_error_names_file(tmp_path):
    path = tmp_path / "minio.json"
    manifest_format.write_document(str(path), {"format": 1}, iter(LINE_OBJECTS))
    path.write_text("\n".join(path.read_text().splitlines()[:-2]) + "\n")
    with pytest.raises(RatBackupError, match="truncated"):
        manifest_format.read_document(str(path))


def test_reader_when_objects_over_several_lines_then_read_whole(tmp_path):
    # Hand-written: the object list's line ends as ours does, but its objects span lines.
    path = tmp_path / "m.json"
    path.write_text('{"buckets": {}, "objects": [\n {\n  "bucket": "rat", "key": "a"\n }\n]}\n')
    document, objects = manifest_format.read_document(str(path))
    assert objects == [{"bucket": "rat", "key": "a"}] and document == {"buckets": {}, "objects": []}
    reader = manifest_format.Reader(str(path))
    assert list(reader.objects(parse=False)) == [] and reader.document == {"buckets": {}, "objects": []}


def test_reader_when_header_only_then_objects_not_parsed(tmp_path, monkeypatch):
    path = tmp_path / "manifest.json"
    mf.write(str(tmp_path), {"format": 1, "minio": {"buckets": {"rat": {}}, "objects": LINE_OBJECTS}})
    parsed = []
    monkeypatch.setattr(manifest_format.json, "loads", lambda text: parsed.append(text) or json.JSONDecoder().decode(text))
    monkeypatch.setattr(manifest_format, "_decode", lambda text: parsed.append(text) or json.JSONDecoder().decode(text))
    reader = manifest_format.Reader(str(path))
    assert list(reader.objects(parse=False)) == []
    assert reader.document["minio"] == {"buckets": {"rat": {}}, "objects": []} and len(parsed) == 1


@pytest.mark.parametrize("where", [0, 1])
@pytest.mark.parametrize("bad", ['{"bucket":"rat"}x', '{"bucket":"rat"} {}', '{"bucket":"rat"'])
def test_reader_when_object_line_has_extra_or_missing_text_then_not_valid_json(tmp_path, where, bad):
    path = tmp_path / "minio.json"
    manifest_format.write_document(str(path), {"format": 1}, iter(LINE_OBJECTS))
    lines = path.read_text().splitlines()
    first = lines.index(' "objects": [') + 1
    lines[first + where] = bad + ","
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(RatBackupError, match="is not valid JSON"):
        manifest_format.read_document(str(path))


def test_reader_when_symlink_then_followed_only_when_asked(tmp_path):
    manifest_format.write_document(str(tmp_path / "real.json"), {"format": 1}, iter(LINE_OBJECTS))
    os.symlink(tmp_path / "real.json", tmp_path / "link.json")
    with pytest.raises(RatBackupError, match="cannot read manifest"):
        manifest_format.read_document(str(tmp_path / "link.json"))
    assert list(manifest_format.Reader(str(tmp_path / "link.json"), follow_symlinks=True).objects()) == LINE_OBJECTS


# --- format 2: a compressed manifest.json (issue 24), and format 1 still read ---------------------

def compressed(backup):
    """The fixture's backup with its manifest.json written again, compressed."""
    data = mf.read(str(backup))
    objects = data["minio"]["objects"]
    data["minio"]["objects"] = []
    mf.write_streamed(str(backup), data, (json.dumps(o, sort_keys=True) for o in objects), compress=True)
    return backup / "manifest.json"


def test_read_when_format_1_manifest_of_an_older_collection_then_read_and_verified(backup):
    path = backup / "manifest.json"
    old = json.loads(path.read_text())
    old["format"] = 1
    objects = old["minio"].pop("objects")
    # As format 1 was written: indented, one object per line with ", " / ": " inside.
    text = json.dumps(dict(old, minio=dict(old["minio"], objects="@@")), indent=1, sort_keys=True)
    path.write_text(text.replace('"@@"', "[\n" + ",\n".join(json.dumps(o, sort_keys=True) for o in objects) + "\n ]"))
    data = mf.read(str(backup))
    assert data["format"] == 1 and sorted(o["path"] for o in data["minio"]["objects"]) == sorted(OBJECTS)
    assert mf.verify(str(backup), data)["ok"] and mf.damage(str(backup.parent), backup.name) is None


def test_write_streamed_when_compressed_then_gzip_read_by_every_reader(backup):
    plain = mf.read(str(backup))
    path = compressed(backup)
    raw = path.read_bytes()
    assert raw[:2] == b"\x1f\x8b" and os.stat(str(path)).st_mode & 0o777 == 0o600
    # Readable without this collection: gzip, then the same JSON document.
    assert json.loads(gzip.decompress(raw))["minio"]["objects"] == plain["minio"]["objects"]
    assert mf.read(str(backup)) == plain
    assert mf.verify(str(backup), mf.read(str(backup)), "full")["ok"]
    header, entries = mirror_manifest.read_manifest(str(path), "manifest")
    assert header["listed_at"] == "2026-02-16T09:30:01Z" and sorted(e.key for e in entries) == sorted(
        o["key"] for o in plain["minio"]["objects"])
    assert [o["path"] for o in manifest_format.Reader(str(path)).objects()] == [o["path"] for o in plain["minio"]["objects"]]


@pytest.mark.parametrize("damage", ["truncated", "flipped", "tail"])
def test_read_when_compressed_manifest_damaged_then_refused_naming_it(backup, damage):
    path = compressed(backup)
    raw = bytearray(path.read_bytes())
    if damage == "truncated":
        raw = raw[:len(raw) // 2]
    elif damage == "flipped":
        raw[len(raw) // 2] ^= 0x40
    else:
        raw[-6] ^= 0x01  # the CRC-32 at the end: the text inflates whole, the check fails
    path.write_bytes(bytes(raw))
    with pytest.raises(RatBackupError) as err:
        mf.read(str(backup))
    assert str(path) in err.value.msg and "damaged" in err.value.msg
    with pytest.raises(RatBackupError):
        mf.read(str(backup), with_objects=False)
    assert "damaged" in mf.damage(str(backup.parent), backup.name)


def test_write_lines_when_compressed_then_compressed_by_its_own_thread_while_lines_are_read(tmp_path, monkeypatch):
    # Issue 24: a 100,000-object commit spent ~0.2 s of its one thread compressing; zlib lets go of
    # the GIL, so the compression now runs beside the reading and checking of the lines.
    monkeypatch.setattr(manifest_format, "_BATCH", 64)
    writers, order = [], []
    real = gzip.GzipFile.write

    def spied(packed, data):
        writers.append(threading.current_thread().name)
        return real(packed, data)

    def lines():
        for index in range(200):
            order.append(index)
            yield json.dumps({"bucket": "b", "key": "k%03d" % index, "path": "minio/b/k%03d" % index}, sort_keys=True)

    monkeypatch.setattr(gzip.GzipFile, "write", spied)
    path = str(tmp_path / "manifest.json")
    document = {"format": 2, "minio": {"buckets": {"b": {}}, "objects": []}}
    manifest_format.write_lines(path, document, lines(), compress=True)
    assert writers and set(writers) == {"compress"}
    with open(path, "rb") as handle:
        text = gzip.decompress(handle.read()).decode("utf-8")
    assert text == "".join(manifest_format._chunks(document, (json.dumps(
        {"bucket": "b", "key": "k%03d" % index, "path": "minio/b/k%03d" % index}, sort_keys=True) for index in range(200))))
    assert order == list(range(200)) and threading.active_count() == 1


@pytest.mark.parametrize("fails", ["compressing", "lines"])
def test_write_lines_when_compressed_and_something_fails_then_raised_no_file_and_no_thread(tmp_path, monkeypatch, fails):
    monkeypatch.setattr(manifest_format, "_BATCH", 64)

    def full_disk(packed, data):
        raise OSError(28, "No space left on device")

    def lines():
        for index in range(500):
            if fails == "lines" and index == 300:
                raise RatBackupError("backup is inconsistent, not committed")
            yield json.dumps({"key": "k%03d" % index})

    if fails == "compressing":
        monkeypatch.setattr(gzip.GzipFile, "write", full_disk)
    path = tmp_path / "manifest.json"
    with pytest.raises((OSError, RatBackupError)) as err:
        manifest_format.write_lines(str(path), {"format": 2, "minio": {"objects": []}}, lines(), compress=True)
    assert ("No space left" if fails == "compressing" else "not committed") in str(err.value)
    assert os.listdir(str(tmp_path)) == [] and threading.active_count() == 1
