# -*- coding: utf-8 -*-
# Copyright: rat.backup contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Plans as merges of sorted streams (issue 11): the merge itself, the streamed key mapping, the
ordered pool, and bucket_mirror planning over keys whose order is easy to get wrong."""

from __future__ import annotations

import json
import os
import random
import threading
import time

import pytest
from hypothesis import given, settings, strategies as st
from moto import mock_aws

from ansible_collections.rat.backup.plugins.module_utils._mirror import key_paths
from ansible_collections.rat.backup.plugins.module_utils import mirror as mr
from ansible_collections.rat.backup.plugins.module_utils import s3
from ansible_collections.rat.backup.plugins.module_utils._mirror import listing, local_tree, merge, pool
from ansible_collections.rat.backup.plugins.module_utils._mirror.model import Entry
from ansible_collections.rat.backup.plugins.module_utils._mirror.object_manifest import read_manifest

# Keys around "/" (0x2f): "-" and "." sort below it, "0" above; "a" is the directory of "a/b".
# U+FFFF sorts below U+1F600 in UTF-8 (and code points) but above it in UTF-16 (surrogate pairs).
AWKWARD = ["a", "a-b", "a.c", "a/b", "a/c/d", "a0", "a\uffff", "a\U0001f600", "b!", "b", "b/", "é", "\x7f"]
KEY_TEXT = st.text(alphabet=st.sampled_from(["a", "b", "/", "-", ".", "0", "\x01", "é", "\uffff", "\U0001f600"]),
                   min_size=1, max_size=6)


def test_str_order_when_keys_awkward_is_utf8_byte_order():
    assert sorted(AWKWARD) == sorted(AWKWARD, key=lambda k: k.encode("utf-8"))
    assert sorted(AWKWARD) != sorted(AWKWARD, key=lambda k: k.encode("utf-16-be"))


def test_join_when_keys_on_one_side_only_yields_every_key_once_in_order():
    left = [("a", 1), ("a-b", 2), ("a/b", 3), ("c", 4)]
    right = [("a", "x"), ("a.c", "y"), ("c", "z"), ("d", "w")]
    got = list(merge.join(left, right, lambda i: i[0], lambda i: i[0]))
    assert [(k, l and l[1], r and r[1]) for k, l, r in got] == [
        ("a", 1, "x"), ("a-b", 2, None), ("a.c", None, "y"), ("a/b", 3, None), ("c", 4, "z"), ("d", None, "w")]


@settings(max_examples=200, deadline=None)
@given(st.sets(KEY_TEXT), st.sets(KEY_TEXT))
def test_join_when_any_sorted_sets_matches_dict_lookup(left, right):
    got = list(merge.join(sorted(left), sorted(right), str, str))
    assert [k for k, dummy, dummy in got] == sorted(left | right)
    assert all((a is not None) == (k in left) and (b is not None) == (k in right) for k, a, b in got)


@pytest.mark.parametrize("items", [["b", "a"], ["a", "a"], ["a/b", "a-b"]])
def test_in_order_when_stream_unsorted_or_repeated_raises_out_of_order(items):
    with pytest.raises(merge.OutOfOrder) as caught:
        list(merge.in_order(items, str, "manifest"))
    assert caught.value.what == "manifest"


def test_sorted_unique_when_keys_repeat_keeps_the_last_like_a_dict():
    assert merge.sorted_unique([("b", 1), ("a", 2), ("b", 3)], lambda i: i[0]) == [("a", 2), ("b", 3)]


@settings(max_examples=300, deadline=None)
@given(st.sets(KEY_TEXT, max_size=12), st.sampled_from(["", "a/"]))
def test_sorted_relpaths_when_keys_sorted_maps_like_key_mapper(keyset, prefix):
    ordered = sorted(keyset)
    mapper = key_paths.KeyMapper("rat", "rat", prefix, ordered)
    got = list(key_paths.sorted_relpaths("rat", "rat", prefix, ordered, str))
    assert [k for k, dummy in got] == ordered
    assert [r for dummy, r in got] == [mapper.relpath(k) for k in ordered]


def test_sorted_relpaths_when_many_keys_sort_between_a_key_and_its_children_escapes_it():
    ordered = ["a"] + ["a.%04d" % i for i in range(1000)] + ["a/b"]
    got = dict(key_paths.sorted_relpaths("rat", "", "", ordered, str))
    assert got["a"] == key_paths.escaped_relpath("rat", "a") and got["a.0999"] == "a.0999" and got["a/b"] == "a/b"


def test_spool_when_entries_written_reads_them_back_in_order():
    spool = merge.Spool()
    entries = [Entry("rat", k, i, '"e%d"' % i, None, 1000 * i, "rat/" + k, "%064x" % i, "text/csv",
                     metadata={"m": k}) for i, k in enumerate(sorted(AWKWARD))]
    for entry in entries:
        spool.add("copy", entry, "src/" + entry.key)
    spool.add("keep", entries[0], None, '{"line": "as written\\t"}')
    rows = list(spool.rows())
    spool.close()
    assert [(a, e.key, s, r) for a, e, s, r in rows[:-1]] == [("copy", e.key, "src/" + e.key, e.relpath)
                                                              for e in entries]
    assert [e.to_manifest("m") for dummy, e, dummy, dummy in rows[:-1]] == [e.to_manifest("m") for e in entries]
    assert rows[-1] == ("keep", '{"line": "as written\\t"}', "", entries[0].relpath)


def test_pool_results_when_work_finishes_out_of_order_yields_in_order_with_ready_items_in_place():
    recorded = []

    def work(item):
        time.sleep(random.random() / 500)
        return item * 10

    items = list(range(300))
    got = list(pool.results(items, work, recorded.append, 8, ready=lambda i: i % 3 == 0))
    assert got == [i if i % 3 == 0 else i * 10 for i in items]
    assert sorted(recorded) == [i * 10 for i in items if i % 3]


# --- bucket_mirror planning over awkward keys -----------------------------------------------------

@pytest.fixture
def client(monkeypatch):
    monkeypatch.delenv("AWS_CA_BUNDLE", raising=False)
    with mock_aws():
        yield s3.make_client(s3.Endpoint(None, "key", "secret"), retry_max_attempts=1)


def run(client, src, dest, check_mode=False, **extra):
    params = {"src": src, "dest": dest, "buckets": [], "delete": False, "include": [], "exclude": [],
              "manifest": None, "link_dest": None, "link_dest_manifest": None, "versions_as_of": None,
              "use_versions": False, "concurrency": 4, "create_buckets": True, "retry_mode": "standard",
              "retry_max_attempts": 1}
    for side in ("src_", "dest_"):
        params.update({side + "endpoint": None, side + "access_key": "key", side + "secret_key": "secret",
                       side + "region": "us-east-1", side + "validate_certs": True, side + "ca_bundle": None})
    params.update(extra)
    return mr.Mirror(params, client, client, check_mode=check_mode).run()


def awkward_backup(client, minio, manifest):
    """A bucket "rat" holding AWKWARD (each key its own body), mirrored to ``minio`` with ``manifest``."""
    client.create_bucket(Bucket="rat")
    for key in AWKWARD:
        client.put_object(Bucket="rat", Key=key, Body=key.encode())
    run(client, "s3://", str(minio), manifest=str(manifest))


def test_download_when_link_dest_meets_awkward_keys_links_same_copies_changed_and_writes_key_order(client, tmp_path):
    first = tmp_path / "b1"
    awkward_backup(client, first / "minio", first / "manifest.json")
    client.put_object(Bucket="rat", Key="a-b", Body=b"new etag, other size")
    client.put_object(Bucket="rat", Key="a/c/d", Body=b"A/C/D")  # same size, other ETag
    client.delete_object(Bucket="rat", Key="a.c")
    client.put_object(Bucket="rat", Key="a/a", Body=b"only in the listing")
    second = tmp_path / "b2"
    args = {"manifest": str(second / "minio.json"), "link_dest": str(first / "minio")}
    planned = run(client, "s3://", str(second / "minio"), check_mode=True, **args)
    assert planned["plan"]["to_copy"]["first"] == ["rat/a-b", "rat/a/a", "rat/a/c/d"]
    assert planned["plan"]["to_link"]["count"] == len(AWKWARD) - 3
    result = run(client, "s3://", str(second / "minio"), **args)
    assert (result["copied"], result["linked"]) == (3, len(AWKWARD) - 3)
    header, entries = read_manifest(str(second / "minio.json"), "manifest")
    listed = [o["Key"] for o in client.list_objects_v2(Bucket="rat")["Contents"]]
    assert [e.key for e in entries] == listed == sorted(set(AWKWARD) - {"a.c"} | {"a/a"})
    for entry in entries:
        body = client.get_object(Bucket="rat", Key=entry.key)["Body"].read()
        assert (second / "minio" / entry.relpath).read_bytes() == body


def test_download_when_link_dest_manifest_unsorted_plans_the_same_sorted_in_memory(client, tmp_path):
    first = tmp_path / "b1"
    awkward_backup(client, first / "minio", first / "minio.json")
    header, entries = read_manifest(str(first / "minio.json"), "manifest")
    # Hand-written: objects in reverse order, not one per line.
    header["objects"] = [e.to_manifest("minio") for e in reversed(entries)]
    (first / "manifest.json").write_text(json.dumps({"minio": header}, indent=2))
    result = run(client, "s3://", str(tmp_path / "b2" / "minio"), manifest=str(tmp_path / "b2" / "minio.json"),
                 link_dest=str(first / "minio"))
    assert (result["copied"], result["linked"]) == (0, len(AWKWARD))


def test_download_when_listing_unsorted_plans_again_sorted_and_leaves_no_reading_thread(client, tmp_path, monkeypatch):
    # The listing is read ahead by a thread of its own: a plan stopped by OutOfOrder must stop it
    # before the listing is read again (on the same connection).
    first = tmp_path / "b1"
    awkward_backup(client, first / "minio", first / "minio.json")
    listed = listing.Lister.entries
    readers = []

    def reversed_entries(self, bucket, versioned):
        readers.append(threading.current_thread().name)
        yield from reversed(list(listed(self, bucket, versioned)))

    monkeypatch.setattr(listing.Lister, "entries", reversed_entries)
    result = run(client, "s3://", str(tmp_path / "b2" / "minio"), manifest=str(tmp_path / "b2" / "minio.json"),
                 link_dest=str(first / "minio"), link_dest_manifest=str(first / "minio.json"))
    assert (result["copied"], result["linked"]) == (0, len(AWKWARD))
    assert readers == ["read-ahead", "read-ahead"]
    assert not any(t.name == "read-ahead" for t in threading.enumerate())
    header, entries = read_manifest(str(tmp_path / "b2" / "minio.json"), "manifest")
    assert [e.key for e in entries] == sorted(AWKWARD)


def test_download_when_listing_gives_a_directory_key_late_plans_again_with_no_link_left_at_its_first_path(
        client, tmp_path, monkeypatch):
    # "a" is listed before "a0" and its children "a/..." only at the end: the first pass takes "a" for
    # a plain file and links it at rat/a before the disorder shows; read again in order, "a" is escaped
    # and rat/a must be a directory.
    first = tmp_path / "b1"
    awkward_backup(client, first / "minio", first / "manifest.json")
    listed = listing.Lister.entries

    def children_last(self, bucket, versioned):
        entries = list(listed(self, bucket, versioned))
        yield from sorted(entries, key=lambda e: e.key.startswith("a/"))

    monkeypatch.setattr(listing.Lister, "entries", children_last)
    second = tmp_path / "b2"
    result = run(client, "s3://", str(second / "minio"), manifest=str(second / "minio.json"),
                 link_dest=str(first / "minio"))
    assert (result["copied"], result["linked"]) == (0, len(AWKWARD))
    header, entries = read_manifest(str(second / "minio.json"), "manifest")
    assert [e.key for e in entries] == sorted(AWKWARD)
    files = sorted(str(p.relative_to(second / "minio")) for p in (second / "minio").rglob("*") if p.is_file())
    assert files == sorted(e.relpath for e in entries)
    for entry in entries:
        assert os.stat(second / "minio" / entry.relpath).st_ino == os.stat(first / "minio" / entry.relpath).st_ino
    objects = [line for line in (second / "minio.json").read_text().splitlines() if line.startswith('{"bucket"')]
    assert objects == [line for line in (first / "manifest.json").read_text().splitlines() if line.startswith('{"bucket"')]


def test_upload_when_manifest_unsorted_and_bucket_has_awkward_keys_keeps_equal_and_deletes_extras(client, tmp_path):
    awkward_backup(client, tmp_path / "minio", tmp_path / "minio.json")
    header, entries = read_manifest(str(tmp_path / "minio.json"), "manifest")
    header["objects"] = [e.to_manifest("minio") for e in reversed(entries) if e.key != "a/b"]
    (tmp_path / "unsorted.json").write_text(json.dumps(header))
    client.put_object(Bucket="rat", Key="a-b", Body=b"changed")
    client.put_object(Bucket="rat", Key="a/z", Body=b"extra")
    result = run(client, str(tmp_path / "minio"), "s3://", manifest=str(tmp_path / "unsorted.json"), delete=True)
    assert result["plan"]["to_delete"]["first"] == ["rat/a/b", "rat/a/z"]
    assert (result["copied"], result["unchanged"]) == (1, len(AWKWARD) - 2)
    listed = {o["Key"] for o in client.list_objects_v2(Bucket="rat")["Contents"]}
    assert listed == set(AWKWARD) - {"a/b"}
    assert client.get_object(Bucket="rat", Key="a-b")["Body"].read() == b"a-b"


def test_local_tree_walk_when_names_sort_around_slash_yields_key_order(tmp_path):
    for relpath in ["a-b", "a/b", "a/c/d", "a.c", "a0", "b", "é/x", "a/b-c", "a/b.d/e"]:
        (tmp_path / relpath).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / relpath).write_text(relpath)
    (tmp_path / "a" / "link").symlink_to(tmp_path / "a" / "c")
    walked = [r for r, dummy, dummy in local_tree.LocalTree(str(tmp_path)).walk()]
    assert walked == sorted(walked) == ["a-b", "a.c", "a/b", "a/b-c", "a/b.d/e", "a/c/d", "a/link", "a0", "b", "é/x"]


def test_upload_when_no_manifest_and_awkward_keys_merges_tree_with_listing(client, tmp_path):
    client.create_bucket(Bucket="rat")
    for key in ["a-b", "a/b", "a/zz", "a0"]:
        client.put_object(Bucket="rat", Key=key, Body=key.encode())
    for relpath in ["a-b", "a/b", "a.c", "a/c/d"]:
        (tmp_path / "rat" / relpath).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / "rat" / relpath).write_text(relpath if relpath != "a/b" else "A/B")
    result = run(client, str(tmp_path), "s3://", delete=True)
    assert result["plan"]["to_copy"]["first"] == ["rat/a.c", "rat/a/b", "rat/a/c/d"]
    assert result["plan"]["to_delete"]["first"] == ["rat/a/zz", "rat/a0"] and result["unchanged"] == 1
    assert {o["Key"]: client.get_object(Bucket="rat", Key=o["Key"])["Body"].read()
            for o in client.list_objects_v2(Bucket="rat")["Contents"]} == {
        "a-b": b"a-b", "a.c": b"a.c", "a/b": b"A/B", "a/c/d": b"a/c/d"}
