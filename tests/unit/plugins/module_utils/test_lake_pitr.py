# -*- coding: utf-8 -*-
# Copyright: rat.backup contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

import datetime
import json
import time

import pytest
from moto import mock_aws

from ansible_collections.rat.backup.plugins.module_utils import lake_pitr, s3
from ansible_collections.rat.backup.plugins.module_utils.errors import RatBackupError

ENDPOINT = s3.Endpoint(None, "key", "secret")


@pytest.fixture
def client(monkeypatch):
    monkeypatch.delenv("AWS_CA_BUNDLE", raising=False)
    with mock_aws():
        yield s3.make_client(ENDPOINT, retry_max_attempts=1)


def bucket(client, name="lake", versioned=True):
    client.create_bucket(Bucket=name)
    if versioned:
        client.put_bucket_versioning(Bucket=name, VersioningConfiguration={"Status": "Enabled"})
    return name


def state(client, name):
    found = {}
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=name):
        for item in page.get("Contents", ()):
            found[item["Key"]] = client.get_object(Bucket=name, Key=item["Key"])["Body"].read()
    return found


def moment_between(step):
    """Whole seconds apart from the stamps on both sides (moto stamps whole seconds)."""
    time.sleep(1.1)
    at = datetime.datetime.now(datetime.timezone.utc)
    time.sleep(1.1)
    step()
    return at


def rolled(client, name, moment):
    return list(lake_pitr.plan(client, ENDPOINT, name, "", moment))


def test_plan_when_overwritten_deleted_added_restores_each_and_apply_gives_old_state(client, tmp_path):
    name = bucket(client)
    for key, body in (("a", b"a1"), ("b", b"b1"), ("c", b"c1")):
        client.put_object(Bucket=name, Key=key, Body=body, ContentType="text/x-" + key, Metadata={"k": key})
    before = state(client, name)

    def change():
        client.put_object(Bucket=name, Key="a", Body=b"a2")
        client.delete_object(Bucket=name, Key="b")
        client.put_object(Bucket=name, Key="d", Body=b"d1")

    at = moment_between(change)
    after = state(client, name)
    changes = rolled(client, name, at)
    assert [(c["key"], c["action"]) for c in changes] == [("a", "restore"), ("b", "restore"), ("d", "delete")]
    record = tmp_path / "r.jsonl"
    lake_pitr.write_record(str(record), {"as_of": "x"}, changes)
    lake_pitr.apply(client, ENDPOINT, lake_pitr.read_record(str(record)))
    assert state(client, name) == before
    head = client.head_object(Bucket=name, Key="b")
    assert (head["ContentType"], head["Metadata"]) == ("text/x-b", {"k": "b"})
    assert rolled(client, name, at) == []
    undo = list(lake_pitr.undo_plan(client, ENDPOINT, str(record)))
    assert sorted((c["key"], c["action"]) for c in undo) == [("a", "restore"), ("b", "delete"), ("d", "restore")]
    lake_pitr.apply(client, ENDPOINT, undo)
    assert state(client, name) == after


def test_plan_when_prefix_given_touches_only_that_prefix(client):
    name = bucket(client)
    client.put_object(Bucket=name, Key="t/x", Body=b"1")
    client.put_object(Bucket=name, Key="u/x", Body=b"1")
    at = moment_between(lambda: [client.put_object(Bucket=name, Key=k, Body=b"2") for k in ("t/x", "u/x")])
    assert [c["key"] for c in lake_pitr.plan(client, ENDPOINT, name, "t/", at)] == ["t/x"]


def test_require_versioned_when_bucket_unversioned_raises_naming_it(client):
    name = bucket(client, "plain", versioned=False)
    with pytest.raises(RatBackupError, match="'plain' .* not versioned"):
        lake_pitr.require_versioned(client, ENDPOINT, name)


def test_read_record_when_not_a_record_raises_naming_file(tmp_path):
    path = tmp_path / "x.jsonl"
    path.write_text(json.dumps({"format": 99}) + "\n")
    with pytest.raises(RatBackupError, match="not a lake rollback record"):
        list(lake_pitr.read_record(str(path)))


def test_parse_time_when_not_iso_raises_and_naive_is_utc():
    with pytest.raises(RatBackupError, match="not an ISO 8601 time"):
        lake_pitr.parse_time("yesterday")
    assert lake_pitr.parse_time("2026-11-27T10:00:00").tzinfo == datetime.timezone.utc


def test_reach_when_versions_and_lifecycle_reports_oldest_and_expiry(client):
    name = bucket(client)
    client.put_object(Bucket=name, Key="a", Body=b"1")
    client.put_object(Bucket=name, Key="a", Body=b"2")
    client.delete_object(Bucket=name, Key="a")
    client.put_bucket_lifecycle_configuration(Bucket=name, LifecycleConfiguration={"Rules": [
        {"ID": "nc", "Status": "Enabled", "Filter": {"Prefix": ""},
         "NoncurrentVersionExpiration": {"NoncurrentDays": 7}}]})
    now = datetime.datetime.now(datetime.timezone.utc)
    info = lake_pitr.reach(client, ENDPOINT, name, now)
    assert (info["versions"], info["noncurrent_versions"], info["delete_markers"]) == (2, 2, 1)
    assert info["noncurrent_expiry_days"] == 7
    assert info["recoverable_since"] == info["oldest_version"]


# Issue 27 item 13: times that cannot be reached are refused before any change.
def test_plan_when_only_metadata_changed_then_restored_and_second_plan_empty(client):
    name = bucket(client)
    client.put_object(Bucket=name, Key="a", Body=b"same", ContentType="text/plain", Metadata={"v": "1"})
    at = moment_between(lambda: client.copy_object(
        Bucket=name, Key="a", CopySource={"Bucket": name, "Key": "a"}, MetadataDirective="REPLACE",
        ContentType="application/json", Metadata={"v": "2"}))
    changes = rolled(client, name, at)
    assert [(c["key"], c["action"]) for c in changes] == [("a", "restore")]
    lake_pitr.apply(client, ENDPOINT, changes)
    head = client.head_object(Bucket=name, Key="a")
    assert (head["ContentType"], head["Metadata"]) == ("text/plain", {"v": "1"})
    assert rolled(client, name, at) == []


def test_check_reachable_when_before_the_bucket_existed_then_refused_naming_it(client):
    name = bucket(client)
    now = datetime.datetime.now(datetime.timezone.utc)
    limit = lake_pitr.limits(client, ENDPOINT, name, now)
    assert limit["created"] is not None and limit["horizon"] is None
    lake_pitr.check_reachable(limit, limit["created"])
    with pytest.raises(RatBackupError, match=r"before bucket 'lake' existed \(bucket 'lake', created .*no noncurrent"):
        lake_pitr.check_reachable(limit, limit["created"] - datetime.timedelta(hours=1))


def test_plan_when_version_at_the_time_may_have_expired_then_refused_naming_the_keys(client):
    name = bucket(client)
    client.put_object(Bucket=name, Key="kept", Body=b"k")
    first = client.put_object(Bucket=name, Key="old", Body=b"v1")["VersionId"]
    at = moment_between(lambda: client.put_object(Bucket=name, Key="old", Body=b"v2"))
    # What the lifecycle's noncurrent expiry does: the version current at the time is gone.
    client.delete_object(Bucket=name, Key="old", VersionId=first)
    after_writes = datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(seconds=2)
    with pytest.raises(RatBackupError, match=r"of 1 key\(s\) may have expired \(old\); .* replaced before") as err:
        list(lake_pitr.plan(client, ENDPOINT, name, "", at, horizon=after_writes))
    assert err.value.details["keys"] == ["old"]
    # Replaced after the horizon: what it replaced cannot have expired, so "old" did not exist then.
    assert [(c["key"], c["action"]) for c in lake_pitr.plan(client, ENDPOINT, name, "", at, horizon=at)] == [
        ("old", "delete")]


def test_copy_plan_when_applied_gives_the_scratch_bucket_the_state_at_the_time_and_leaves_the_source(client, tmp_path):
    name = bucket(client)
    scratch = bucket(client, "scratch", versioned=False)
    client.put_object(Bucket=name, Key="a", Body=b"a1", ContentType="text/x-a", Metadata={"k": "a"})
    client.put_object(Bucket=name, Key="b", Body=b"b1")
    then = state(client, name)

    def change():
        client.put_object(Bucket=name, Key="a", Body=b"a2")
        client.delete_object(Bucket=name, Key="b")
        client.put_object(Bucket=name, Key="c", Body=b"c1")

    at = moment_between(change)
    listed = client.list_object_versions(Bucket=name)
    changes = list(lake_pitr.copy_plan(client, ENDPOINT, name, "", at, "scratch"))
    assert [(c["key"], c["action"], c["dest"]) for c in changes] == [("a", "copy", "scratch"), ("b", "copy", "scratch")]
    record = tmp_path / "copy.jsonl"
    lake_pitr.write_record(str(record), {"as_of": "x"}, changes)
    lake_pitr.apply(client, ENDPOINT, lake_pitr.read_record(str(record)))
    assert state(client, scratch) == then
    head = client.head_object(Bucket=scratch, Key="a")
    assert (head["ContentType"], head["Metadata"]) == ("text/x-a", {"k": "a"})
    after = client.list_object_versions(Bucket=name)
    assert (after["Versions"], after.get("DeleteMarkers")) == (listed["Versions"], listed.get("DeleteMarkers"))
    assert lake_pitr.summarize(lake_pitr.read_record(str(record)), 10)["to_copy"] == 2
    with pytest.raises(RatBackupError, match="records copies into other buckets"):
        list(lake_pitr.undo_plan(client, ENDPOINT, str(record)))


def test_copy_targets_when_a_bucket_is_unmapped_or_mapped_onto_a_source_then_refused():
    assert lake_pitr.copy_targets(["a", "b"], {}) == {}
    assert lake_pitr.copy_targets(["a"], {"a": "x", "z": "y"}) == {"a": "x"}
    with pytest.raises(RatBackupError, match="no target for b"):
        lake_pitr.copy_targets(["a", "b"], {"a": "x"})
    with pytest.raises(RatBackupError, match="copies onto b, a bucket being read"):
        lake_pitr.copy_targets(["a", "b"], {"a": "b", "b": "y"})
