# -*- coding: utf-8 -*-
# Copyright: rat.backup contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

import datetime
import gzip
import hashlib
import json
import os
import time

import pytest

from ansible_collections.rat.backup.plugins.module_utils.backup_root import layout
from ansible_collections.rat.backup.plugins.module_utils.backup_root import lock
from ansible_collections.rat.backup.plugins.module_utils.backup_root import reporting
from ansible_collections.rat.backup.plugins.module_utils.backup_root import backup_dir
from ansible_collections.rat.backup.plugins.module_utils.backup_root import manifest as mf
from ansible_collections.rat.backup.plugins.module_utils.backup_root import manifest_format
from ansible_collections.rat.backup.plugins.module_utils.errors import RatBackupError
from ansible_collections.rat.backup.tests.unit.plugins.module_utils.test_lock import in_child

NOW = datetime.datetime(2026, 2, 16, 9, 30, 0, tzinfo=datetime.timezone.utc)
LATER = NOW + datetime.timedelta(seconds=12)
DUMP = b"PGDMP-dump"


def fill(partial, objects=None):
    with open(os.path.join(partial, "postgres", "rat.dump"), "wb") as handle:
        handle.write(DUMP)
    entries = []
    for key, data in (objects or {"a.csv": b"1,2\n"}).items():
        rel = "minio/rat/" + key
        with open(os.path.join(partial, rel), "wb") as handle:
            handle.write(data)
        entries.append({"bucket": "rat", "key": key, "path": rel, "size": len(data),
                        "sha256": hashlib.sha256(data).hexdigest()})
    os.makedirs(os.path.join(partial, "minio", "rat"), exist_ok=True)
    with open(os.path.join(partial, layout.OBJECT_MANIFEST), "w") as handle:
        json.dump({"format": 1, "listed_at": "2026-02-16T09:30:03Z", "buckets": {"rat": {}}, "objects": entries},
                  handle)
    return {"size": len(DUMP), "sha256": hashlib.sha256(DUMP).hexdigest(), "client_version": "15.18",
            "row_counts": {"public.runs": 1}, "cmd": ["pg_dump"]}


def begin(root, **kw):
    args = dict(kind="backup", purpose="backup", required_bytes=0, lease_seconds=60, check_mode=False, now=NOW)
    args.update(kw)
    return backup_dir.begin(str(root), **args)


def commit(root, started, pg, **kw):
    """backup_dir.commit, after writing ``pg`` (unless None) where pg_dump leaves its result."""
    if pg is not None:
        with open(os.path.join(started["partial"], "postgres", "rat.dump.json"), "w") as handle:
            json.dump(pg, handle)
    args = dict(kind="backup", name=started["name"], token=started["lock_token"], host="rat-lab",
                components=["postgres", "minio"], tools={"rat.backup": "0.1.0"}, consistency={},
                release_lock=True, check_mode=False, now=LATER)
    args.update(kw)
    return backup_dir.commit(str(root), **args)


def prepare_partial(started):
    os.makedirs(os.path.join(started["partial"], "minio", "rat"), exist_ok=True)


def test_begin_when_check_mode_then_nothing_created(tmp_path):
    result = begin(tmp_path, check_mode=True)
    assert result["changed"] and result["name"] == "20260216_093000"
    assert not os.path.exists(result["partial"])
    assert lock.lock_state(str(tmp_path))[0] is False


def test_begin_commit_when_filled_then_complete_backup_and_lock_free(tmp_path):
    started = begin(tmp_path)
    try:
        assert os.stat(started["partial"]).st_mode & 0o777 == 0o700
        assert started["previous"] is None
        prepare_partial(started)
        pg = fill(started["partial"])
        done = commit(tmp_path, started, pg)
    finally:
        lock.release(str(tmp_path), started["lock_token"])
    assert done["backup_dir"] == str(tmp_path / "20260216_093000")
    assert not os.path.exists(started["partial"])
    assert not os.path.exists(os.path.join(done["backup_dir"], layout.OBJECT_MANIFEST))
    data = json.loads(open(done["manifest"]).read())
    assert data["minio"]["objects"][0]["key"] == "a.csv"
    assert data["tools"]["pg_dump"] == "15.18"
    assert data["consistency"]["objects_listed_at"] == "2026-02-16T09:30:03Z"
    assert done["objects"] == 1 and done["duration"] == 12.0
    assert os.stat(os.path.join(done["backup_dir"], "minio", "rat", "a.csv")).st_mode & 0o777 == 0o600
    assert lock.lock_state(str(tmp_path))[0] is False
    assert [b["name"] for b in layout.list_backups(str(tmp_path))["complete"]] == ["20260216_093000"]


def test_commit_when_files_linked_from_previous_then_new_bytes_counts_only_those_written(tmp_path):
    first = begin(tmp_path)
    prepare_partial(first)
    done = commit(tmp_path, first, fill(first["partial"], {"a.csv": b"1,2\n", "b.csv": b"12345"}))
    second = begin(tmp_path, now=LATER)
    prepare_partial(second)
    pg = fill(second["partial"], {"a.csv": b"1,2\n", "b.csv": b"123456"})
    # As the mirror and pg_dump do for what did not change: a hard link to the previous backup's file.
    for rel in ("minio/rat/a.csv", "postgres/rat.dump"):
        os.unlink(os.path.join(second["partial"], rel))
        os.link(os.path.join(done["backup_dir"], rel), os.path.join(second["partial"], rel))
    again = commit(tmp_path, second, pg, now=LATER + datetime.timedelta(seconds=5))
    assert (done["new_bytes"], done["copied"], done["linked"]) == (len(DUMP) + 4 + 5, 3, 0)
    assert (again["new_bytes"], again["copied"], again["linked"]) == (6, 1, 2)
    assert again["bytes"] == len(DUMP) + 4 + 6
    data = json.loads(open(again["manifest"]).read())
    assert data["stored"] == {"new_bytes": 6, "copied": 1, "linked": 2}
    line = reporting.log_line("rat-lab", "ok", again["name"], LATER, 1.0, again)
    assert "bytes=%d new_bytes=6 copied=1 linked=2 objects=2" % again["bytes"] in line


def test_commit_when_no_result_given_then_reads_the_one_pg_dump_left_and_removes_it(tmp_path):
    started = begin(tmp_path)
    try:
        prepare_partial(started)
        pg = dict(fill(started["partial"]), dest=started["partial"] + "/postgres/rat.dump", snapshot="0003-1B-1")
        with open(os.path.join(started["partial"], "postgres", "rat.dump.json"), "w") as handle:
            json.dump(pg, handle)
        done = commit(tmp_path, started, None)
    finally:
        lock.release(str(tmp_path), started["lock_token"])
    data = json.loads(open(done["manifest"]).read())
    assert data["postgres"] == {"size": len(DUMP), "sha256": hashlib.sha256(DUMP).hexdigest(), "client_version": "15.18",
                                "row_counts": {"public.runs": 1}, "snapshot": "0003-1B-1", "path": "postgres/rat.dump"}
    assert sorted(os.listdir(os.path.join(done["backup_dir"], "postgres"))) == ["rat.dump"]


def test_commit_when_postgres_but_no_result_anywhere_then_refused_naming_the_file(tmp_path):
    started = begin(tmp_path)
    try:
        prepare_partial(started)
        fill(started["partial"])
        with pytest.raises(RatBackupError, match="no pg_dump result was found at .*rat.dump.json"):
            commit(tmp_path, started, None)
    finally:
        lock.release(str(tmp_path), started["lock_token"])
    assert os.path.isdir(started["partial"])


def test_begin_when_previous_complete_then_returned_as_link_dest(tmp_path):
    first = begin(tmp_path)
    prepare_partial(first)
    commit(tmp_path, first, fill(first["partial"]))
    second = begin(tmp_path, now=LATER)
    try:
        assert second["previous"] == str(tmp_path / "20260216_093000")
        assert second["name"] == "20260216_093012"
    finally:
        backup_dir.abort(str(tmp_path), "backup", second["name"], second["lock_token"], True, False)


def test_commit_when_object_missing_then_refused_and_nothing_complete(tmp_path):
    started = begin(tmp_path)
    try:
        prepare_partial(started)
        pg = fill(started["partial"])
        os.unlink(os.path.join(started["partial"], "minio", "rat", "a.csv"))
        with pytest.raises(RatBackupError) as err:
            commit(tmp_path, started, pg, release_lock=False)
        assert "minio/rat/a.csv: missing" in err.value.msg
        assert layout.list_backups(str(tmp_path))["complete"] == []
        aborted = backup_dir.abort(str(tmp_path), "backup", started["name"], started["lock_token"], True, False)
        assert aborted["removed"] == started["partial"] and aborted["lock_released"]
    finally:
        lock.release(str(tmp_path), started["lock_token"])
    assert not os.path.exists(started["partial"])


def test_commit_when_dump_size_differs_from_result_then_refused(tmp_path):
    started = begin(tmp_path)
    try:
        prepare_partial(started)
        pg = fill(started["partial"])
        pg["size"] += 1
        with pytest.raises(RatBackupError) as err:
            commit(tmp_path, started, pg)
        assert "postgres/rat.dump" in err.value.msg
    finally:
        lock.release(str(tmp_path), started["lock_token"])


def test_commit_when_lock_not_ours_then_refused(tmp_path):
    started = begin(tmp_path)
    lock.release(str(tmp_path), started["lock_token"])
    prepare_partial(started)
    pg = fill(started["partial"])
    with pytest.raises(RatBackupError) as err:
        commit(tmp_path, started, pg)
    assert "no longer holds the lock" in err.value.msg


def test_begin_when_stale_partial_then_removed_under_lock(tmp_path):
    stale = tmp_path / "20260101_000000.partial"
    stale.mkdir()
    started = begin(tmp_path)
    try:
        assert started["removed_partials"] == [str(stale)]
        assert not stale.exists()
    finally:
        backup_dir.abort(str(tmp_path), "backup", started["name"], started["lock_token"], True, False)


def test_begin_when_not_enough_space_then_error_names_root_and_no_lock(tmp_path):
    with pytest.raises(RatBackupError) as err:
        begin(tmp_path, required_bytes=2 ** 62)
    assert str(tmp_path) in err.value.msg and "MiB needed" in err.value.msg
    assert lock.lock_state(str(tmp_path))[0] is False


def test_begin_when_pre_restore_then_under_pre_restore_dir(tmp_path):
    started = begin(tmp_path, kind="pre_restore", purpose="restore")
    try:
        assert started["partial"] == str(tmp_path / "pre-restore" / "20260216_093000.partial")
    finally:
        backup_dir.abort(str(tmp_path), "pre_restore", started["name"], started["lock_token"], True, False)


def test_abort_when_name_is_path_then_refused(tmp_path):
    with pytest.raises(RatBackupError):
        backup_dir.abort(str(tmp_path), "backup", "../../etc", None, True, False)


def test_preflight_when_module_missing_then_listed(tmp_path):
    result = backup_dir.preflight(str(tmp_path), 0, ["json", "surely_not_a_module_xyz"])
    assert result["missing_modules"] == ["surely_not_a_module_xyz"]
    assert result["enough_space"]


def test_preflight_when_no_backup_yet_then_no_previous(tmp_path):
    result = backup_dir.preflight(str(tmp_path / "not-yet"), 0, [])
    assert (result["previous"], result["previous_dump_bytes"]) == (None, 0)


def test_preflight_when_complete_backup_then_previous_and_its_dump_size(tmp_path):
    first = begin(tmp_path)
    prepare_partial(first)
    commit(tmp_path, first, fill(first["partial"]))
    result = backup_dir.preflight(str(tmp_path), 0, [])
    assert result["previous"] == str(tmp_path / "20260216_093000")
    assert result["previous_dump_bytes"] == len(DUMP)


@pytest.mark.parametrize("record", [True, False], ids=["commit-record", "older-version"])
def test_preflight_when_only_backup_damaged_then_no_previous_and_named(tmp_path, record):
    first = begin(tmp_path)
    prepare_partial(first)
    done = commit(tmp_path, first, fill(first["partial"]))
    if not record:
        drop_commit_record(tmp_path, done["name"])
    with open(done["manifest"], "w") as handle:
        handle.write("{not json")
    result = backup_dir.preflight(str(tmp_path), 0, [])
    assert (result["previous"], result["previous_dump_bytes"]) == (None, 0)
    why = result["previous_skipped"][done["name"]]
    if record:
        assert why.startswith("its manifest.json is not the one its commit wrote (9 bytes; the commit recorded ")
        assert ".status/%s.commit.json): truncated or changed since" % done["name"] in why
    else:
        assert "is not valid JSON" in why


def drop_commit_record(root, name):
    """What a backup committed by a version that kept no commit record looks like."""
    os.unlink(os.path.join(str(root), layout.STATUS_DIR, name + ".commit.json"))


def spy_manifest_reads(monkeypatch):
    """The manifest.json paths whose object lines get read (Reader.objects_with_text calls)."""
    opened = []
    real = manifest_format.Reader.objects_with_text

    def counted(reader, *args, **kwargs):
        opened.append(reader.path)
        return real(reader, *args, **kwargs)

    monkeypatch.setattr(manifest_format.Reader, "objects_with_text", counted)
    return opened


def test_commit_when_backup_then_commit_record_holds_the_manifest_size_sha256_and_dump_size(tmp_path):
    started = begin(tmp_path)
    prepare_partial(started)
    done = commit(tmp_path, started, fill(started["partial"]))
    with open(done["manifest"], "rb") as handle:
        written = handle.read()
    with open(os.path.join(str(tmp_path), layout.STATUS_DIR, done["name"] + ".commit.json")) as handle:
        record = json.load(handle)
    assert record == {"format": 1, "name": done["name"], "dump_bytes": len(DUMP),
                      "manifest": {"format": 2, "size": len(written), "sha256": hashlib.sha256(written).hexdigest()}}


def test_begin_when_previous_backup_has_commit_record_then_no_manifest_line_parsed(tmp_path, monkeypatch):
    # Issue 24: the previous manifest (100,000 object lines, 10 MB compressed, on a lake) was
    # decompressed and every line parsed to find it good; its commit record proves the same bytes
    # by one sha256 of the file.
    first = begin(tmp_path)
    prepare_partial(first)
    commit(tmp_path, first, fill(first["partial"]))
    opened = spy_manifest_reads(monkeypatch)
    second = begin(tmp_path, now=LATER)
    assert second["previous"] == first["backup_dir"] and second["previous_dump_bytes"] == len(DUMP)
    assert second["previous_skipped"] == {}
    assert opened == []


def test_begin_when_previous_backup_has_no_commit_record_then_its_manifest_read_whole_once(tmp_path, monkeypatch):
    # A backup committed by an older version: proven as before, every line parsed, read once.
    first = begin(tmp_path)
    prepare_partial(first)
    commit(tmp_path, first, fill(first["partial"]))
    drop_commit_record(tmp_path, first["name"])
    opened = spy_manifest_reads(monkeypatch)
    second = begin(tmp_path, now=LATER)
    assert second["previous"] == first["backup_dir"] and second["previous_dump_bytes"] == len(DUMP)
    assert opened == [os.path.join(first["backup_dir"], layout.MANIFEST)]


@pytest.mark.parametrize("record", ["other backup's", "unreadable", "wrong shape", "unknown manifest format"])
def test_begin_when_commit_record_not_this_backups_then_manifest_read_whole(tmp_path, monkeypatch, record):
    first = begin(tmp_path)
    prepare_partial(first)
    commit(tmp_path, first, fill(first["partial"]))
    path = os.path.join(str(tmp_path), layout.STATUS_DIR, first["name"] + ".commit.json")
    with open(path) as handle:
        kept = json.load(handle)
    text = {"other backup's": json.dumps(dict(kept, name="20250101_000000")), "unreadable": '{"format": 1, "na',
            "wrong shape": json.dumps(dict(kept, manifest={"size": "12", "sha256": "00"})),
            "unknown manifest format": json.dumps(dict(kept, manifest=dict(kept["manifest"], format=3)))}[record]
    with open(path, "w") as handle:
        handle.write(text)
    opened = spy_manifest_reads(monkeypatch)
    second = begin(tmp_path, now=LATER)
    assert second["previous"] == first["backup_dir"] and second["previous_dump_bytes"] == len(DUMP)
    assert opened == [os.path.join(first["backup_dir"], layout.MANIFEST)]


@pytest.mark.parametrize("damage", ["plain, same size", "compressed, altered", "compressed, truncated"])
def test_begin_when_manifest_changed_since_commit_then_not_linked_and_named(tmp_path, monkeypatch, damage):
    # A manifest altered into other valid JSON passed the old check (every line still parsed); the
    # commit record refuses it, and a truncated one, naming what it found and what was committed.
    if damage.startswith("compressed"):
        monkeypatch.setattr(mf, "COMPRESS_FROM", 1)
    good = begin(tmp_path)
    prepare_partial(good)
    commit(tmp_path, good, fill(good["partial"]))
    newer = begin(tmp_path, now=LATER)
    prepare_partial(newer)
    newer = commit(tmp_path, newer, fill(newer["partial"], {"a.csv": b"1,2\n", "b.csv": b"3,4\n"}), now=LATER)
    with open(newer["manifest"], "rb") as handle:
        stored = handle.read()
    if damage == "compressed, truncated":
        changed = stored[:len(stored) // 2]
    elif damage == "compressed, altered":
        changed = gzip.compress(gzip.decompress(stored).replace(b'"key":"b.csv"', b'"key":"c.csv"'), mtime=0)
    else:
        changed = stored.replace(b'"key":"b.csv"', b'"key":"c.csv"')
    with open(newer["manifest"], "wb") as handle:
        handle.write(changed)
    if damage != "compressed, truncated":
        assert [o["key"] for o in mf.read(newer["backup_dir"])["minio"]["objects"]] == ["a.csv", "c.csv"]
    third = begin(tmp_path, now=LATER + datetime.timedelta(seconds=5))
    assert third["previous"] == good["backup_dir"] and third["previous_dump_bytes"] == len(DUMP)
    why = third["previous_skipped"][newer["name"]]
    found = "%d bytes" % len(changed)
    if len(changed) == len(stored):
        found += ", sha256 %s..." % hashlib.sha256(changed).hexdigest()[:16]
    assert why == ("its manifest.json is not the one its commit wrote (%s; the commit recorded %d bytes, sha256 "
                   "%s... in .status/%s.commit.json): truncated or changed since"
                   % (found, len(stored), hashlib.sha256(stored).hexdigest()[:16], newer["name"]))
    assert backup_dir.skipped_warnings(third) == [
        "backup %s is damaged (%s): this backup links from %s instead; run backup_verify on it and remove it"
        % (newer["name"], why, good["name"])]


@pytest.mark.parametrize("mode", ["quick", "full"])
def test_verify_when_manifest_changed_since_commit_then_reported_as_changed(tmp_path, mode):
    started = begin(tmp_path)
    prepare_partial(started)
    done = commit(tmp_path, started, fill(started["partial"], {"a.csv": b"1,2\n", "b.csv": b"3,4\n"}))
    committed = mf.read_commit_record(str(tmp_path), done["name"])
    assert mf.verify(done["backup_dir"], mf.read(done["backup_dir"]), mode, committed=committed)["ok"]
    # An object dropped from the manifest with its file: every file still matches the edited manifest.
    os.unlink(os.path.join(done["backup_dir"], "minio", "rat", "b.csv"))
    data = mf.read(done["backup_dir"])
    data["minio"]["objects"] = [o for o in data["minio"]["objects"] if o["key"] != "b.csv"]
    mf.write(done["backup_dir"], data)
    assert mf.verify(done["backup_dir"], mf.read(done["backup_dir"]), mode)["ok"]
    result = mf.verify(done["backup_dir"], mf.read(done["backup_dir"]), mode, committed=committed)
    assert not result["ok"] and [c["path"] for c in result["changed"]] == ["manifest.json"]
    assert result["bad"] == ["manifest.json: " + result["changed"][0]["reason"]]
    assert result["changed"][0]["reason"].startswith("is not the one its commit wrote (")
    assert backup_dir.mf.damage(str(tmp_path), done["name"]) == "its manifest.json " + result["changed"][0]["reason"]


def test_commit_when_pre_restore_then_no_commit_record(tmp_path):
    started = begin(tmp_path, kind="pre_restore", purpose="restore")
    prepare_partial(started)
    commit(tmp_path, started, fill(started["partial"]), kind="pre_restore")
    assert not os.path.exists(os.path.join(str(tmp_path), layout.STATUS_DIR))


@pytest.mark.parametrize("damage", ["manifest", "verify"])
def test_begin_when_newest_backup_damaged_then_links_from_the_newest_good_one(tmp_path, damage):
    # Issue 27 item 11: a corrupt newest manifest.json failed every later backup; a backup whose
    # verify failed was linked from, its rotten files inherited.
    good = begin(tmp_path)
    prepare_partial(good)
    commit(tmp_path, good, fill(good["partial"]))
    bad = begin(tmp_path, now=LATER)
    prepare_partial(bad)
    bad = commit(tmp_path, bad, fill(bad["partial"]), now=LATER)
    if damage == "manifest":
        with open(bad["manifest"], "r+") as handle:
            text = handle.read()
            handle.seek(0)
            assert '"bucket":"rat"' in text
            handle.write(text.replace('"bucket":"rat"', '"bucket":rat"'))
    else:
        layout.write_status(str(tmp_path), bad["name"], "verify", {"ok": False, "bad": ["minio/rat/a.csv: sha256"]})
    third = begin(tmp_path, now=LATER + datetime.timedelta(seconds=5))
    assert third["previous"] == good["backup_dir"] and third["previous_dump_bytes"] == len(DUMP)
    assert list(third["previous_skipped"]) == [bad["name"]]


def test_begin_when_python_package_missing_fails_naming_it_and_creates_nothing(tmp_path):
    root = tmp_path / "backups"
    with pytest.raises(RatBackupError, match=r"surely_not_a_module_xyz are missing .*pip install surely_not_a_module_xyz"):
        begin(root, modules=["json", "surely_not_a_module_xyz"])
    assert not root.exists()


def test_begin_when_root_is_a_file_fails_naming_it_and_leaves_it(tmp_path):
    root = tmp_path / "backups"
    root.write_bytes(b"not a directory")
    with pytest.raises(RatBackupError, match="backup root .*backups is not writable"):
        begin(root)
    assert root.read_bytes() == b"not a directory"


def test_begin_when_previous_dump_grown_would_not_fit_fails_and_leaves_no_lock(tmp_path, monkeypatch):
    first = begin(tmp_path)
    prepare_partial(first)
    commit(tmp_path, first, fill(first["partial"]))
    free = 100 + int(len(DUMP) * backup_dir.DUMP_GROWTH) - 1
    monkeypatch.setattr(backup_dir.fs, "free_bytes", lambda path: free)
    with pytest.raises(RatBackupError, match="not enough free space") as caught:
        begin(tmp_path, required_bytes=100, now=LATER)
    assert caught.value.details["required_bytes"] == free + 1
    assert lock.lock_state(str(tmp_path))[0] is False
    assert not [n for n in os.listdir(str(tmp_path)) if n.endswith(layout.PARTIAL_SUFFIX)]


def test_begin_when_dead_run_left_partial_counts_its_space_as_free(tmp_path, monkeypatch):
    dead = begin(tmp_path)
    lock.release(str(tmp_path), dead["lock_token"])
    reclaimed = []
    monkeypatch.setattr(backup_dir.fs, "free_bytes", lambda path: 50 if not reclaimed else 500)
    original = backup_dir.layout.remove_tree
    monkeypatch.setattr(backup_dir.layout, "remove_tree", lambda path: (reclaimed.append(path), original(path)))
    started = begin(tmp_path, required_bytes=400, now=LATER)
    assert reclaimed == [dead["partial"]] and started["removed_partials"] == [dead["partial"]]
    assert os.path.isdir(started["partial"])


def test_commit_when_lock_given_up_while_run_was_idle_then_taken_back_and_committed(tmp_path, monkeypatch):
    monkeypatch.setattr(lock, "HEARTBEAT_SECONDS", 0.1)
    monkeypatch.setattr(lock, "_anchor", lambda pid: (1, "ssh"))
    # Begun by a task's process that has ended since, as over SSH.
    started = in_child(lambda: begin(tmp_path, idle_seconds=1))
    prepare_partial(started)
    pg = fill(started["partial"])
    deadline = time.monotonic() + 10
    while lock.lock_state(str(tmp_path))[0] and time.monotonic() < deadline:
        time.sleep(0.05)
    assert lock.read_lock(str(tmp_path))["released_because"].startswith("idle")
    done = commit(tmp_path, started, pg)
    assert os.path.isfile(done["manifest"]) and lock.lock_state(str(tmp_path))[0] is False


def test_commit_when_another_run_took_the_lock_then_refuses_naming_why(tmp_path):
    started = begin(tmp_path)
    prepare_partial(started)
    pg = fill(started["partial"])
    lock.release(str(tmp_path), started["lock_token"])
    other, _stale = lock.acquire(str(tmp_path), "backup", 60)
    try:
        with pytest.raises(RatBackupError, match="no longer holds the lock"):
            commit(tmp_path, started, pg)
        assert os.path.isdir(started["partial"])
    finally:
        lock.release(str(tmp_path), other["token"])


def test_commit_when_object_manifest_large_then_manifest_compressed_and_read_as_the_plain_one(tmp_path, monkeypatch):
    objects = {"k%d.csv" % i: b"%d\n" % i for i in range(5)}
    started = begin(tmp_path)
    prepare_partial(started)
    small = commit(tmp_path, started, fill(started["partial"], objects))
    with open(os.path.join(small["backup_dir"], "manifest.json"), "rb") as handle:
        assert handle.read(1) == b"{"
    monkeypatch.setattr(mf, "COMPRESS_FROM", 1)
    started = begin(tmp_path, now=LATER)
    prepare_partial(started)
    large = commit(tmp_path, started, fill(started["partial"], objects), now=LATER + datetime.timedelta(seconds=5))
    with open(os.path.join(large["backup_dir"], "manifest.json"), "rb") as handle:
        assert handle.read(2) == b"\x1f\x8b"
    plain, packed = mf.read(small["backup_dir"]), mf.read(large["backup_dir"])
    assert packed["format"] == 2 and packed["minio"]["objects"] == plain["minio"]["objects"]
    assert mf.verify(large["backup_dir"], packed, "full")["ok"]
    assert (large["objects"], large["object_bytes"], large["buckets"]) == (5, plain_bytes(objects), ["rat"])


def plain_bytes(objects):
    return sum(len(v) for v in objects.values())


def test_commit_when_many_files_then_the_tree_is_walked_once(tmp_path, monkeypatch):
    """Modes, stored bytes and the presence check come from one walk (three before, issue 24)."""
    started = begin(tmp_path)
    prepare_partial(started)
    for i in range(3):
        os.makedirs(os.path.join(started["partial"], "minio", "rat", "d%d" % i))
    pg = fill(started["partial"], {"d%d/k%d" % (i % 3, i): b"x" * i for i in range(30)})
    listed = []
    real = os.scandir

    def counting(path="."):
        listed.append(os.fspath(path))
        return real(path)

    monkeypatch.setattr(os, "scandir", counting)
    done = commit(tmp_path, started, pg)
    monkeypatch.setattr(os, "scandir", real)
    assert done["objects"] == 30 and done["copied"] == 31
    assert listed.count(started["partial"]) == 1
    assert mf.verify(done["backup_dir"], mf.read(done["backup_dir"]), "full")["ok"]


def test_commit_when_a_listed_file_is_missing_then_no_manifest_is_left_in_the_partial(tmp_path):
    started = begin(tmp_path)
    prepare_partial(started)
    pg = fill(started["partial"], {"a.csv": b"1", "b.csv": b"2"})
    os.unlink(os.path.join(started["partial"], "minio", "rat", "b.csv"))
    with pytest.raises(RatBackupError) as err:
        commit(tmp_path, started, pg)
    assert "minio/rat/b.csv: missing" in err.value.msg
    assert sorted(os.listdir(started["partial"])) == ["minio", "minio.json", "postgres"]


def test_capture_commit_when_captured_then_manifest_records_the_run_and_its_log_line_and_metrics(tmp_path):
    """capture.commit: the role's facts of the run in the manifest's consistency record, Ansible's
    version in its tools, the lock released, the log line and the metrics written."""
    from ansible.module_utils.ansible_release import __version__ as ansible_core
    from ansible_collections.rat.backup.plugins.module_utils import capture
    root = tmp_path / "root"
    started = begin(root)
    prepare_partial(started)
    pg = fill(started["partial"])
    with open(os.path.join(started["partial"], "postgres", "rat.dump.json"), "w") as handle:
        json.dump(pg, handle)
    params = {"root": str(root), "host_name": "rat-lab", "use_versions": True, "quiesce_before": ["true"],
              "log_file": str(tmp_path / "backup.log"), "metrics_dir": str(tmp_path)}
    captured = {"consistency": {"level": "snapshot", "time": "2026-02-16T09:30:01Z"}, "changed_during": [],
                "dump": {"snapshot": "00000003-0000001B-1"}}
    logged = []
    done = capture.commit(params, started, captured, logged.append)
    data = json.loads(open(done["manifest"]).read())
    assert data["consistency"]["level"] == "snapshot" and data["consistency"]["dump_snapshot"] == "00000003-0000001B-1"
    assert data["consistency"]["use_versions"] is True and data["consistency"]["quiesced"] is True
    assert data["tools"]["ansible_core"] == ansible_core and data["host"] == "rat-lab"
    assert not lock.lock_state(str(root))[0] and not os.path.exists(started["partial"])
    assert logged == [done["log_line"]] and "host=rat-lab status=ok" in done["log_line"]
    assert (tmp_path / "backup.log").read_text().strip() == done["log_line"]
    assert 'rat_backup_last_status{host="rat-lab"} 1' in (tmp_path / "rat_backup.prom").read_text()
    # Without a consistency record of its own (no versioned bucket captured): best-effort, as the role said.
    second = begin(root, now=LATER)
    prepare_partial(second)
    with open(os.path.join(second["partial"], "postgres", "rat.dump.json"), "w") as handle:
        json.dump(fill(second["partial"]), handle)
    done = capture.commit(dict(params, quiesce_before=[], log_file=None, metrics_dir=None), second,
                          {"consistency": None, "changed_during": [], "dump": {}})
    data = json.loads(open(done["manifest"]).read())
    assert data["consistency"]["level"] == "best-effort" and "dump_snapshot" not in data["consistency"]
    assert data["consistency"]["quiesced"] is False


@pytest.mark.parametrize("broken", ["metrics_dir", "log_file"])
def test_capture_commit_when_reporting_fails_after_the_rename_then_said_complete_not_left_to_abort(tmp_path, broken):
    """A log line or metrics that cannot be written after the rename: the backup is complete, the
    error says so and carries ``committed`` (no .partial or token for an abort to act on)."""
    from ansible_collections.rat.backup.plugins.module_utils import capture
    root = tmp_path / "root"
    started = begin(root)
    prepare_partial(started)
    with open(os.path.join(started["partial"], "postgres", "rat.dump.json"), "w") as handle:
        json.dump(fill(started["partial"]), handle)
    # A file where a directory must be (root may write anywhere): neither can be written.
    (tmp_path / "file").write_text("")
    where = {"metrics_dir": str(tmp_path / "file"), "log_file": str(tmp_path / "file" / "backup.log")}
    params = dict({"root": str(root), "host_name": "rat-lab", "use_versions": False, "quiesce_before": [],
                   "log_file": None, "metrics_dir": None}, **{broken: where[broken]})
    with pytest.raises(RatBackupError) as caught:
        capture.commit(params, started, {"consistency": None, "changed_during": [], "dump": {}})
    assert caught.value.msg.startswith(f"backup {started['name']} is complete in {started['backup_dir']}, "
                                       "but after its commit: ")
    assert caught.value.details["committed"]["backup_dir"] == started["backup_dir"]
    assert not {"partial", "lock_token", "name"} & set(caught.value.details)
    assert os.path.isfile(os.path.join(started["backup_dir"], "manifest.json")) and not os.path.exists(started["partial"])
    assert not lock.lock_state(str(root))[0]


def test_capture_commit_when_it_fails_before_the_rename_then_left_to_abort(tmp_path):
    from ansible_collections.rat.backup.plugins.module_utils import capture
    root = tmp_path / "root"
    started = begin(root)
    prepare_partial(started)
    fill(started["partial"])  # no rat.dump.json: not committed
    try:
        with pytest.raises(RatBackupError) as caught:
            capture.commit({"root": str(root), "host_name": "rat-lab", "use_versions": False, "quiesce_before": [],
                            "log_file": None, "metrics_dir": None}, started,
                           {"consistency": None, "changed_during": [], "dump": {}})
        assert "no pg_dump result" in caught.value.msg and "committed" not in caught.value.details
        assert os.path.isdir(started["partial"]) and lock.lock_state(str(root))[0]
    finally:
        lock.release(str(root), started["lock_token"])
