# -*- coding: utf-8 -*-
# Copyright: rat.backup contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

import datetime
import json

import pytest
from moto import mock_aws

from ansible_collections.rat.backup.plugins.module_utils import drill
from ansible_collections.rat.backup.plugins.module_utils import s3
from ansible_collections.rat.backup.plugins.module_utils.errors import RatBackupError
from ansible_collections.rat.backup.tests.unit.plugins.module_utils.minimal_s3 import NO_OPTIONAL_APIS, TAGGING_DENIED, serve

NOW = datetime.datetime(2026, 2, 16, 10, 0, 0, tzinfo=datetime.timezone.utc)


def test_database_name_when_time_given_then_rat_drill_timestamp():
    assert drill.database_name(NOW) == "rat_drill_20260216_100000"
    assert drill.DATABASE_RE.match(drill.database_name(NOW))


def test_bucket_map_when_long_or_odd_names_then_valid_distinct_and_recognised():
    mapped = drill.bucket_map(NOW, "rat-a", ["rat", "x" * 63, "x" * 62 + "y", "Logs_2026-"])
    names = list(mapped.values())
    assert len(set(names)) == 4
    for name in names:
        assert 3 <= len(name) <= 63 and drill.BUCKET_RE.match(name), name
        assert name == name.lower() and name[-1].isalnum() and "_" not in name
    assert mapped["rat"] == "rat-drill-20260216-100000-%s-1-rat" % drill.owner_hash("rat-a")
    assert drill.bucket_map(NOW, "rat-b", ["rat"])["rat"] != drill.bucket_map(NOW, "rat-a", ["rat"])["rat"]


def test_parse_comment_when_mark_or_foreign_text_then_mark_or_none():
    assert drill.parse_comment(drill.database_comment("h1", NOW)) == {"owner": "h1", "started_at": "2026-02-16T10:00:00Z"}
    for foreign in (None, "", "my database", drill.MARK + " {bad json", drill.MARK + " [1]"):
        assert drill.parse_comment(foreign) is None


@pytest.mark.parametrize("found, expected", [
    ({"owner": "h1", "started_at": "2026-02-16T09:59:00Z"}, True),
    ({"owner": "h2", "started_at": "2026-02-16T09:00:00Z"}, False),
    ({"owner": "h2", "started_at": "2026-02-14T09:00:00Z"}, True),
    ({"owner": "h2", "started_at": "garbage"}, True),
    # A selective restore's scratch buckets stay until removed by name, whoever's and however old.
    ({"owner": "h1", "started_at": "2026-02-16T09:59:00Z", "keep": True}, False),
    ({"owner": "h2", "started_at": "2026-02-14T09:00:00Z", "keep": True}, False),
    (None, False),
])
def test_is_leftover_when_owner_and_age_vary_then_own_or_old_only(found, expected):
    assert drill.is_leftover(found, "h1", NOW, 24) is expected


def test_leftovers_when_keep_given_then_kept_names_excluded():
    marked = {"a": {"owner": "h1"}, "b": {"owner": "h1"}, "c": None}
    assert drill.leftovers(marked, "h1", NOW, 24, keep=["b"]) == ["a"]


class FakeSession:
    def __init__(self, rows=(), fail_on=None):
        self.rows = list(rows)
        self.sent = []
        self.fail_on = fail_on

    def query(self, sql):
        self.sent.append(sql)
        if self.fail_on and self.fail_on in sql:
            raise RatBackupError("ERROR:  permission denied to create database")
        return self.rows if sql.startswith("SELECT") else []


def test_postgres_create_when_name_taken_then_next_second_marked():
    session = FakeSession([json.dumps({"d": "rat_drill_20260216_100000", "c": None})])
    name = drill.PostgresScratch(session).create(NOW, "h1")
    assert name == "rat_drill_20260216_100001"
    assert session.sent[1] == 'CREATE DATABASE "rat_drill_20260216_100001";'
    assert session.sent[2].startswith('COMMENT ON DATABASE "rat_drill_20260216_100001" IS \'rat.backup drill {')


def test_require_createdb_when_user_lacks_it_then_error_names_user_and_privilege():
    with pytest.raises(RatBackupError) as caught:
        drill.PostgresScratch(FakeSession([json.dumps({"u": "rat", "ok": False})])).require_createdb()
    assert "'rat'" in caught.value.msg and "CREATEDB" in caught.value.msg
    drill.PostgresScratch(FakeSession([json.dumps({"u": "rat_drill", "ok": True})])).require_createdb()


def test_postgres_create_when_comment_fails_then_error_names_the_database_made():
    with pytest.raises(RatBackupError) as caught:
        drill.PostgresScratch(FakeSession(fail_on="COMMENT ON")).create(NOW, "h1")
    assert caught.value.details["scratch_database"] == "rat_drill_20260216_100000"


def test_postgres_create_when_no_createdb_then_error_names_privilege():
    with pytest.raises(RatBackupError) as caught:
        drill.PostgresScratch(FakeSession(fail_on="CREATE DATABASE")).create(NOW, "h1")
    assert "rat_drill_20260216_100000" in caught.value.msg and "CREATEDB" in caught.value.msg


class DroppingSession(FakeSession):
    """Lists the database until it is dropped (or forever, with ``stuck``)."""

    def __init__(self, stuck=False):
        super().__init__([json.dumps({"d": "rat_drill_20260216_100000", "c": None})])
        self.stuck = stuck

    def query(self, sql):
        if sql.startswith("DROP") and not self.stuck:
            self.rows = []
        return super().query(sql)


def test_postgres_drop_when_not_a_drill_name_then_refused_without_sql():
    session = FakeSession()
    with pytest.raises(RatBackupError) as caught:
        drill.PostgresScratch(session).drop("rat")
    assert "not a drill database" in caught.value.msg and session.sent == []


def test_postgres_drop_when_present_then_dropped_and_checked_gone_else_false():
    session = DroppingSession()
    assert drill.PostgresScratch(session).drop("rat_drill_20260216_100000") is True
    assert 'DROP DATABASE IF EXISTS "rat_drill_20260216_100000" WITH (FORCE);' in session.sent
    assert drill.PostgresScratch(session).drop("rat_drill_20260216_100000") is False
    with pytest.raises(RatBackupError) as caught:
        drill.PostgresScratch(DroppingSession(stuck=True)).drop("rat_drill_20260216_100000")
    assert "still there" in caught.value.msg


@pytest.fixture
def scratch(monkeypatch):
    monkeypatch.delenv("AWS_CA_BUNDLE", raising=False)
    with mock_aws():
        endpoint = s3.Endpoint(None, "key", "secret")
        yield drill.S3Scratch(s3.make_client(endpoint, retry_max_attempts=1), endpoint)


def test_s3_scratch_when_created_then_marked_and_dropped_with_every_version(scratch):
    names = sorted(drill.bucket_map(NOW, "h1", ["rat", "logs"]).values())
    created = []
    scratch.create(names, "h1", NOW, created)
    assert created == names
    client = scratch.client
    client.put_bucket_versioning(Bucket=names[0], VersioningConfiguration={"Status": "Enabled"})
    client.put_object(Bucket=names[0], Key="a", Body=b"1")
    client.put_object(Bucket=names[0], Key="a", Body=b"2")
    client.delete_object(Bucket=names[0], Key="a")
    client.put_object(Bucket=names[1], Key="b", Body=b"3")
    # Look-alikes without the mark, and the live bucket, are never drill targets.
    client.create_bucket(Bucket="rat-drill-20260101-000000-abcdef-0-x")
    client.create_bucket(Bucket="rat")
    marked = scratch.marked()
    assert marked == {names[0]: {"owner": "h1", "started_at": "2026-02-16T10:00:00Z"},
                      names[1]: {"owner": "h1", "started_at": "2026-02-16T10:00:00Z"},
                      "rat-drill-20260101-000000-abcdef-0-x": None}
    assert drill.leftovers(marked, "h1", NOW, 24) == names
    assert [scratch.drop(n) for n in names] == [True, True]
    assert scratch.drop(names[0]) is False
    assert sorted(b["Name"] for b in client.list_buckets()["Buckets"]) == ["rat", "rat-drill-20260101-000000-abcdef-0-x"]


def test_s3_scratch_when_name_exists_or_not_drill_then_refused(scratch):
    names = list(drill.bucket_map(NOW, "h1", ["rat"]).values())
    scratch.create(names, "h1", NOW, [])
    with pytest.raises(RatBackupError) as caught:
        scratch.create(names, "h1", NOW, [])
    assert "already exists" in caught.value.msg
    with pytest.raises(RatBackupError) as caught:
        scratch.drop("rat")
    assert "not a drill bucket" in caught.value.msg


@pytest.mark.parametrize("refused", [NO_OPTIONAL_APIS, TAGGING_DENIED], ids=["no-optional-apis", "tagging-denied"])
def test_s3_scratch_when_server_lacks_tagging_and_versions_then_marked_by_object_and_removed(monkeypatch, refused):
    monkeypatch.delenv("AWS_CA_BUNDLE", raising=False)
    with serve(refused) as url:
        endpoint = s3.Endpoint(url, "key", "secret")
        scratch = drill.S3Scratch(s3.make_client(endpoint, retry_max_attempts=1), endpoint)
        owner = "h-%d" % len(refused)
        names = sorted(drill.bucket_map(NOW, owner, ["rat"]).values())
        created = []
        scratch.create(names, owner, NOW, created)
        assert created == names
        scratch.client.put_object(Bucket=names[0], Key="restored", Body=b"1")
        # An unmarked look-alike stays unmarked (and untouched) without tags to read.
        scratch.client.create_bucket(Bucket="rat-drill-20260101-000000-abcdef-0-" + owner)
        marked = scratch.marked()
        assert marked[names[0]] == {"owner": owner, "started_at": "2026-02-16T10:00:00Z"}
        assert marked["rat-drill-20260101-000000-abcdef-0-" + owner] is None
        assert drill.leftovers(marked, owner, NOW, 24) == names
        assert scratch.drop(names[0]) is True
        assert not s3.bucket_exists(scratch.client, endpoint, names[0])
        scratch.drop("rat-drill-20260101-000000-abcdef-0-" + owner)


def test_s3_scratch_when_a_step_fails_half_way_then_created_names_what_to_remove(scratch, monkeypatch):
    names = sorted(drill.bucket_map(NOW, "h1", ["a", "b"]).values())

    def refuse(client, endpoint, bucket, key, data, body=None):
        raise RatBackupError("writing failed (InternalError)", error_code="InternalError")

    monkeypatch.setattr(s3, "put_bytes", refuse)
    created = []
    with pytest.raises(RatBackupError):
        scratch.create(names, "h1", NOW, created)
    assert created == names[:1] and s3.bucket_exists(scratch.client, scratch.endpoint, names[0])


def test_s3_scratch_mark_when_bucket_gone_since_listing_then_none(scratch):
    assert scratch.mark_of("rat-drill-20260216-100000-3f2a1c-0-gone") is None


def test_postgres_create_when_keep_then_marked_kept_and_never_a_leftover():
    session = FakeSession()
    name = drill.PostgresScratch(session).create(NOW, "h1", keep=True)
    comment = session.sent[2].split(" IS '", 1)[1].rstrip("';")
    found = drill.parse_comment(comment)
    assert found == {"owner": "h1", "started_at": "2026-02-16T10:00:00Z", "keep": True}
    # A selective restore's scratch database stays until removed by name, whoever's drill runs next.
    assert drill.leftovers({name: found}, "h1", NOW, 0) == []


def test_s3_scratch_when_created_to_keep_then_marked_kept_and_no_leftover(scratch):
    names = sorted(drill.bucket_map(NOW, "h1", ["rat"]).values())
    scratch.create(names, "h1", NOW, [], keep=True)
    marked = scratch.marked()
    assert marked == {names[0]: {"owner": "h1", "started_at": "2026-02-16T10:00:00Z", "keep": True}}
    assert drill.leftovers(marked, "h1", NOW + datetime.timedelta(days=30), 24) == []
    assert scratch.drop(names[0]) is True
