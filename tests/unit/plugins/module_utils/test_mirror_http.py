# -*- coding: utf-8 -*-
# Copyright: rat.backup contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Mirror with fast transports (_s3.transport: what bucket_mirror uses for an endpoint URL), on a real moto server."""

from __future__ import annotations

import hashlib
import os
import signal

import pytest

boto3 = pytest.importorskip("boto3")
moto_server = pytest.importorskip("moto.server")

from ansible_collections.rat.backup.plugins.module_utils import fs  # noqa: E402
from ansible_collections.rat.backup.plugins.module_utils import mirror as mr  # noqa: E402
from ansible_collections.rat.backup.plugins.module_utils import s3  # noqa: E402
from ansible_collections.rat.backup.plugins.module_utils._s3 import transport as fast_transport  # noqa: E402
from ansible_collections.rat.backup.plugins.module_utils.errors import RatBackupError  # noqa: E402
from ansible_collections.rat.backup.plugins.module_utils._mirror import download as mirror_download  # noqa: E402
from ansible_collections.rat.backup.plugins.module_utils._mirror import local_tree  # noqa: E402
from ansible_collections.rat.backup.plugins.module_utils._mirror import upload as mirror_upload  # noqa: E402
from ansible_collections.rat.backup.plugins.module_utils._mirror.key_paths import TMP_DIR  # noqa: E402
from ansible_collections.rat.backup.plugins.module_utils._mirror.object_manifest import read_manifest  # noqa: E402
from ansible_collections.rat.backup.tests.unit.plugins.module_utils.test_mirror import (  # noqa: E402
    across_endpoints, options as mirror_options, rewrite_spool_after_check)

# Each pytest-xdist worker (gw0, gw1, ...) runs its own server: two on one port would leave
# ThreadedMotoServer.start() waiting forever for a server that could not bind.
PORT = int(os.environ.get("RAT_TEST_MIRROR_HTTP_PORT", "20851")) + 2 * int(os.environ.get("PYTEST_XDIST_WORKER", "gw0")[2:] or 0)
URL = "http://127.0.0.1:%d" % PORT
TRICKY = ["a", "a/b", "../evil", "/lead", "dbl//slash", "space name/ü.txt", "q?x=1&y#z", "pct%41", "~t"]


@pytest.fixture(scope="module")
def server():
    srv = moto_server.ThreadedMotoServer(ip_address="127.0.0.1", port=PORT, verbose=False)
    srv.start()
    yield
    srv.stop()


@pytest.fixture
def client(server, monkeypatch):
    monkeypatch.delenv("AWS_CA_BUNDLE", raising=False)
    c = s3.make_client(s3.Endpoint(URL, "key", "secret"), retry_max_attempts=1)
    # moto servers in one process share their buckets: start from none, leave none.
    empty(c)
    yield c
    empty(c)


def empty(c):
    for name in s3.bucket_names(c, s3.Endpoint(URL)):
        for page in c.get_paginator("list_objects_v2").paginate(Bucket=name):
            for item in page.get("Contents", ()):
                c.delete_object(Bucket=name, Key=item["Key"])
        c.delete_bucket(Bucket=name)


def options(**overrides):
    for side in ("src_", "dest_"):
        overrides.setdefault(side + "endpoint", URL)
    return mirror_options(**overrides)


def http():
    return fast_transport.Transport(s3.Endpoint(URL, "key", "secret"), attempts=2)


def download(client, dest, **overrides):
    overrides.setdefault("src", "s3://")
    overrides.setdefault("manifest", str(dest) + ".json")
    return mr.Mirror(options(dest=str(dest), **overrides), client, None, src_http=http()).run()


def upload(client, src, dest, **overrides):
    return mr.Mirror(options(src=str(src), dest=dest, **overrides), None, client, dest_http=http()).run()


def fill(client, name, objects, **attributes):
    client.create_bucket(Bucket=name)
    for key, body in objects.items():
        client.put_object(Bucket=name, Key=key, Body=body, **attributes)


def objects_of(client, name):
    found = {}
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=name):
        for item in page.get("Contents", ()):
            found[item["Key"]] = client.get_object(Bucket=name, Key=item["Key"])
    return found


def test_download_when_http_transport_stores_exact_bytes_attributes_and_sha256(client, tmp_path):
    bodies = {k: os.urandom(50) + k.encode() for k in TRICKY}
    fill(client, "rat", bodies, ContentType="text/csv", Metadata={"m": "v"}, CacheControl="no-cache")
    result = download(client, tmp_path / "minio")
    assert (result["copied"], result["changed"]) == (len(TRICKY), True)
    entries = {e.key: e for e in read_manifest(str(tmp_path / "minio.json"), "manifest")[1]}
    assert set(entries) == set(TRICKY)
    for key, body in bodies.items():
        entry = entries[key]
        assert (tmp_path / "minio").joinpath(*entry.relpath.split("/")).read_bytes() == body
        assert entry.sha256 == hashlib.sha256(body).hexdigest()
        assert (entry.content_type, entry.cache_control, entry.metadata) == ("text/csv", "no-cache", {"m": "v"})
        assert entry.etag == client.head_object(Bucket="rat", Key=key)["ETag"]
    again = download(client, tmp_path / "minio")
    assert (again["copied"], again["unchanged"], again["changed"]) == (0, len(TRICKY), False)


def test_download_when_syncfs_exists_fsyncs_no_single_file(client, tmp_path, monkeypatch):
    fill(client, "rat", {"a": b"1", "b/c": b"2"})
    synced, fsynced = [], []
    real_fsync = os.fsync
    monkeypatch.setattr(os, "fsync", lambda fd: fsynced.append(os.readlink("/proc/self/fd/%d" % fd)) or real_fsync(fd))
    monkeypatch.setattr(fs, "sync_tree", synced.append)
    assert fs.has_syncfs()
    download(client, tmp_path / "minio")
    assert synced == [str(tmp_path / "minio")]
    # Only the manifest, written after the syncfs, is fsynced on its own.
    assert fsynced and all("minio.json" in os.path.basename(p) for p in fsynced if not os.path.isdir(p))


def test_download_when_http_transport_sets_each_mtime_through_the_open_file(client, tmp_path, monkeypatch):
    fill(client, "rat", {"a": b"1", "dir/b": b"22", "big": os.urandom(s3.PART_SIZE + 10)})
    targets = []
    real_utime = os.utime
    monkeypatch.setattr(os, "utime", lambda target, *a, **k: targets.append(target) or real_utime(target, *a, **k))
    download(client, tmp_path / "minio", processes=0)
    # A descriptor each (futimens), whole and ranged downloads alike: no second lookup of the path.
    assert len(targets) == 3 and all(isinstance(t, int) for t in targets)
    for key in ("a", "dir/b", "big"):
        modified = client.head_object(Bucket="rat", Key=key)["LastModified"]
        assert os.stat(tmp_path / "minio" / "rat" / key).st_mtime_ns == int(modified.timestamp()) * 10 ** 9


def test_download_when_writes_come_back_short_then_every_byte_is_written(client, tmp_path, monkeypatch):
    bodies = {"a": os.urandom(1000), "b": b"x", "c": b""}
    fill(client, "rat", bodies)
    real_write = os.write
    monkeypatch.setattr(os, "write", lambda fd, data: real_write(fd, bytes(data[:7])))
    download(client, tmp_path / "minio", processes=0)
    for key, body in bodies.items():
        assert (tmp_path / "minio" / "rat" / key).read_bytes() == body


@pytest.mark.parametrize("processes", [0, 2])
def test_download_when_disk_full_then_fails_naming_the_file_and_leaves_no_part(client, tmp_path, monkeypatch,
                                                                               processes):
    fill(client, "rat", {"ok": b"fits", "full": b"does not fit"})
    real_write = os.write

    def write(fd, data):
        if bytes(data) == b"does not fit":
            raise OSError(28, os.strerror(28))
        return real_write(fd, data)

    monkeypatch.setattr(os, "write", write)
    with pytest.raises(RatBackupError, match=r"cannot write .*minio/rat/full for rat/full: No space left on device"):
        download(client, tmp_path / "minio", processes=processes)
    assert not (tmp_path / "minio" / "rat" / "full").exists() and not (tmp_path / "minio.json").exists()
    left = [n for dummy, dummy_dirs, names in os.walk(tmp_path / "minio" / TMP_DIR) for n in names]
    assert left == []


def test_download_when_new_directories_are_plain_then_proven_inside_without_realpath_each(client, tmp_path, monkeypatch):
    bodies = {f"warehouse/t{t}/data/dt=2026-11-{d:02d}/part-{i}.parquet": b"%d" % i
              for t in range(3) for d in range(1, 4) for i in range(3)}
    fill(client, "rat", bodies)
    resolved = []
    real_realpath = os.path.realpath
    monkeypatch.setattr(os.path, "realpath", lambda p, **k: resolved.append(str(p)) or real_realpath(p, **k))
    download(client, tmp_path / "minio", processes=0)
    for key, body in bodies.items():
        assert (tmp_path / "minio" / "rat" / key).read_bytes() == body
    # The root once; its 9 + 4 new directories by one lstat each (os.path.realpath: ~12 each).
    assert [p for p in resolved if p.startswith(str(tmp_path / "minio" / "rat"))] == []
    # A symlink met among the new levels is still resolved and refused when it leads out.
    outside = tmp_path / "outside"
    outside.mkdir()
    os.symlink(outside, tmp_path / "minio" / "rat" / "warehouse" / "t9")
    client.put_object(Bucket="rat", Key="warehouse/t9/x/y", Body=b"out")
    with pytest.raises(RatBackupError, match="resolves outside"):
        download(client, tmp_path / "minio", processes=0)
    # Not even an empty directory is made out there (os.makedirs made outside/x before the check).
    assert os.listdir(outside) == []


def test_parent_for_when_a_level_is_a_symlink_inside_or_a_file_then_followed_or_refused_by_name(tmp_path):
    tree = local_tree.LocalTree(str(tmp_path / "minio") + "/")
    tree.prepare()
    (tmp_path / "minio" / "real").mkdir()
    os.symlink(tmp_path / "minio" / "real", tmp_path / "minio" / "alias")
    tree.parent_for("alias/a/b/key")
    assert (tmp_path / "minio" / "real" / "a" / "b").is_dir()
    (tmp_path / "minio" / "file").write_bytes(b"x")
    with pytest.raises(RatBackupError, match=r"cannot create directory .*/minio/file: a file that is not a directory"):
        tree.parent_for("file/a/key")
    assert (tmp_path / "minio" / "file").read_bytes() == b"x"


def test_temp_path_when_a_later_process_reuses_a_pid_then_its_names_are_new(tmp_path):
    tree = local_tree.LocalTree(str(tmp_path / "minio"))
    tree.prepare()
    names = [tree.temp_path() for dummy in range(3)]
    assert len(set(names)) == 3 and all(os.path.dirname(n) == str(tmp_path / "minio" / TMP_DIR / str(os.getpid()))
                                        for n in names)
    for name in names:
        open(name, "wb").close()
    # Another process with this pid (an earlier worker's leftovers, not cleared mid-run) starts over.
    again = local_tree.LocalTree(str(tmp_path / "minio"))
    assert not set(again.temp_path() for dummy in range(3)) & set(names)


def test_download_when_link_dest_links_unchanged_objects_into_a_fresh_directory(client, tmp_path):
    fill(client, "rat", {"same": b"one", "dir/same": b"two", "new": b"three"})
    first = tmp_path / "b1"
    download(client, first / "minio", manifest=str(first / "manifest.json"))
    client.put_object(Bucket="rat", Key="new", Body=b"changed")
    second = tmp_path / "b2"
    result = download(client, second / "minio", manifest=str(second / "manifest.json"),
                      link_dest=str(first / "minio"))
    assert (result["linked"], result["copied"]) == (2, 1)
    assert os.path.samefile(first / "minio" / "rat" / "dir" / "same", second / "minio" / "rat" / "dir" / "same")
    assert (second / "minio" / "rat" / "new").read_bytes() == b"changed"
    assert not os.listdir(second / "minio" / ".rat-tmp") if (second / "minio" / ".rat-tmp").exists() else True


def test_download_after_restore_in_parts_links_the_object_in_worker_processes(client, tmp_path):
    # One PUT in the source, parts of PART_SIZE after the restore: another ETag over the same bytes.
    big = os.urandom(s3.PART_SIZE + 1000)
    fill(client, "rat", {"big": big, "small": b"s"}, ContentType="text/csv", Metadata={"m": "v"})
    first = tmp_path / "b1"
    download(client, first / "minio", manifest=str(first / "manifest.json"))
    empty(client)
    upload(client, first / "minio", "s3://", manifest=str(first / "manifest.json"), create_buckets=True)
    second = tmp_path / "b2"
    result = download(client, second / "minio", manifest=str(second / "manifest.json"),
                      link_dest=str(first / "minio"), processes=2)
    assert (result["linked"], result["copied"], result["bytes"]) == (2, 0, 0)
    assert os.path.samefile(first / "minio" / "rat" / "big", second / "minio" / "rat" / "big")
    entry = {e.key: e for e in read_manifest(str(second / "manifest.json"), "manifest")[1]}["big"]
    assert entry.etag == client.head_object(Bucket="rat", Key="big")["ETag"] and entry.etag.endswith('-2"')
    assert (entry.sha256, entry.content_type, entry.metadata) == (hashlib.sha256(big).hexdigest(), "text/csv", {"m": "v"})


def test_upload_when_http_transport_restores_bytes_and_attributes_from_manifest(client, tmp_path):
    bodies = {k: os.urandom(70) for k in TRICKY}
    fill(client, "rat", bodies, ContentType="application/x-parquet", Metadata={"owner": "rat"})
    download(client, tmp_path / "minio")
    result = upload(client, tmp_path / "minio", "s3://restored", manifest=str(tmp_path / "minio.json"),
                    create_buckets=True)
    assert result["copied"] == len(TRICKY)
    restored = objects_of(client, "restored")
    assert set(restored) == set(TRICKY)
    for key, body in bodies.items():
        assert restored[key]["Body"].read() == body
        got = (restored[key]["ContentType"], restored[key]["Metadata"])
        assert got == ("application/x-parquet", {"owner": "rat"})


def test_upload_when_file_changes_after_planning_fails_naming_it(client, tmp_path, monkeypatch):
    (tmp_path / "src" / "bkt").mkdir(parents=True)
    (tmp_path / "src" / "bkt" / "k").write_bytes(b"12345")
    mirror = mr.Mirror(options(src=str(tmp_path / "src"), dest="s3://", create_buckets=True), None, client,
                       dest_http=http())
    real_open = os.fdopen

    def grown(fd, *args, **kwargs):
        handle = real_open(fd, *args, **kwargs)
        (tmp_path / "src" / "bkt" / "k").write_bytes(b"123456")
        return handle

    monkeypatch.setattr(os, "fdopen", grown)
    with pytest.raises(RatBackupError, match=r"s3://bkt/k .* changed since it was verified"):
        mirror.run()
    monkeypatch.undo()
    assert "Contents" not in client.list_objects_v2(Bucket="bkt")


def test_s3_copy_when_spool_changes_after_check_then_http_put_refused(client, monkeypatch):
    across_endpoints(monkeypatch)
    fill(client, "src", {"k": os.urandom(4000)})
    fill(client, "dst", {})
    rewrite_spool_after_check(monkeypatch, 0)
    mirror = mr.Mirror(options(src="s3://src", dest="s3://dst"), client, client, dest_http=http())
    with pytest.raises(RatBackupError, match=r"^s3://dst/k \(spooled from s3://src/k\) changed since it was verified"):
        mirror.run()
    assert objects_of(client, "dst") == {}


def test_download_when_object_larger_than_a_part_fetches_ranges_in_parallel(client, tmp_path, monkeypatch):
    monkeypatch.setattr(s3, "PART_SIZE", 64 << 10)
    body = os.urandom(300 << 10)
    fill(client, "big", {"table.parquet": body})
    ranges = []
    real_get = fast_transport.Transport.get

    def counting_get(self, bucket, key, version_id=None, byte_range=None, if_match=None):
        ranges.append((byte_range, if_match))
        return real_get(self, bucket, key, version_id, byte_range, if_match)

    monkeypatch.setattr(fast_transport.Transport, "get", counting_get)
    # In this process: the spy's list would fill in a worker's copy of it.
    result = download(client, tmp_path / "minio", processes=0)
    assert result["copied"] == 1
    assert (tmp_path / "minio" / "big" / "table.parquet").read_bytes() == body
    entry = read_manifest(str(tmp_path / "minio.json"), "manifest")[1][0]
    assert (entry.size, entry.sha256) == (len(body), hashlib.sha256(body).hexdigest())
    etag = client.head_object(Bucket="big", Key="table.parquet")["ETag"]
    want = [(start, min(start + (64 << 10), len(body)) - 1) for start in range(0, len(body), 64 << 10)]
    assert sorted(r for r, dummy in ranges) == want
    assert all(match == etag for r, match in ranges if r[0] > 0)


def test_download_when_object_rewritten_between_parts_fetches_the_new_one_whole(client, tmp_path, monkeypatch):
    monkeypatch.setattr(s3, "PART_SIZE", 64 << 10)
    old, new = os.urandom(200 << 10), os.urandom(200 << 10)
    fill(client, "big", {"k": old})
    real_get = fast_transport.Transport.get
    rewritten = []

    def rewriting_get(self, bucket, key, version_id=None, byte_range=None, if_match=None):
        if byte_range and byte_range[0] > 0 and not rewritten:
            rewritten.append(True)
            client.put_object(Bucket="big", Key="k", Body=new)
        return real_get(self, bucket, key, version_id, byte_range, if_match)

    monkeypatch.setattr(fast_transport.Transport, "get", rewriting_get)
    result = download(client, tmp_path / "minio")
    assert (tmp_path / "minio" / "big" / "k").read_bytes() == new
    assert [c["change"] for c in result["changed_during"]] == ["modified"]


def test_download_when_listed_key_answers_404_but_is_still_listed_fails_naming_it(client, tmp_path, monkeypatch):
    fill(client, "landing", {"a b+c.csv": b"data", "other": b"x"})
    real_get = fast_transport.Transport.get

    def lying_get(self, bucket, key, version_id=None, byte_range=None, if_match=None):
        if key == "a b+c.csv":
            # What a mis-named key gets: the server has no object of the name asked for.
            return real_get(self, bucket, "no such key", version_id, byte_range, if_match)
        return real_get(self, bucket, key, version_id, byte_range, if_match)

    monkeypatch.setattr(fast_transport.Transport, "get", lying_get)
    with pytest.raises(RatBackupError, match=r"landing/'a b\+c.csv'.*does not exist, yet lists it"):
        download(client, tmp_path / "minio", processes=0)


def test_download_when_listed_key_deleted_before_its_get_records_it_as_deleted(client, tmp_path, monkeypatch):
    fill(client, "landing", {"dir/a b+c.csv": b"data", "dir/b": b"x"})
    real_get = fast_transport.Transport.get

    def deleting_get(self, bucket, key, version_id=None, byte_range=None, if_match=None):
        if key == "dir/a b+c.csv":
            client.delete_object(Bucket=bucket, Key=key)
        return real_get(self, bucket, key, version_id, byte_range, if_match)

    monkeypatch.setattr(fast_transport.Transport, "get", deleting_get)
    result = download(client, tmp_path / "minio", processes=0)
    assert result["changed_during"] == [{"bucket": "landing", "key": "dir/a b+c.csv", "change": "deleted"}]
    assert (tmp_path / "minio" / "landing" / "dir" / "b").read_bytes() == b"x"


# --- worker processes -----------------------------------------------------------------------------

def pids_of_fetches(monkeypatch, tmp_path, action=None):
    """Spy on Download.fetch in the workers: each writes its pid (and may act) before fetching."""
    log = tmp_path / "fetch-pids"
    real = mirror_download.Download.fetch

    def fetch(self, entry):
        with open(log, "a") as handle:
            handle.write(f"{os.getpid()}\n")
        if action is not None:
            action(entry)
        return real(self, entry)

    monkeypatch.setattr(mirror_download.Download, "fetch", fetch)
    return lambda: set(log.read_text().split()) if log.exists() else set()


def test_download_when_worker_processes_then_tree_manifest_and_sha256_equal_source(client, tmp_path, monkeypatch):
    bodies = {f"warehouse/t/data/part-{i:03d}.parquet": os.urandom(100 + i) for i in range(40)}
    bodies.update({k: os.urandom(30) + k.encode() for k in TRICKY})
    fill(client, "rat", bodies, ContentType="text/csv", Metadata={"m": "v"})
    pids = pids_of_fetches(monkeypatch, tmp_path)
    result = download(client, tmp_path / "minio", processes=3, concurrency=6)
    assert (result["copied"], result["bytes"], result["changed_during"]) == (
        len(bodies), sum(len(b) for b in bodies.values()), [])
    workers = pids()
    assert len(workers) == 3 and str(os.getpid()) not in workers
    entries = {e.key: e for e in read_manifest(str(tmp_path / "minio.json"), "manifest")[1]}
    assert set(entries) == set(bodies)
    for key, body in bodies.items():
        entry = entries[key]
        assert (tmp_path / "minio").joinpath(*entry.relpath.split("/")).read_bytes() == body
        assert (entry.sha256, entry.content_type, entry.metadata) == (
            hashlib.sha256(body).hexdigest(), "text/csv", {"m": "v"})
        assert entry.etag == client.head_object(Bucket="rat", Key=key)["ETag"]
    assert not (tmp_path / "minio" / TMP_DIR).exists()
    again = download(client, tmp_path / "minio", processes=3)
    assert (again["copied"], again["unchanged"], again["changed"]) == (0, len(bodies), False)


def test_download_when_object_changes_under_a_worker_then_change_reported(client, tmp_path, monkeypatch):
    fill(client, "rat", {f"k{i}": b"old %d" % i for i in range(6)})

    def rewrite_k3(entry):
        if entry.key == "k3":
            client.put_object(Bucket="rat", Key="k3", Body=b"rewritten after the listing")

    pids_of_fetches(monkeypatch, tmp_path, rewrite_k3)
    result = download(client, tmp_path / "minio", processes=2)
    assert [(c["key"], c["change"]) for c in result["changed_during"]] == [("k3", "modified")]
    assert (tmp_path / "minio" / "rat" / "k3").read_bytes() == b"rewritten after the listing"


def test_download_when_worker_fails_then_its_error_and_details_stop_the_run(client, tmp_path, monkeypatch):
    fill(client, "rat", {f"k{i}": b"%d" % i for i in range(8)})

    def refuse_k5(entry):
        if entry.key == "k5":
            raise RatBackupError("disk said no", path="/x/k5")

    pids_of_fetches(monkeypatch, tmp_path, refuse_k5)
    with pytest.raises(RatBackupError, match=r"^disk said no \(\d+ of 8 transfers done") as caught:
        download(client, tmp_path / "minio", processes=2)
    assert caught.value.details["path"] == "/x/k5"
    assert not (tmp_path / "minio.json").exists()


def test_download_when_worker_is_killed_then_run_fails_naming_the_signal_and_a_rerun_completes(
        client, tmp_path, monkeypatch):
    bodies = {f"k{i}": os.urandom(64) for i in range(8)}
    fill(client, "rat", bodies)
    killed = tmp_path / "killed"

    def die_on_k2(entry):
        if entry.key == "k2" and not killed.exists():
            killed.write_text("once")
            os.kill(os.getpid(), signal.SIGKILL)

    pids_of_fetches(monkeypatch, tmp_path, die_on_k2)
    with pytest.raises(RatBackupError, match=r"^worker process \d+ ended with signal 9"):
        download(client, tmp_path / "minio", processes=2)
    assert not (tmp_path / "minio.json").exists()
    result = download(client, tmp_path / "minio", processes=2)
    assert result["changed"] is True
    for key, body in bodies.items():
        assert (tmp_path / "minio" / "rat" / key).read_bytes() == body
    assert len(read_manifest(str(tmp_path / "minio.json"), "manifest")[1]) == len(bodies)


def test_mirror_when_processes_negative_then_refused(client, tmp_path):
    with pytest.raises(RatBackupError, match=r"^processes -1 is below 0$"):
        download(client, tmp_path / "minio", processes=-1)


def test_upload_when_worker_processes_then_small_and_multipart_objects_equal_the_files(
        client, tmp_path, monkeypatch):
    monkeypatch.setattr(s3, "PART_SIZE", 5 << 20)
    files = {f"rat/landing/f{i:02d}.csv": os.urandom(200 + i) for i in range(20)}
    files["rat/big/table.parquet"] = os.urandom((5 << 20) + 12345)
    for relpath, body in files.items():
        path = tmp_path / "src" / relpath
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(body)
    fill(client, "rat", {})
    log = tmp_path / "put-pids"
    real = mirror_upload.Upload.put

    def put(self, entry):
        with open(log, "a") as handle:
            handle.write(f"{os.getpid()}\n")
        return real(self, entry)

    monkeypatch.setattr(mirror_upload.Upload, "put", put)
    result = upload(client, tmp_path / "src", "s3://", processes=2, concurrency=4)
    assert (result["copied"], result["bytes"]) == (len(files), sum(len(b) for b in files.values()))
    workers = set(log.read_text().split())
    assert len(workers) == 2 and str(os.getpid()) not in workers
    stored = objects_of(client, "rat")
    assert {k: v["Body"].read() for k, v in stored.items()} == {r[len("rat/"):]: b for r, b in files.items()}
    assert stored["big/table.parquet"]["ETag"].endswith('-2"')


def test_upload_when_many_files_share_directories_resolves_each_directory_once_and_refuses_one_leading_out(
        client, tmp_path, monkeypatch):
    bodies = {f"warehouse/t{t}/data/part-{i}.parquet": b"%d" % i for t in range(3) for i in range(6)}
    fill(client, "rat", bodies)
    download(client, tmp_path / "minio")
    resolved = []
    real_realpath = os.path.realpath
    monkeypatch.setattr(os.path, "realpath", lambda p, **k: resolved.append(str(p)) or real_realpath(p, **k))
    result = upload(client, tmp_path / "minio", "s3://", manifest=str(tmp_path / "minio.json"),
                    bucket_map={"rat": "restored"}, create_buckets=True, processes=2)
    assert result["copied"] == len(bodies)
    assert {k: v["Body"].read() for k, v in objects_of(client, "restored").items()} == bodies
    # The plan proves each file's directory (not each file's: 18, then again in the upload), once
    # but for its threads racing to the same directory; the worker processes are its forks and
    # inherit the proof.
    inside = [p for p in resolved if p.startswith(str(tmp_path / "minio" / "rat"))]
    assert set(inside) == {str(tmp_path / "minio" / "rat" / "warehouse" / f"t{t}" / "data") for t in range(3)}
    assert len(inside) <= 3 * 4 < len(bodies)
    # A directory that became a symlink leading out is still refused, naming it; nothing is sent.
    empty(client)
    fill(client, "restored", {})
    outside = tmp_path / "outside"
    os.rename(tmp_path / "minio" / "rat" / "warehouse" / "t1", outside)
    os.symlink(outside, tmp_path / "minio" / "rat" / "warehouse" / "t1")
    with pytest.raises(RatBackupError, match=r"warehouse/t1/data resolves outside"):
        upload(client, tmp_path / "minio", "s3://", manifest=str(tmp_path / "minio.json"),
               bucket_map={"rat": "restored"}, processes=2)
    assert objects_of(client, "restored") == {}
