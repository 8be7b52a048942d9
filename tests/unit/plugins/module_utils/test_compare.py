# -*- coding: utf-8 -*-
# Copyright: rat.backup contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

import hashlib

import botocore.exceptions
import pytest
from moto import mock_aws

from ansible_collections.rat.backup.plugins.module_utils import compare
from ansible_collections.rat.backup.plugins.module_utils._postgres import client as pg_client
from ansible_collections.rat.backup.plugins.module_utils import s3
from ansible_collections.rat.backup.plugins.module_utils.errors import RatBackupError


def test_row_count_sql_when_names_have_quotes_then_literals_escaped():
    sql = pg_client.row_count_sql(["public.runs", "o'hara.t"])
    assert "ARRAY['o''hara.t','public.runs']::text[]" in sql
    assert sql.endswith("\\gexec")


def test_compare_rows_when_equal_then_ok_and_extra_tables_listed():
    result = compare.compare_rows({"public.a": 2, "public.b": 0}, {"public.a": 2, "public.b": 0},
                                  ["public.a", "public.b", "public.new"])
    assert result["ok"] and result["rows"] == 2 and result["tables"] == 2
    assert result["extra_tables"] == ["public.new"]


def test_compare_rows_when_count_differs_or_table_missing_then_not_ok():
    result = compare.compare_rows({"public.a": 2, "public.b": 1}, {"public.a": 3}, ["public.a"])
    assert not result["ok"]
    assert result["mismatched"] == [{"table": "public.a", "expected": 2, "actual": 3}]
    assert result["missing_tables"] == ["public.b"]


def test_compare_objects_when_missing_extra_and_resized_then_each_listed():
    manifest = [{"bucket": "rat", "key": "a", "size": 1}, {"bucket": "rat", "key": "b", "size": 2},
                {"bucket": "rat", "key": "c", "size": 3}]
    listing = [("rat", "a", 1, None), ("rat", "b", 5, None), ("rat", "z", 9, None)]
    result = compare.compare_objects(manifest, listing, {"rat"})
    assert not result["ok"]
    assert result["missing"] == ["s3://rat/c"]
    assert result["extra"] == ["s3://rat/z"]
    assert result["size_differs"] == [{"object": "s3://rat/b", "expected": 2, "actual": 5}]


def test_compare_objects_when_identical_then_ok():
    manifest = [{"bucket": "rat", "key": "../odd key", "size": 0}]
    assert compare.compare_objects(manifest, [("rat", "../odd key", 0, None)], {"rat"})["ok"]


MD5_A, MD5_B = "0" * 32, "f" * 32


def test_compare_objects_when_single_part_etag_differs_then_listed_and_not_ok():
    manifest = [{"bucket": "rat", "key": "a", "size": 3, "etag": '"%s"' % MD5_A},
                {"bucket": "rat", "key": "b", "size": 3, "etag": '"%s"' % MD5_A}]
    result = compare.compare_objects(manifest, [("rat", "a", 3, '"%s"' % MD5_A), ("rat", "b", 3, '"%s"' % MD5_B)],
                                     {"rat"})
    assert not result["ok"]
    assert result["etag_checked"] == 2
    assert result["etag_differs"] == [{"object": "s3://rat/b", "expected": MD5_A, "actual": MD5_B}]


@pytest.mark.parametrize("manifest_etag,size,live_etag", [
    ('"%s-3"' % MD5_A, 100, '"%s"' % MD5_B),          # written in parts at the origin
    ('"%s"' % MD5_A, (16 << 20) + 1, '"%s-2"' % MD5_B),  # restored in parts
    ('"%s"' % MD5_A, 100, '"not-an-md5"'),             # a server's own ETag (encryption)
    (None, 100, '"%s"' % MD5_B),
])
def test_compare_objects_when_etag_cannot_be_predicted_then_not_compared(manifest_etag, size, live_etag):
    manifest = [{"bucket": "rat", "key": "a", "size": size, "etag": manifest_etag}]
    result = compare.compare_objects(manifest, [("rat", "a", size, live_etag)], {"rat"})
    assert result["ok"] and result["etag_checked"] == 0


@pytest.mark.parametrize("exact", [True, False])
def test_diff_when_live_differs_then_lines_of_what_a_restore_changes(exact):
    expected_rows = {"public.a": 5, "public.b": 2, "public.gone": 3}
    rows = compare.compare_rows(expected_rows, {"public.a": 7, "public.b": 2}, ["public.a", "public.b", "public.new"])
    manifest = [{"bucket": "rat", "key": "k1", "size": 3, "etag": '"%s"' % hashlib.md5(b"abc").hexdigest()},
                {"bucket": "rat", "key": "k2", "size": 4, "etag": '"%s"' % hashlib.md5(b"abcd").hexdigest()},
                {"bucket": "rat", "key": "same", "size": 1, "etag": '"%s"' % hashlib.md5(b"s").hexdigest()},
                {"bucket": "rat", "key": "big", "size": 9}]
    listing = [("rat", "k2", 4, hashlib.md5(b"xxxx").hexdigest()), ("rat", "same", 1, hashlib.md5(b"s").hexdigest()),
               ("rat", "big", 8, "x-2"), ("rat", "extra", 1, "e")]
    objects = compare.compare_objects(manifest, listing, {"rat"})
    result = compare.diff(expected_rows, rows, manifest, objects, exact, "live", "backup b")
    before = ["s3://rat/big: 8 bytes", "s3://rat/k2: MD5 %s" % hashlib.md5(b"xxxx").hexdigest(), "table public.a: 7 rows"]
    if exact:
        before.insert(1, "s3://rat/extra: not in the backup")
    assert result["before"].splitlines() == before
    assert result["after"].splitlines() == [
        "s3://rat/big: 9 bytes", "s3://rat/k1: 3 bytes", "s3://rat/k2: MD5 %s" % hashlib.md5(b"abcd").hexdigest(),
        "table public.a: 5 rows", "table public.gone: 3 rows"]
    assert (result["before_header"], result["after_header"]) == ("live", "backup b")


def test_diff_when_live_equals_backup_then_both_sides_empty():
    rows = compare.compare_rows({"public.a": 1}, {"public.a": 1}, ["public.a"])
    assert compare.diff({"public.a": 1}, rows, [], None, True, "live", "backup")["before"] == ""
    assert compare.diff({"public.a": 1}, rows, [], None, True, "live", "backup")["after"] == ""


@mock_aws
def test_diff_when_bucket_absent_then_one_line_says_it_will_be_created_and_how_many_objects():
    endpoint = s3.Endpoint(None, "k", "s", "us-east-1")
    client = s3.make_client(endpoint)
    client.create_bucket(Bucket="here")
    manifest = [{"bucket": "lake", "key": "a", "size": 3}, {"bucket": "lake", "key": "b/c", "size": 4},
                {"bucket": "here", "key": "x", "size": 1}]
    absent = compare.absent_buckets(client, endpoint, {"lake", "here"})
    objects = compare.compare_objects(manifest, compare.list_buckets(client, endpoint, {"here"}), {"lake", "here"})
    objects["absent_buckets"] = absent
    result = compare.diff(None, None, manifest, objects, True, "live", "backup")
    assert absent == ["lake"]
    assert result["before"] == ""
    assert result["after"].splitlines() == ["s3://here/x: 1 bytes",
                                            "s3://lake: bucket will be created, 2 objects uploaded (7 bytes)"]


def test_manifest_buckets_when_empty_bucket_recorded_then_included():
    minio = {"buckets": {"empty": {}}, "objects": [{"bucket": "rat", "key": "a"}]}
    assert compare.manifest_buckets(minio) == {"empty", "rat"}


def test_list_buckets_when_bucket_missing_then_error_names_endpoint_and_bucket():
    class Client:
        def get_paginator(self, _name):
            raise botocore.exceptions.ClientError({"Error": {"Code": "NoSuchBucket"}}, "ListObjectsV2")

    with pytest.raises(RatBackupError) as err:
        list(compare.list_buckets(Client(), s3.Endpoint("http://s3"), ["rat"]))
    assert err.value.msg == "listing on http://s3 bucket 'rat' failed: the bucket does not exist (NoSuchBucket)"


def test_require_when_section_absent_then_error_names_backup():
    with pytest.raises(RatBackupError) as err:
        compare.require(None, "postgres", "/b/20260216_093000")
    assert "/b/20260216_093000" in err.value.msg


def test_renamed_when_bucket_map_then_expected_under_new_names_and_input_untouched():
    objects = [{"bucket": "rat", "key": "a"}, {"bucket": "logs", "key": "b"}]
    assert compare.renamed(objects, {"rat": "scratch"}) == [{"bucket": "scratch", "key": "a"},
                                                            {"bucket": "logs", "key": "b"}]
    assert objects[0]["bucket"] == "rat" and compare.renamed(objects, {}) is objects


def test_checksum_objects_when_one_byte_differs_then_only_it_is_listed(monkeypatch):
    monkeypatch.delenv("AWS_CA_BUNDLE", raising=False)
    with mock_aws():
        endpoint = s3.Endpoint(None, "key", "secret")
        client = s3.make_client(endpoint, retry_max_attempts=1)
        client.create_bucket(Bucket="scratch")
        client.put_object(Bucket="scratch", Key="good", Body=b"x" * 3000000)
        client.put_object(Bucket="scratch", Key="bad", Body=b"flipped")
        objects = [{"bucket": "scratch", "key": "good", "sha256": hashlib.sha256(b"x" * 3000000).hexdigest()},
                   {"bucket": "scratch", "key": "bad", "sha256": hashlib.sha256(b"flippeD").hexdigest()},
                   {"bucket": "scratch", "key": "unhashed"}]
        differ = compare.checksum_objects(client, endpoint, objects, concurrency=2)
        assert [d["object"] for d in differ] == ["s3://scratch/bad"]
        assert differ[0]["actual"] == hashlib.sha256(b"flipped").hexdigest()
        with pytest.raises(RatBackupError) as caught:
            compare.checksum_objects(client, endpoint, [{"bucket": "scratch", "key": "gone", "sha256": "0"}])
        assert "reading" in caught.value.msg and "'gone'" in caught.value.msg


class _Session:
    def __init__(self, answers, sent):
        self.answers = answers
        self.sent = sent

    def query(self, sql):
        self.sent.append(sql)
        answer = self.answers[sql]
        if isinstance(answer, Exception):
            raise answer
        return answer

    def close(self):
        self.sent.append("close")


class _Client:
    def __init__(self, answers):
        self.answers = answers
        self.sent = []

    def open_session(self):
        return _Session(self.answers, self.sent)


def test_run_checks_when_true_false_or_error_then_each_judged_alone():
    client = _Client({"SELECT true;": ["t"], "SELECT count(*) > 0 FROM pipelines;": ["f"],
                      "SELECT nope;": RatBackupError('ERROR:  column "nope" does not exist')})
    outcome = compare.run_checks(client, [{"name": "ok", "sql": "SELECT true"},
                                          {"name": "pipelines", "sql": " SELECT count(*) > 0 FROM pipelines; "},
                                          {"name": "typo", "sql": "SELECT nope;"}])
    assert [(c["name"], c["ok"]) for c in outcome] == [("ok", True), ("pipelines", False), ("typo", False)]
    assert 'column "nope"' in outcome[2]["output"]
    assert client.sent.count("close") == 3


@pytest.mark.parametrize("checks", [[{"sql": "SELECT 1"}], [{"name": "x", "sql": "  "}], ["SELECT 1"]])
def test_check_list_when_malformed_then_error_names_index(checks):
    with pytest.raises(RatBackupError) as caught:
        compare.check_list(checks)
    assert "checks[0]" in caught.value.msg
