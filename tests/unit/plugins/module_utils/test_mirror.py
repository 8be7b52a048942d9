# -*- coding: utf-8 -*-
# Copyright: rat.backup contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

import base64
import datetime
import email.utils
import errno
import hashlib
import io
import json
import os
import time

import botocore.response
import pytest
from moto import mock_aws

from ansible_collections.rat.backup.plugins.module_utils._mirror import key_paths
from ansible_collections.rat.backup.plugins.module_utils import fs
from ansible_collections.rat.backup.plugins.module_utils import mirror as mr
from ansible_collections.rat.backup.plugins.module_utils._mirror import download as mirror_download
from ansible_collections.rat.backup.plugins.module_utils._mirror import local_tree
from ansible_collections.rat.backup.plugins.module_utils._mirror import s3_copy as mirror_s3_copy
from ansible_collections.rat.backup.plugins.module_utils._mirror import sides as sides_module
from ansible_collections.rat.backup.plugins.module_utils._mirror import upload as mirror_upload
from ansible_collections.rat.backup.plugins.module_utils._mirror import model as mirror_model
from ansible_collections.rat.backup.plugins.module_utils._mirror.model import Entry
from ansible_collections.rat.backup.plugins.module_utils.errors import RatBackupError
from ansible_collections.rat.backup.plugins.module_utils._mirror.object_manifest import Journal, manifest_line, read_manifest
from ansible_collections.rat.backup.plugins.module_utils import s3
from ansible_collections.rat.backup.plugins.module_utils.errors import RatBackupError

TRICKY = ["a", "a/b", "../evil", "x/../../y", "/lead", "trail/", "dbl//slash", "s" * 300, ".rat-keys/z",
          "space name/ü.txt", "empty"]


@pytest.fixture
def client(monkeypatch):
    monkeypatch.delenv("AWS_CA_BUNDLE", raising=False)
    with mock_aws():
        yield s3.make_client(s3.Endpoint(None, "key", "secret"), retry_max_attempts=1)


def options(**overrides):
    base = {"buckets": [], "delete": False, "include": [], "exclude": [], "manifest": None, "link_dest": None,
            "link_dest_manifest": None, "versions_as_of": None, "use_versions": False, "concurrency": 4,
            "create_buckets": False, "retry_mode": "standard", "retry_max_attempts": 2}
    for side in ("src_", "dest_"):
        base.update({side + "endpoint": None, side + "access_key": "key", side + "secret_key": "secret",
                     side + "region": "us-east-1", side + "validate_certs": True, side + "ca_bundle": None})
    base.update(overrides)
    return base


def download(client, dest, check_mode=False, **overrides):
    overrides.setdefault("src", "s3://")
    overrides.setdefault("manifest", str(dest) + ".json")
    return mr.Mirror(options(dest=str(dest), **overrides), client, None, check_mode=check_mode).run()


def upload(client, src, dest, check_mode=False, **overrides):
    return mr.Mirror(options(src=str(src), dest=dest, **overrides), None, client, check_mode=check_mode).run()


def bucket(client, name, objects, versioned=False, **attributes):
    client.create_bucket(Bucket=name)
    if versioned:
        client.put_bucket_versioning(Bucket=name, VersioningConfiguration={"Status": "Enabled"})
    for key, body in objects.items():
        client.put_object(Bucket=name, Key=key, Body=body, **attributes)


def tree(root):
    found = {}
    for dirpath, dummy, files in os.walk(root):
        for name in files:
            path = os.path.join(dirpath, name)
            with open(path, "rb") as handle:
                found[os.path.relpath(path, root)] = handle.read()
    return found


def manifest_objects(path):
    return {(o["bucket"], o["key"]): o for o in read_manifest(str(path), "manifest")[1] and
            [e.to_manifest("x") for e in read_manifest(str(path), "manifest")[1]]}


def test_download_when_tricky_keys_stores_every_one_inside_dest_with_manifest(client, tmp_path):
    bucket(client, "rat", {k: k.encode() * 2 for k in TRICKY}, ContentType="text/csv", Metadata={"m": "v"},
           CacheControl="no-cache")
    result = download(client, tmp_path / "minio")
    assert result["copied"] == len(TRICKY) and result["changed"]
    files = tree(tmp_path / "minio")
    assert all(not name.startswith("..") for name in files)
    objects = manifest_objects(tmp_path / "minio.json")
    assert set(objects) == {("rat", k) for k in TRICKY}
    # The one manifest format (manifest_format.write_lines): indented header, one object a line.
    lines = (tmp_path / "minio.json").read_text().splitlines()
    assert lines[0] == "{" and len(lines) == lines.index(' "objects": [') + len(TRICKY) + 3
    for key in TRICKY:
        item = objects[("rat", key)]
        relpath = item["path"].split("/", 1)[1]
        assert files[relpath] == key.encode() * 2
        assert item["sha256"] == hashlib.sha256(key.encode() * 2).hexdigest()
        assert (item["content_type"], item["cache_control"], item["metadata"]) == ("text/csv", "no-cache", {"m": "v"})
    assert objects[("rat", "a/b")]["path"] == "x/rat/a/b"
    assert objects[("rat", "a")]["path"] == "x/" + key_paths.escaped_relpath("rat", "a")
    assert oct(os.stat(tmp_path / "minio" / "rat" / "a" / "b").st_mode & 0o777) == "0o600"
    assert not (tmp_path / "minio" / ".rat-tmp").exists()


def test_download_when_key_has_backslash_rerun_reads_its_manifest_and_copies_nothing(client, tmp_path):
    # A backslash is a plain character in a Linux path: the key is stored as-is, and the one
    # manifest-path rule (fs.safe_relpath) must read that path back on the next run.
    bucket(client, "rat", {"win\\style.csv": b"1"})
    download(client, tmp_path / "minio")
    assert (tmp_path / "minio" / "rat" / "win\\style.csv").read_bytes() == b"1"
    again = download(client, tmp_path / "minio")
    assert again["copied"] == 0 and again["unchanged"] == 1 and not again["changed"]


def test_download_when_rerun_without_change_copies_nothing(client, tmp_path):
    bucket(client, "rat", {"a.csv": b"1", "b/c.csv": b"2"})
    download(client, tmp_path / "minio")
    before = os.stat(tmp_path / "minio.json").st_mtime_ns
    result = download(client, tmp_path / "minio")
    assert (result["copied"], result["unchanged"], result["changed"]) == (0, 2, False)
    assert os.stat(tmp_path / "minio.json").st_mtime_ns == before


def test_download_when_same_size_rewrite_copies_it(client, tmp_path):
    bucket(client, "rat", {"a.csv": b"aaaa", "b.csv": b"bbbb"})
    download(client, tmp_path / "minio")
    client.put_object(Bucket="rat", Key="a.csv", Body=b"AAAA")
    result = download(client, tmp_path / "minio")
    assert (result["copied"], result["unchanged"]) == (1, 1)
    assert (tmp_path / "minio" / "rat" / "a.csv").read_bytes() == b"AAAA"


def test_download_when_no_manifest_keeps_only_files_proven_equal(client, tmp_path):
    bucket(client, "rat", {"same": b"1234", "other": b"abcd"})
    (tmp_path / "m" / "rat").mkdir(parents=True)
    (tmp_path / "m" / "rat" / "same").write_bytes(b"1234")
    (tmp_path / "m" / "rat" / "other").write_bytes(b"ABCD")
    result = download(client, tmp_path / "m", manifest=None)
    assert (result["copied"], result["unchanged"]) == (1, 1)
    assert (tmp_path / "m" / "rat" / "other").read_bytes() == b"abcd"


def test_download_when_check_mode_returns_plan_and_writes_nothing(client, tmp_path):
    bucket(client, "rat", {"a": b"12", "b": b"345"})
    result = download(client, tmp_path / "minio", check_mode=True)
    assert result["plan"]["to_copy"] == {"count": 2, "bytes": 5, "first": ["rat/a", "rat/b"]}
    assert result["changed"] and result["copied"] == 0
    assert not (tmp_path / "minio").exists() and not (tmp_path / "minio.json").exists()


def test_probe_when_buckets_exist_reports_versioning_and_lists_no_object(client, tmp_path, monkeypatch):
    bucket(client, "rat", {"a": b"1"}, versioned=True)
    bucket(client, "rat-scratch", {"b": b"2"})

    def no_listing(**_kwargs):
        raise AssertionError("a probe must not list objects")
    monkeypatch.setattr(client, "get_paginator", lambda name: no_listing())
    result = download(client, tmp_path / "minio", probe=True)
    assert result["probed"] == {"src": {"rat": {"versioned": True}, "rat-scratch": {"versioned": False}}}
    assert not result["changed"] and result["copied"] == 0
    assert not (tmp_path / "minio").exists() and not (tmp_path / "minio.json").exists()


def test_probe_when_bucket_missing_fails_naming_it(client, tmp_path):
    bucket(client, "rat", {"a": b"1"})
    with pytest.raises(RatBackupError, match="bucket.* rat-lake not found"):
        download(client, tmp_path / "minio", probe=True, buckets=["rat", "rat-lake"])
    with pytest.raises(RatBackupError, match="rat-lake"):
        download(client, tmp_path / "minio", probe=True, src="s3://rat-lake")


def test_probe_when_dest_is_s3_checks_that_it_answers(client, tmp_path):
    (tmp_path / "src" / "rat").mkdir(parents=True)
    result = upload(client, tmp_path / "src", "s3://", probe=True)
    assert result["probed"] == {"dest": {}}


def test_download_when_objects_do_not_fit_fails_before_writing_anything(client, tmp_path, monkeypatch):
    bucket(client, "rat", {"a": b"x" * 3000, "b": b"y" * 2000})
    monkeypatch.setattr(fs, "free_bytes", lambda path: 4999)
    with pytest.raises(RatBackupError, match=r"not enough free space in .*: 2 objects to download need 1 MiB"):
        download(client, tmp_path / "minio")
    assert not (tmp_path / "minio").exists() and not (tmp_path / "minio.json").exists()


def test_download_when_objects_fit_but_not_the_margin_fails(client, tmp_path, monkeypatch):
    bucket(client, "rat", {"a": b"x" * 3000})
    monkeypatch.setattr(fs, "free_bytes", lambda path: 2 ** 20)
    assert download(client, tmp_path / "fits", min_free_bytes=2 ** 20 - 3000)["copied"] == 1
    with pytest.raises(RatBackupError, match="with min_free_bytes"):
        download(client, tmp_path / "minio", min_free_bytes=2 ** 20 - 2999)
    assert not (tmp_path / "minio").exists()


def test_download_when_every_object_is_linked_needs_no_room_for_them(client, tmp_path, monkeypatch):
    bucket(client, "rat", {"a": b"x" * 3000}, versioned=True)
    first = tmp_path / "b1"
    download(client, first / "minio", manifest=str(first / "minio.json"), use_versions=True)
    os.rename(first / "minio.json", first / "manifest.json")
    monkeypatch.setattr(fs, "free_bytes", lambda path: 10)
    second = tmp_path / "b2"
    result = download(client, second / "minio", manifest=str(second / "minio.json"), use_versions=True,
                      link_dest=str(first / "minio"))
    assert (result["linked"], result["copied"]) == (1, 0)


def test_download_when_link_dest_links_unchanged_and_copies_changed(client, tmp_path):
    bucket(client, "rat", {"same": b"old", "changes": b"v1"}, versioned=True)
    first = tmp_path / "b1"
    download(client, first / "minio", manifest=str(first / "minio.json"), use_versions=True)
    os.rename(first / "minio.json", first / "manifest.json")
    client.put_object(Bucket="rat", Key="changes", Body=b"v2")
    second = tmp_path / "b2"
    result = download(client, second / "minio", manifest=str(second / "minio.json"), use_versions=True,
                      link_dest=str(first / "minio"))
    assert (result["linked"], result["copied"]) == (1, 1)
    assert os.stat(first / "minio/rat/same").st_ino == os.stat(second / "minio/rat/same").st_ino
    assert (second / "minio/rat/changes").read_bytes() == b"v2"
    assert (first / "minio/rat/changes").read_bytes() == b"v1"
    objects = manifest_objects(second / "minio.json")
    assert objects[("rat", "same")]["sha256"] == hashlib.sha256(b"old").hexdigest()
    assert objects[("rat", "changes")]["version_id"]


def first_backup(client, first, objects):
    """Bucket "rat" (versioned) holding ``objects``, mirrored to ``first``/minio with its manifest where
    link_dest's is looked for (``first``/manifest.json)."""
    bucket(client, "rat", objects, versioned=True)
    download(client, first / "minio", manifest=str(first / "manifest.json"), use_versions=True)
    return first / "minio"


def inodes(root):
    """{relpath: inode} of the files under ``root`` ({} when it does not exist)."""
    return {os.path.relpath(os.path.join(d, name), root): os.stat(os.path.join(d, name)).st_ino
            for d, dummy, files in os.walk(root) for name in files}


def at_apply(monkeypatch, dest):
    """The inodes() of ``dest`` as each Download.apply begins, once its plan() has returned."""
    seen = []
    apply = mirror_download.Download.apply

    def observed(self):
        if self.tree.root == str(dest):
            seen.append(inodes(dest))
        return apply(self)

    monkeypatch.setattr(mirror_download.Download, "apply", observed)
    return seen


def object_lines(manifest):
    return [line.rstrip(",") for line in manifest.read_text().splitlines() if line.startswith('{"bucket"')]


def test_download_when_dest_fresh_and_link_dest_then_plan_made_the_links_before_apply(client, tmp_path, monkeypatch):
    link_dest = first_backup(client, tmp_path / "b1", {"same": b"old", "deep/same": b"too", "changes": b"v1"})
    client.put_object(Bucket="rat", Key="changes", Body=b"v2")
    dest = tmp_path / "b2" / "minio"
    seen = at_apply(monkeypatch, dest)
    result = download(client, dest, manifest=str(tmp_path / "b2" / "minio.json"), use_versions=True,
                      link_dest=str(link_dest))
    links = {relpath: ino for relpath, ino in inodes(link_dest).items() if relpath != "rat/changes"}
    # Made while the listing streamed: all there when apply begins, the download not yet.
    assert seen == [links]
    assert (result["linked"], result["copied"]) == (2, 1)
    assert inodes(dest).items() >= links.items() and (dest / "rat/changes").read_bytes() == b"v2"


def test_download_when_dest_holds_a_file_then_links_made_by_apply_and_result_as_into_a_fresh_dest(
        client, tmp_path, monkeypatch):
    link_dest = first_backup(client, tmp_path / "b1", {"same": b"old", "deep/same": b"too", "changes": b"v1"})
    client.put_object(Bucket="rat", Key="changes", Body=b"v2")
    fresh, held = tmp_path / "b2" / "minio", tmp_path / "b3" / "minio"
    held.mkdir(parents=True)
    (held / "notes").write_bytes(b"kept")
    before = inodes(held)
    seen = at_apply(monkeypatch, held)
    results = [download(client, dest, manifest=str(dest) + ".json", use_versions=True, link_dest=str(link_dest))
               for dest in (fresh, held)]
    # The plan left the destination as it was; apply linked.
    assert seen == [before]
    assert inodes(held) == {**before, **inodes(fresh), "rat/changes": inodes(held)["rat/changes"]}
    assert [(r["linked"], r["copied"], r["plan"]) for r in results] == [(2, 1, results[0]["plan"])] * 2
    assert object_lines(tmp_path / "b3" / "minio.json") == object_lines(tmp_path / "b2" / "minio.json")
    assert [json.loads(line)["key"] for line in object_lines(tmp_path / "b2" / "minio.json")] == [
        "changes", "deep/same", "same"]


def test_download_when_check_mode_and_link_dest_then_nothing_linked(client, tmp_path):
    link_dest = first_backup(client, tmp_path / "b1", {"same": b"old", "deep/same": b"too"})
    dest = tmp_path / "b2" / "minio"
    result = download(client, dest, check_mode=True, use_versions=True, link_dest=str(link_dest))
    assert (result["plan"]["to_link"]["count"], result["linked"]) == (2, 0)
    assert not dest.exists()
    assert [os.stat(link_dest / "rat" / name).st_nlink for name in ("same", "deep/same")] == [1, 1]


def test_download_when_link_dest_file_changed_in_place_then_downloaded_not_linked(client, tmp_path):
    # Issue 27 item 12: a rotten file of the previous backup (same size) was hard-linked into the
    # new one, which was born failing its own manifest.
    bucket(client, "rat", {"rots": b"good bytes", "fine": b"fine"}, versioned=True)
    first = tmp_path / "b1"
    download(client, first / "minio", manifest=str(first / "minio.json"), use_versions=True)
    os.rename(first / "minio.json", first / "manifest.json")
    time.sleep(1.1)  # the rot comes later than the object's LastModified second
    with open(first / "minio/rat/rots", "r+b") as handle:
        handle.write(b"BAD")
    second = tmp_path / "b2"
    result = download(client, second / "minio", manifest=str(second / "minio.json"), use_versions=True,
                      link_dest=str(first / "minio"))
    assert (result["linked"], result["copied"]) == (1, 1)
    assert (second / "minio/rat/rots").read_bytes() == b"good bytes"
    assert os.stat(first / "minio/rat/rots").st_ino != os.stat(second / "minio/rat/rots").st_ino
    assert os.stat(first / "minio/rat/fine").st_ino == os.stat(second / "minio/rat/fine").st_ino


def test_download_after_restore_into_empty_buckets_links_the_bytes_restored_again(client, tmp_path):
    # Bigger than a part: the restore writes it in parts of PART_SIZE (ETag "...-2"), the seed in one.
    big = bytes(range(256)) * (s3.PART_SIZE // 256 + 1000)
    bucket(client, "rat", {"a": b"x" * 3000, "typed": b"same bytes", "edited": b"v1", "big": big},
           versioned=True, ContentType="text/plain")
    first = tmp_path / "b1"
    download(client, first / "minio", manifest=str(first / "minio.json"), use_versions=True)
    os.rename(first / "minio.json", first / "manifest.json")
    assert s3.delete_bucket(client, s3.Endpoint(None, "key", "secret"), "rat")
    time.sleep(1.1)  # the restore's LastModified is a later second than the first backup's files' mtime
    upload(client, first / "minio", "s3://", manifest=str(first / "manifest.json"), create_buckets=True)
    # After the restore: other bytes of the same size, and a new Content-Type over the same bytes.
    client.put_object(Bucket="rat", Key="edited", Body=b"v2", ContentType="text/plain")
    client.copy_object(Bucket="rat", Key="typed", CopySource={"Bucket": "rat", "Key": "typed"},
                       ContentType="text/csv", MetadataDirective="REPLACE")
    second = tmp_path / "b2"
    result = download(client, second / "minio", manifest=str(second / "minio.json"), use_versions=True,
                      link_dest=str(first / "minio"))
    assert (result["linked"], result["copied"], result["bytes"]) == (3, 1, 2)
    for key in ("a", "typed", "big"):
        assert os.stat(first / "minio/rat" / key).st_ino == os.stat(second / "minio/rat" / key).st_ino
    assert (second / "minio/rat/edited").read_bytes() == b"v2"
    objects = manifest_objects(second / "minio.json")
    live = {v["Key"]: v for v in client.list_object_versions(Bucket="rat")["Versions"] if v["IsLatest"]}
    for key, body in (("a", b"x" * 3000), ("typed", b"same bytes"), ("edited", b"v2"), ("big", big)):
        assert objects[("rat", key)]["sha256"] == hashlib.sha256(body).hexdigest()
        assert (objects[("rat", key)]["version_id"], objects[("rat", key)]["etag"]) == (
            live[key]["VersionId"], live[key]["ETag"])
    assert objects[("rat", "big")]["etag"].endswith('-2"')
    assert objects[("rat", "typed")]["content_type"] == "text/csv"
    assert objects[("rat", "a")]["content_type"] == "text/plain"
    # The backup after it links everything by the listing alone (a relinked file has the new mtime).
    third = tmp_path / "b3"
    os.rename(second / "minio.json", second / "manifest.json")
    result = download(client, third / "minio", manifest=str(third / "minio.json"), use_versions=True,
                      link_dest=str(second / "minio"))
    assert (result["linked"], result["copied"], result["plan"]["to_copy"]["count"]) == (4, 0, 0)


def test_download_when_versions_as_of_takes_versions_current_then(client, tmp_path):
    bucket(client, "rat", {"kept": b"v1", "gone": b"x", "later": b"v1"}, versioned=True)
    time.sleep(1.1)
    cut = datetime.datetime.now(datetime.timezone.utc)
    time.sleep(1.1)
    client.put_object(Bucket="rat", Key="kept", Body=b"v2")
    client.put_object(Bucket="rat", Key="new", Body=b"n")
    client.delete_object(Bucket="rat", Key="later")
    client.delete_object(Bucket="rat", Key="gone")
    client.put_object(Bucket="rat", Key="gone", Body=b"back")
    result = download(client, tmp_path / "m", versions_as_of=cut.isoformat())
    assert result["copied"] == 3
    assert tree(tmp_path / "m") == {"rat/kept": b"v1", "rat/gone": b"x", "rat/later": b"v1"}
    assert all(o["version_id"] for o in manifest_objects(tmp_path / "m.json").values())


def test_download_when_delete_removes_only_extras_in_scope(client, tmp_path):
    bucket(client, "rat", {"a": b"1", "keep.log": b"2"})
    bucket(client, "other", {"o": b"3"})
    download(client, tmp_path / "m")
    client.delete_object(Bucket="rat", Key="a")
    client.delete_object(Bucket="rat", Key="keep.log")
    (tmp_path / "m" / "rat" / "stray" / "deep").mkdir(parents=True)
    (tmp_path / "m" / "rat" / "stray" / "deep" / "f").write_bytes(b"x")
    result = download(client, tmp_path / "m", buckets=["rat"], delete=True, exclude=["*.log"])
    assert result["deleted"] == 2
    assert tree(tmp_path / "m") == {"rat/keep.log": b"2", "other/o": b"3"}
    assert not (tmp_path / "m" / "rat" / "stray").exists()


def test_download_when_delete_meets_symlinked_bucket_dir_unlinks_only_the_link(client, tmp_path):
    bucket(client, "rat", {"a": b"1"})
    bucket(client, "gone", {})
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "precious").write_bytes(b"keep")
    (tmp_path / "m").mkdir()
    os.symlink(outside, tmp_path / "m" / "stale")
    result = download(client, tmp_path / "m", delete=True)
    assert result["deleted"] == 1 and not os.path.lexists(tmp_path / "m" / "stale")
    assert (outside / "precious").read_bytes() == b"keep"


def test_download_when_manifest_inside_single_bucket_dest_is_not_deleted(client, tmp_path):
    bucket(client, "rat", {"a": b"1"})
    first = download(client, tmp_path / "m", src="s3://rat", manifest=str(tmp_path / "m" / "state.json"))
    again = download(client, tmp_path / "m", src="s3://rat", manifest=str(tmp_path / "m" / "state.json"), delete=True)
    assert first["copied"] == 1 and (again["copied"], again["deleted"], again["changed"]) == (0, 0, False)
    assert (tmp_path / "m" / "state.json").exists()


def test_download_when_bucket_unknown_names_it_and_endpoint(client, tmp_path):
    bucket(client, "rat", {"a": b"1"})
    with pytest.raises(RatBackupError) as caught:
        download(client, tmp_path / "m", buckets=["ghost"])
    assert "ghost" in caught.value.msg and "AWS S3" in caught.value.msg
    with pytest.raises(RatBackupError) as caught:
        download(client, tmp_path / "m", src="s3://ghost")
    assert "'ghost'" in caught.value.msg and "does not exist" in caught.value.msg
    assert not (tmp_path / "m").exists()


def test_download_when_every_bucket_passes_over_drill_scratch_buckets(client, tmp_path):
    scratch = "rat-drill-20260216-100000-3f2a1c-0-rat"
    bucket(client, "rat", {"a": b"1"})
    bucket(client, scratch, {"a": b"1"})
    bucket(client, "rat-drill-notes", {"n": b"2"})
    download(client, tmp_path / "m")
    assert tree(tmp_path / "m") == {"rat/a": b"1", "rat-drill-notes/n": b"2"}
    assert sorted(read_manifest(str(tmp_path / "m") + ".json", "manifest")[0]["buckets"]) == ["rat", "rat-drill-notes"]


def test_download_when_transfer_fails_midway_rerun_fetches_only_the_rest(client, tmp_path, monkeypatch):
    bucket(client, "rat", {"k{0:02d}".format(i): b"x" * i for i in range(20)})
    real = mirror_download.Download.fetch_once

    def flaky(self, entry, tmp, final):
        if entry.key == "k13":
            raise RatBackupError("reading on test bucket 'rat' key 'k13' failed: endpoint unreachable")
        return real(self, entry, tmp, final)

    monkeypatch.setattr(mirror_download.Download, "fetch_once", flaky)
    with pytest.raises(RatBackupError) as caught:
        download(client, tmp_path / "m", concurrency=1)
    assert "k13" in caught.value.msg and "rerun finishes the rest" in caught.value.msg
    assert not (tmp_path / "m.json").exists()
    assert not (tmp_path / "m" / "rat" / "k13").exists()
    # No partial file left (each process has its own directory under .rat-tmp).
    assert [name for dummy, dummy_dirs, names in os.walk(tmp_path / "m" / ".rat-tmp") for name in names] == []
    done = caught.value.details["completed"]
    monkeypatch.setattr(mirror_download.Download, "fetch_once", real)
    result = download(client, tmp_path / "m")
    assert result["copied"] == 20 - done and result["unchanged"] == done
    assert len(manifest_objects(tmp_path / "m.json")) == 20
    assert not (tmp_path / "m.json.journal").exists()


def test_journal_when_lines_pending_writes_them_by_interval_and_on_close(tmp_path, monkeypatch):
    path = str(tmp_path / "m.json.journal")
    entries = [Entry("rat", "k{0}".format(i), i, '"e"', relpath="rat/k{0}".format(i)) for i in range(3)]
    journal = Journal(path)
    monkeypatch.setattr(Journal, "FLUSH_EVERY", 3600.0)
    journal.add(manifest_line(entries[0], "m"))
    journal.add(manifest_line(entries[1], "m"))
    assert os.path.getsize(path) == 0
    monkeypatch.setattr(Journal, "FLUSH_EVERY", 0.0)
    journal.add(manifest_line(entries[2], "m"))
    assert [e.key for e in Journal.read(path)] == ["k0", "k1", "k2"]
    monkeypatch.setattr(Journal, "FLUSH_EVERY", 3600.0)
    journal.add(manifest_line(Entry("rat", "k3", 3, '"e"', relpath="rat/k3"), "m"))
    journal.close()
    assert [e.key for e in Journal.read(path)] == ["k0", "k1", "k2", "k3"]
    assert oct(os.stat(path).st_mode & 0o777) == "0o600"


def test_journal_read_when_killed_mid_line_then_finished_entries_kept(tmp_path):
    path = str(tmp_path / "m.json.journal")
    journal = Journal(path)
    journal.add(manifest_line(Entry("rat", "k0", 0, '"e"', relpath="rat/k0"), "m"))
    journal.close()
    with open(path, "a", encoding="utf-8") as handle:
        handle.write('{"bucket": "rat", "key": "k1", "path": "m/rat/k1"}\n{"bucket": "rat", "ke')
    # k1's line parses but is no entry (no size): fetched again, as the torn one is.
    assert [e.key for e in Journal.read(path)] == ["k0"]


def test_download_when_dest_dir_is_symlink_out_refuses(client, tmp_path):
    bucket(client, "rat", {"d/f": b"1"})
    outside = tmp_path / "outside"
    outside.mkdir()
    (tmp_path / "m" / "rat").mkdir(parents=True)
    os.symlink(outside, tmp_path / "m" / "rat" / "d")
    with pytest.raises(RatBackupError) as caught:
        download(client, tmp_path / "m")
    assert "outside" in caught.value.msg
    assert os.listdir(outside) == []


def test_upload_when_manifest_restores_exact_keys_and_attributes(client, tmp_path):
    bucket(client, "rat", {k: k.encode() for k in TRICKY}, ContentType="text/csv", Metadata={"m": "v"},
           ContentDisposition="inline", ContentEncoding="identity")
    download(client, tmp_path / "minio")
    client.create_bucket(Bucket="restored")
    result = upload(client, tmp_path / "minio", "s3://restored", manifest=str(tmp_path / "minio.json"))
    assert result["copied"] == len(TRICKY)
    for key in TRICKY:
        got = client.get_object(Bucket="restored", Key=key)
        assert got["Body"].read() == key.encode()
        assert (got["ContentType"], got["Metadata"], got["ContentDisposition"], got["ContentEncoding"]) == (
            "text/csv", {"m": "v"}, "inline", "identity")
    again = upload(client, tmp_path / "minio", "s3://restored", manifest=str(tmp_path / "minio.json"))
    assert (again["copied"], again["unchanged"], again["changed"]) == (0, len(TRICKY), False)


def test_upload_when_same_bytes_rewritten_with_other_attributes_then_put_back_and_rerun_keeps(client, tmp_path):
    bucket(client, "rat", {"a": b"1", "b": b"2"}, ContentType="text/csv", Metadata={"m": "v"})
    download(client, tmp_path / "minio")
    time.sleep(1.1)
    # Same bytes, same ETag: only the attributes say this is not the backup's object.
    client.put_object(Bucket="rat", Key="a", Body=b"1", ContentType="application/x-other", Metadata={"m": "w"})
    manifest = str(tmp_path / "minio.json")
    result = upload(client, tmp_path / "minio", "s3://", manifest=manifest)
    assert (result["copied"], result["unchanged"]) == (1, 1)
    got = client.head_object(Bucket="rat", Key="a")
    assert (got["ContentType"], got["Metadata"]) == ("text/csv", {"m": "v"})
    time.sleep(1.1)
    again = upload(client, tmp_path / "minio", "s3://", manifest=manifest)
    assert (again["copied"], again["unchanged"], again["changed"]) == (0, 2, False)


def test_upload_when_delete_makes_bucket_exact_and_check_mode_touches_nothing(client, tmp_path):
    bucket(client, "rat", {"a": b"1", "b": b"2"})
    download(client, tmp_path / "minio")
    client.put_object(Bucket="rat", Key="extra", Body=b"new")
    client.put_object(Bucket="rat", Key="a", Body=b"9")
    backup_manifest = tmp_path / "manifest.json"
    backup_manifest.write_text(json.dumps({"format": 1, "minio": json.loads(
        (tmp_path / "minio.json").read_text())}))
    planned = upload(client, tmp_path / "minio", "s3://", manifest=str(backup_manifest), delete=True,
                     check_mode=True)
    assert planned["plan"]["to_copy"]["first"] == ["rat/a"] and planned["plan"]["to_delete"]["first"] == ["rat/extra"]
    assert client.get_object(Bucket="rat", Key="extra")["Body"].read() == b"new"
    result = upload(client, tmp_path / "minio", "s3://", manifest=str(backup_manifest), delete=True)
    assert (result["copied"], result["deleted"]) == (1, 1)
    listed = {o["Key"] for o in client.list_objects_v2(Bucket="rat")["Contents"]}
    assert listed == {"a", "b"} and client.get_object(Bucket="rat", Key="a")["Body"].read() == b"1"


def test_upload_when_file_differs_from_manifest_uploads_nothing(client, tmp_path):
    bucket(client, "rat", {"a": b"1111", "b": b"2222"})
    download(client, tmp_path / "minio")
    client.create_bucket(Bucket="restored")
    (tmp_path / "minio" / "rat" / "b").write_bytes(b"XXXX")
    with pytest.raises(RatBackupError) as caught:
        upload(client, tmp_path / "minio", "s3://restored", manifest=str(tmp_path / "minio.json"))
    assert "does not match its manifest" in caught.value.msg and "rat/b" in caught.value.msg
    assert "Contents" not in client.list_objects_v2(Bucket="restored")


@pytest.mark.parametrize("size", [3000, 2 * (5 << 20) + 1000], ids=["one-put", "multipart"])
def test_upload_when_file_rewritten_same_size_after_plan_then_refused_and_no_object(client, tmp_path, monkeypatch, size):
    monkeypatch.setattr(s3, "PART_SIZE", 5 << 20)
    bucket(client, "rat", {"k": os.urandom(size)})
    download(client, tmp_path / "minio")
    client.delete_object(Bucket="rat", Key="k")
    path = tmp_path / "minio" / "rat" / "k"
    real = mirror_upload.Upload.put

    def rewritten_after_plan(self, entry):
        path.write_bytes(os.urandom(size))
        return real(self, entry)

    monkeypatch.setattr(mirror_upload.Upload, "put", rewritten_after_plan)
    with pytest.raises(RatBackupError, match=r"^s3://rat/k \(.*\) changed since it was verified: the bytes read have"):
        upload(client, tmp_path / "minio", "s3://", manifest=str(tmp_path / "minio.json"))
    assert "Contents" not in client.list_objects_v2(Bucket="rat")
    assert client.list_multipart_uploads(Bucket="rat").get("Uploads", []) == []


def test_upload_when_manifest_path_escapes_refuses(client, tmp_path):
    (tmp_path / "minio").mkdir()
    (tmp_path / "m.json").write_text(json.dumps({"objects": [
        {"bucket": "rat", "key": "k", "path": "minio/../../etc/passwd", "size": 1}]}))
    with pytest.raises(RatBackupError) as caught:
        upload(client, tmp_path / "minio", "s3://", manifest=str(tmp_path / "m.json"))
    assert "unsafe path" in caught.value.msg


def test_upload_when_walking_skips_symlinks_and_special_files(client, tmp_path):
    root = tmp_path / "src"
    (root / "rat" / "d").mkdir(parents=True)
    (root / "rat" / "d" / "f.csv").write_bytes(b"data")
    os.symlink("/etc/passwd", root / "rat" / "link")
    os.symlink("/etc", root / "rat" / "dirlink")
    os.mkfifo(root / "rat" / "fifo")
    client.create_bucket(Bucket="rat")
    result = upload(client, root, "s3://")
    assert result["copied"] == 1
    assert sorted(s["reason"] for s in result["skipped_files"]) == ["special", "symlink", "symlink"]
    got = client.get_object(Bucket="rat", Key="d/f.csv")
    assert got["Body"].read() == b"data" and got["ContentType"] == "text/csv"
    assert upload(client, root, "s3://")["copied"] == 0


def test_upload_when_local_file_unreadable_fails_naming_it_before_uploading(client, tmp_path, monkeypatch):
    root = tmp_path / "src"
    (root / "rat").mkdir(parents=True)
    (root / "rat" / "ok").write_bytes(b"1")
    (root / "rat" / "locked").write_bytes(b"2")
    client.create_bucket(Bucket="rat")
    client.put_object(Bucket="rat", Key="locked", Body=b"3")
    real_open = os.open

    def deny(path, flags, *args, **kwargs):
        if str(path).endswith("locked"):
            raise PermissionError(13, "Permission denied", str(path))
        return real_open(path, flags, *args, **kwargs)

    monkeypatch.setattr(os, "open", deny)
    with pytest.raises(RatBackupError) as caught:
        upload(client, root, "s3://")
    assert "locked" in caught.value.msg and "Permission denied" in caught.value.msg
    assert [o["Key"] for o in client.list_objects_v2(Bucket="rat")["Contents"]] == ["locked"]


def test_upload_when_local_file_read_fails_midway_names_the_file_and_uploads_nothing(client, tmp_path, monkeypatch):
    root = tmp_path / "src"
    (root / "rat").mkdir(parents=True)
    (root / "rat" / "bad").write_bytes(b"x" * 100)
    client.create_bucket(Bucket="rat")
    real_fdopen = os.fdopen

    class FailingRead:
        def __init__(self, handle):
            self.handle = handle

        def read(self, size=-1):
            raise OSError(errno.EIO, "Input/output error")

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.handle.close()

    monkeypatch.setattr(os, "fdopen", lambda fd, *args, **kwargs: FailingRead(real_fdopen(fd, *args, **kwargs)))
    with pytest.raises(RatBackupError) as caught:
        upload(client, root, "s3://")
    assert caught.value.msg.startswith("cannot read local file ") and str(root / "rat" / "bad") in caught.value.msg
    assert "Input/output error" in caught.value.msg
    assert "Contents" not in client.list_objects_v2(Bucket="rat")


def test_upload_when_sending_fails_with_an_os_error_is_not_named_a_read_error(client, tmp_path, monkeypatch):
    root = tmp_path / "src"
    (root / "rat").mkdir(parents=True)
    (root / "rat" / "ok").write_bytes(b"fine bytes")
    client.create_bucket(Bucket="rat")

    def reset(*args, **kwargs):
        raise ConnectionResetError(errno.ECONNRESET, "Connection reset by peer")

    monkeypatch.setattr(sides_module.Sides, "put_checked", reset)
    with pytest.raises(RatBackupError) as caught:
        upload(client, root, "s3://")
    assert "Connection reset by peer" in caught.value.msg and "cannot read local file" not in caught.value.msg


def test_upload_when_bucket_missing_fails_or_creates_versioned(client, tmp_path):
    bucket(client, "rat", {"a": b"1"}, versioned=True)
    download(client, tmp_path / "minio", use_versions=True)
    for version in client.list_object_versions(Bucket="rat")["Versions"]:
        client.delete_object(Bucket="rat", Key=version["Key"], VersionId=version["VersionId"])
    client.delete_bucket(Bucket="rat")
    with pytest.raises(RatBackupError) as caught:
        upload(client, tmp_path / "minio", "s3://", manifest=str(tmp_path / "minio.json"))
    assert "'rat' does not exist" in caught.value.msg and "create_buckets" in caught.value.msg
    upload(client, tmp_path / "minio", "s3://", manifest=str(tmp_path / "minio.json"), create_buckets=True)
    assert client.get_bucket_versioning(Bucket="rat")["Status"] == "Enabled"


def test_upload_when_bucket_map_restores_into_other_buckets_and_leaves_originals(client, tmp_path):
    bucket(client, "rat", {"a": b"1", "k/../x": b"2"}, ContentType="text/csv")
    bucket(client, "logs", {"l": b"3"}, versioned=True)
    download(client, tmp_path / "minio", use_versions=True)
    client.put_object(Bucket="rat", Key="a", Body=b"live")
    client.create_bucket(Bucket="scratch-rat")
    client.put_object(Bucket="scratch-rat", Key="stale", Body=b"old")
    opts = {"manifest": str(tmp_path / "minio.json"), "create_buckets": True, "delete": True,
            "bucket_map": {"rat": "scratch-rat", "logs": "scratch-logs"}}
    result = upload(client, tmp_path / "minio", "s3://", **opts)
    assert (result["copied"], result["deleted"]) == (3, 1)
    assert client.get_object(Bucket="scratch-rat", Key="k/../x")["Body"].read() == b"2"
    assert client.get_object(Bucket="scratch-rat", Key="a")["ContentType"] == "text/csv"
    assert client.get_object(Bucket="scratch-logs", Key="l")["Body"].read() == b"3"
    assert client.get_bucket_versioning(Bucket="scratch-logs")["Status"] == "Enabled"
    assert client.get_object(Bucket="rat", Key="a")["Body"].read() == b"live"
    only = upload(client, tmp_path / "minio", "s3://", buckets=["logs"], **opts)
    assert (only["copied"], only["unchanged"]) == (0, 1)


def test_upload_when_prefix_dest_then_exact_under_prefix_and_nothing_else_listed_or_touched(client, tmp_path):
    bucket(client, "rat", {"ns/a": b"1", "ns/b": b"2", "ns/sub/c": b"3", "nsx/d": b"4", "other/e": b"5"},
           ContentType="text/csv")
    bucket(client, "logs", {"ns/l": b"6"})
    download(client, tmp_path / "minio")
    client.delete_object(Bucket="rat", Key="ns/a")
    client.put_object(Bucket="rat", Key="ns/b", Body=b"changed")
    client.put_object(Bucket="rat", Key="ns/new", Body=b"later")
    client.put_object(Bucket="rat", Key="nsx/d", Body=b"outside, changed")
    client.put_object(Bucket="rat", Key="other/new", Body=b"outside, new")
    listed = []
    real = mirror_upload.listing.dest_listing

    def spy(cl, endpoint, name, prefix):
        listed.append((name, prefix))
        return real(cl, endpoint, name, prefix)
    mirror_upload.listing.dest_listing = spy
    try:
        result = upload(client, tmp_path / "minio", "s3://rat/ns", manifest=str(tmp_path / "minio.json"), delete=True)
    finally:
        mirror_upload.listing.dest_listing = real
    assert listed == [("rat", "ns/")]
    assert (result["copied"], result["deleted"], result["unchanged"]) == (2, 1, 1)
    keys = {o["Key"]: client.get_object(Bucket="rat", Key=o["Key"])["Body"].read()
            for o in client.list_objects_v2(Bucket="rat")["Contents"]}
    assert keys == {"ns/a": b"1", "ns/b": b"2", "ns/sub/c": b"3", "nsx/d": b"outside, changed", "other/e": b"5",
                    "other/new": b"outside, new"}
    assert client.get_object(Bucket="rat", Key="ns/a")["ContentType"] == "text/csv"


def test_upload_when_one_bucket_of_manifest_named_then_restored_into_dest_bucket(client, tmp_path):
    bucket(client, "rat", {"ns/a": b"1", "other/e": b"5"})
    bucket(client, "logs", {"ns/l": b"6"})
    download(client, tmp_path / "minio")
    client.create_bucket(Bucket="scratch")
    client.put_object(Bucket="scratch", Key=".marker", Body=b"m")
    result = upload(client, tmp_path / "minio", "s3://scratch/ns/", manifest=str(tmp_path / "minio.json"),
                    buckets=["rat"], delete=True)
    assert (result["copied"], result["deleted"]) == (1, 0)
    assert sorted(o["Key"] for o in client.list_objects_v2(Bucket="scratch")["Contents"]) == [".marker", "ns/a"]
    with pytest.raises(RatBackupError, match="buckets only applies"):
        upload(client, tmp_path / "minio", "s3://scratch/ns/", manifest=str(tmp_path / "minio.json"),
               buckets=["rat", "logs"])


def test_s3_copy_when_rerun_skips_and_delete_removes(client):
    bucket(client, "src", {"a": b"1", "b/c": b"2"}, ContentType="text/plain", Metadata={"k": "v"})
    bucket(client, "dst", {"old": b"x"})
    opts = options(src="s3://src", dest="s3://dst", delete=True)
    result = mr.Mirror(opts, client, client).run()
    assert (result["copied"], result["deleted"]) == (2, 1)
    assert client.head_object(Bucket="dst", Key="b/c")["Metadata"] == {"k": "v"}
    again = mr.Mirror(opts, client, client).run()
    assert (again["copied"], again["changed"]) == (0, False)


def across_endpoints(monkeypatch):
    """S3 -> S3 through the spool file (moto is one service: pretend the sides are two)."""
    monkeypatch.setattr(s3.Endpoint, "same_service", lambda self, other: False)


def rewrite_spool_after_check(monkeypatch, offset):
    """The spool file gets other bytes (same size) after it was hashed, before it is uploaded."""
    real = mirror_s3_copy.S3Copy._spool

    def spool_then_rewrite(self, entry, spool):
        result = real(self, entry, spool)
        spool.seek(offset)
        byte = spool.read(1)
        spool.seek(offset)
        spool.write(bytes([byte[0] ^ 1]))
        return result

    monkeypatch.setattr(mirror_s3_copy.S3Copy, "_spool", spool_then_rewrite)


def test_s3_copy_when_across_endpoints_then_spooled_bytes_attributes_and_checksum_sent(client, monkeypatch):
    across_endpoints(monkeypatch)
    body = os.urandom(3000)
    bucket(client, "src", {"k": body}, ContentType="text/csv", Metadata={"k": "v"})
    bucket(client, "dst", {})
    sent = []
    client.meta.events.register("before-send.s3.PutObject", lambda request, **_kw: sent.append(request.headers))
    result = mr.Mirror(options(src="s3://src", dest="s3://dst"), client, client).run()
    assert (result["copied"], result["bytes"]) == (1, 3000)
    stored = client.get_object(Bucket="dst", Key="k")
    assert (stored["Body"].read(), stored["ContentType"], stored["Metadata"]) == (body, "text/csv", {"k": "v"})
    checksums = [h["x-amz-checksum-sha256"] for h in sent if "x-amz-checksum-sha256" in h]
    assert checksums == [base64.b64encode(hashlib.sha256(body).digest())]


@pytest.mark.parametrize("size", [3000, 2 * (5 << 20) + 1000], ids=["one-put", "multipart"])
def test_s3_copy_when_spool_changes_after_check_then_refused_and_no_object(client, monkeypatch, size):
    across_endpoints(monkeypatch)
    monkeypatch.setattr(s3, "PART_SIZE", 5 << 20)
    bucket(client, "src", {"k": os.urandom(size)})
    bucket(client, "dst", {"old": b"x"})
    rewrite_spool_after_check(monkeypatch, size - 1)
    with pytest.raises(RatBackupError, match=r"^s3://dst/k \(spooled from s3://src/k\) changed since it was verified"):
        mr.Mirror(options(src="s3://src", dest="s3://dst"), client, client).run()
    assert [o["Key"] for o in client.list_objects_v2(Bucket="dst")["Contents"]] == ["old"]
    assert client.list_multipart_uploads(Bucket="dst").get("Uploads", []) == []


def test_s3_copy_when_source_bytes_differ_from_its_etag_then_refused_and_no_object(client, monkeypatch):
    across_endpoints(monkeypatch)
    bucket(client, "src", {"k": b"abc" * 100})
    bucket(client, "dst", {})
    real = s3.get_object

    def damaged(*args, **kwargs):
        response = real(*args, **kwargs)
        response["Body"] = botocore.response.StreamingBody(io.BytesIO(b"abd" * 100), 300)
        return response

    monkeypatch.setattr(s3, "get_object", damaged)
    with pytest.raises(RatBackupError, match=r"^s3://src/k: the bytes read have MD5 .* damaged on the way"):
        mr.Mirror(options(src="s3://src", dest="s3://dst"), client, client).run()
    assert "Contents" not in client.list_objects_v2(Bucket="dst")


@pytest.mark.parametrize("overrides, message", [
    ({"src": "/tmp", "dest": "/var"}, "one side must be an s3://"),
    ({"src": "s3://rat", "dest": "/x", "buckets": ["a"]}, "buckets only applies"),
    ({"src": "s3://", "dest": "/x", "versions_as_of": "yesterday"}, "versions_as_of 'yesterday'"),
    ({"src": "s3:///pre", "dest": "/x"}, "a prefix needs a bucket"),
    ({"src": "/tmp", "dest": "s3://", "link_dest": "/tmp"}, "link_dest only applies"),
    ({"src": "s3://a", "dest": "s3://b", "manifest": "/tmp/m.json"}, "manifest needs a local"),
    ({"src": "/tmp", "dest": "s3://", "bucket_map": {"rat": "x"}}, "bucket_map only applies"),
    ({"src": "/tmp", "dest": "s3://b", "manifest": "/m", "bucket_map": {"rat": "x"}}, "bucket_map only applies"),
    ({"src": "/tmp", "dest": "s3://", "manifest": "/m", "bucket_map": {"rat": "a/b"}}, "bucket_map: 'a/b'"),
])
def test_mirror_when_options_contradict_fails_naming_the_option(overrides, message):
    with pytest.raises(RatBackupError) as caught:
        mr.Mirror(options(**overrides))
    assert message in caught.value.msg


def test_read_manifest_when_not_an_object_manifest_names_file(tmp_path):
    path = tmp_path / "m.json"
    path.write_text('{"format": 1}')
    with pytest.raises(RatBackupError) as caught:
        read_manifest(str(path), "manifest")
    assert str(path) in caught.value.msg and "objects" in caught.value.msg


def test_local_digest_when_larger_than_part_matches_multipart_etag(tmp_path, monkeypatch):
    monkeypatch.setattr(s3, "PART_SIZE", 4)
    path = tmp_path / "f"
    path.write_bytes(b"0123456789")
    digest = local_tree.local_digest(str(path))
    parts = [hashlib.md5(p).digest() for p in (b"0123", b"4567", b"89")]
    assert digest.matches_etag('"{0}-3"'.format(hashlib.md5(b"".join(parts)).hexdigest()))
    assert not digest.matches_etag('"{0}"'.format(hashlib.md5(b"0123456789").hexdigest()) + "-3")
    assert digest.sha256 == hashlib.sha256(b"0123456789").hexdigest()


class _FakePaginator:
    def __init__(self, pages):
        self.pages = pages

    def paginate(self, **_):
        return self.pages()


class _ListingOnlyClient:
    """Serves a 100,000-key listing page by page, as S3 does, without a server."""

    def __init__(self, count):
        self.count = count

    def get_bucket_versioning(self, Bucket):  # noqa: N803 (boto3's argument name)
        return {}

    def get_paginator(self, _name):
        modified = datetime.datetime(2026, 1, 1, tzinfo=datetime.timezone.utc)

        def pages():
            for start in range(0, self.count, 1000):
                yield {"Contents": [{"Key": "ns/pipelines/p{0:06d}/data/part-{0:06d}.parquet".format(i), "Size": i,
                                     "ETag": '"{0:032x}"'.format(i), "LastModified": modified}
                                    for i in range(start, min(start + 1000, self.count))]}
        return _FakePaginator(pages)


def test_plan_when_listing_100000_keys_stays_within_memory_bound(tmp_path):
    import tracemalloc
    tracemalloc.start()
    try:
        result = mr.Mirror(options(src="s3://rat", dest=str(tmp_path / "m"), manifest=str(tmp_path / "m.json")),
                           _ListingOnlyClient(100000), None, check_mode=True).run()
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert result["plan"]["to_copy"]["count"] == 100000
    # The module's RSS budget is 150 MB; boto3 and the interpreter take about 40 MB of it.
    assert peak < 100 * 1024 * 1024, peak


def _server_clock(monkeypatch, ahead=0.0):
    """moto's in-process mock sends no Date header: answer HeadBucket as a server whose clock runs ``ahead``."""
    monkeypatch.setattr(s3, "server_date", lambda client, endpoint, bucket, http=None: {"ResponseMetadata": {"HTTPHeaders": {
        "date": email.utils.formatdate(time.time() + ahead, usegmt=True)}}})


def _point_now():
    now = time.time()
    stamp = datetime.datetime.fromtimestamp(now, datetime.timezone.utc).isoformat()
    return {"time": stamp, "time_epoch": now, "earliest": stamp, "earliest_epoch": now, "obtained": "test",
            "host_offset": [0.0, 0.0]}


def test_download_when_consistency_point_given_pins_versioned_and_reports_best_effort(client, tmp_path, monkeypatch):
    _server_clock(monkeypatch)
    bucket(client, "lake", {"kept": b"v1", "expired": b"x"}, versioned=True)
    bucket(client, "plain", {"p": b"1"})
    time.sleep(1.1)
    point = _point_now()
    # moto lists versions in whole seconds (1 s of doubt each) and the measured skew widens under a
    # loaded machine: 1.1 s after the point left a later version inside the snapshot's window at times.
    time.sleep(2.5)
    client.put_object(Bucket="lake", Key="kept", Body=b"v2")
    client.delete_object(Bucket="lake", Key="expired")
    client.put_object(Bucket="lake", Key="new", Body=b"n")
    result = download(client, tmp_path / "m", consistency_point=point, max_clock_skew=2.0)
    assert tree(tmp_path / "m") == {"lake/kept": b"v1", "lake/expired": b"x", "plain/p": b"1"}
    record = result["consistency"]
    assert (record["level"], record["buckets"]) == ("best-effort", {"lake": "snapshot", "plain": "best-effort"})
    assert record["clock_skew"][0] <= 0 <= record["clock_skew"][1]
    assert read_manifest(str(tmp_path / "m.json"), "manifest")[0]["consistency"] == record


def test_download_when_fail_on_best_effort_and_unversioned_bucket_raises_before_writing(client, tmp_path, monkeypatch):
    _server_clock(monkeypatch)
    bucket(client, "plain", {"p": b"1"})
    with pytest.raises(RatBackupError, match="plain are not versioned"):
        download(client, tmp_path / "m", consistency_point=_point_now(), fail_on_best_effort=True)
    assert not (tmp_path / "m").exists()


def test_download_when_s3_clock_far_ahead_raises_before_listing(client, tmp_path, monkeypatch):
    _server_clock(monkeypatch, ahead=30)
    bucket(client, "lake", {"k": b"1"}, versioned=True)
    with pytest.raises(RatBackupError, match="more than the allowed 2.0 s"):
        download(client, tmp_path / "m", consistency_point=_point_now(), max_clock_skew=2.0)
    assert not (tmp_path / "m").exists()


def test_download_when_linked_from_link_dest_then_its_manifest_line_passed_on_as_written(client, tmp_path):
    """A linked object's line is link_dest's text, not encoded again (issue 24); a line under another
    root name is encoded for this one."""
    bucket(client, "rat", {"same": b"old", "also": b"same too"}, versioned=True)
    first = tmp_path / "b1"
    download(client, first / "minio", manifest=str(first / "minio.json"), use_versions=True)
    text = (first / "minio.json").read_text()
    # As an older collection wrote it: ", " and ": " inside each object line.
    lines = [line for line in text.splitlines() if line.startswith('{"bucket"')]
    spaced = [json.dumps(json.loads(line.rstrip(",")), sort_keys=True) for line in lines]
    for line, new in zip(lines, spaced):
        text = text.replace(line.rstrip(","), new)
    (first / "manifest.json").write_text(text)
    second = tmp_path / "b2"
    result = download(client, second / "minio", manifest=str(second / "minio.json"), use_versions=True,
                      link_dest=str(first / "minio"))
    assert (result["linked"], result["copied"]) == (2, 0)
    written = [line.rstrip(",") for line in (second / "minio.json").read_text().splitlines() if line.startswith('{"bucket"')]
    assert written == spaced
    third = tmp_path / "b3"
    result = download(client, third / "other", manifest=str(third / "other.json"), use_versions=True,
                      link_dest=str(first / "minio"))
    moved = [json.loads(line.rstrip(",")) for line in (third / "other.json").read_text().splitlines()
             if line.startswith('{"bucket"')]
    assert result["linked"] == 2 and sorted(o["path"] for o in moved) == ["other/rat/also", "other/rat/same"]


# --- manifest lines read into Entries (every unchanged object of a lake backup, issue 24) ----------

@pytest.mark.parametrize("text", ["2026-12-07T06:38:12.000Z", "2026-12-07T06:38:12.999Z", "1970-01-01T00:00:00.001Z",
                                  "2024-02-29T23:59:59.500Z", "2026-12-07T06:38:12Z", "2026-12-07T06:38:12.5+00:00",
                                  "2026-12-07T08:38:12.123+02:00", "2026-12-07 06:38:12.000Z"])
def test_ms_from_iso_when_any_iso_text_then_what_datetime_reads(text):
    expected = mirror_model.to_ms(datetime.datetime.fromisoformat(text.replace("Z", "+00:00")))
    assert mirror_model.ms_from_iso(text) == expected
    assert mirror_model.ms_from_iso(text) == expected  # the second from the cache


@pytest.mark.parametrize("text", ["2026-13-07T06:38:12.000Z", "2026-12-07T06:38:12.0a0Z", "2026-12-07T06:38:12.\u0661\u0662\u0663Z",
                                  "not a time at all, 24 c"])
def test_ms_from_iso_when_not_a_time_then_value_error(text):
    with pytest.raises(ValueError):
        mirror_model.ms_from_iso(text.encode().decode("unicode_escape"))


def test_entry_from_manifest_when_line_of_to_manifest_then_same_entry():
    entry = Entry("rat", "a/b.csv", 12, '"e"', "v1", 1765089492123, "rat/a/b.csv", "ab" * 32, "text/csv",
                  content_encoding="gzip", metadata={"k": "v"})
    again = Entry.from_manifest(json.loads(json.dumps(entry.to_manifest("minio"))), "m.json")
    assert [getattr(again, name) for name in Entry.__slots__] == [getattr(entry, name) for name in Entry.__slots__]
    assert again.cache_control is None and again.content_disposition is None


@pytest.mark.parametrize("path", ["minio", "minio/", "/minio/a", "minio/../a", "minio//a", None])
def test_entry_from_manifest_when_path_unsafe_or_without_directory_then_refused(path):
    item = {"bucket": "rat", "key": "a", "path": path, "size": 1}
    with pytest.raises(RatBackupError, match="unsafe path"):
        Entry.from_manifest(item, "m.json")
