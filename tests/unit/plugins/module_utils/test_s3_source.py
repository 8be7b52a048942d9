# -*- coding: utf-8 -*-
# Copyright: rat.backup contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

import pytest

from ansible_collections.rat.backup.plugins.module_utils import s3, s3_source
from ansible_collections.rat.backup.plugins.module_utils.errors import RatBackupError
from ansible_collections.rat.backup.tests.unit.plugins.module_utils.test_mirror import (  # noqa: F401 pylint: disable=unused-import
    bucket, client)


def test_check_when_buckets_exist_reads_versioning_and_lists_no_object(client, monkeypatch):
    bucket(client, "rat", {"a": b"1"}, versioned=True)
    bucket(client, "rat-scratch", {"b": b"2"})
    monkeypatch.setattr(client, "get_paginator", lambda name: pytest.fail("a check must not list objects"))
    checked = s3_source.check(client, s3.Endpoint(None, "key", "secret"), [])
    assert checked == {"buckets": {"rat": {"versioned": True}, "rat-scratch": {"versioned": False}}}


def test_check_when_bucket_missing_or_unversioned_refused_naming_it(client):
    bucket(client, "rat", {"a": b"1"})
    endpoint = s3.Endpoint(None, "key", "secret")
    with pytest.raises(RatBackupError, match="bucket.* rat-lake not found"):
        s3_source.check(client, endpoint, ["rat", "rat-lake"])
    with pytest.raises(RatBackupError, match="rat are not versioned"):
        s3_source.check(client, endpoint, ["rat"], fail_on_best_effort=True)
    assert s3_source.check(client, endpoint, ["rat"]) == {"buckets": {"rat": {"versioned": False}}}


def test_versioning_when_known_for_some_buckets_asks_only_the_others_and_still_refuses(client, monkeypatch):
    bucket(client, "rat", {"a": b"1"}, versioned=True)
    bucket(client, "late", {"b": b"2"})
    endpoint = s3.Endpoint(None, "key", "secret")
    asked = []
    real = s3.is_versioned
    monkeypatch.setattr(s3, "is_versioned", lambda c, e, name, http=None: asked.append(name) or real(c, e, name, http))
    # "late": a bucket the checks did not see (created since, every bucket wanted).
    assert s3_source.versioning(client, endpoint, ["late", "rat"], known={"rat": True}) == {"late": False, "rat": True}
    assert asked == ["late"]
    with pytest.raises(RatBackupError, match="late are not versioned"):
        s3_source.versioning(client, endpoint, ["late", "rat"], fail_on_best_effort=True, known={"rat": True})
