# -*- coding: utf-8 -*-
# Copyright: rat.backup contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

import datetime
import sys

import botocore.exceptions
import pytest
from moto import mock_aws

from ansible_collections.rat.backup.plugins.module_utils import s3
from ansible_collections.rat.backup.plugins.module_utils._s3 import client as s3_client
from ansible_collections.rat.backup.plugins.module_utils.errors import RatBackupError

from ansible_collections.rat.backup.tests.unit.plugins.module_utils.minimal_s3 import NO_OPTIONAL_APIS, serve

SECRET = "s3cr3t-never-shown"
ENDPOINT = s3.Endpoint("http://127.0.0.1:19000", "rat", SECRET)


def client_error(code, message="boom"):
    return botocore.exceptions.ClientError({"Error": {"Code": code, "Message": message}}, "GetObject")


def test_connection_argspec_when_prefixed_marks_the_secrets_no_log_and_has_no_aliases():
    spec = s3.connection_argspec("src_")
    assert set(spec) == {"src_endpoint", "src_access_key", "src_secret_key", "src_session_token", "src_region",
                         "src_validate_certs", "src_ca_bundle"}
    assert spec["src_secret_key"]["no_log"] is True and spec["src_session_token"]["no_log"] is True
    assert spec["src_access_key"]["no_log"] is False
    assert not any("aliases" in option for option in spec.values())


def test_connection_argspec_without_prefix_takes_amazon_aws_names():
    spec = s3.connection_argspec()
    assert "endpoint_url" in spec["endpoint"]["aliases"]
    assert {"aws_access_key", "aws_access_key_id"} <= set(spec["access_key"]["aliases"])
    assert {"aws_secret_key", "aws_secret_access_key"} <= set(spec["secret_key"]["aliases"])
    assert spec["ca_bundle"]["aliases"] == ["aws_ca_bundle"]
    assert spec["session_token"]["aliases"] == ["aws_session_token"]
    assert s3.connection_argspec()["endpoint"] is not spec["endpoint"]


def test_endpoint_from_params_when_aliases_used_reads_the_session_token():
    params = {"endpoint": "http://s3", "access_key": "AK", "secret_key": SECRET, "session_token": "tok"}
    endpoint = s3.Endpoint.from_params(params)
    assert (endpoint.access_key, endpoint.secret_key, endpoint.session_token) == ("AK", SECRET, "tok")
    assert "tok" not in repr(endpoint)


def test_make_client_when_session_token_given_signs_with_it():
    client = s3.make_client(s3.Endpoint("http://127.0.0.1:1", "AK", SECRET, session_token="tok"))
    credentials = client._request_signer._credentials  # pylint: disable=protected-access
    assert (credentials.access_key, credentials.secret_key, credentials.token) == ("AK", SECRET, "tok")


def test_same_service_when_session_tokens_differ_is_false():
    one = s3.Endpoint("http://s3", "AK", SECRET, session_token="a")
    assert one.same_service(s3.Endpoint("http://s3", "AK", SECRET, session_token="a"))
    assert not one.same_service(s3.Endpoint("http://s3", "AK", SECRET, session_token="b"))


def test_endpoint_repr_when_secret_set_never_shows_it():
    assert SECRET not in repr(ENDPOINT)
    assert "127.0.0.1:19000" in repr(ENDPOINT)


def test_translate_when_no_such_bucket_names_endpoint_and_bucket():
    error = s3.translate(client_error("NoSuchBucket"), ENDPOINT, "listing objects", "ghost")
    assert "http://127.0.0.1:19000" in error.msg and "'ghost'" in error.msg and "does not exist" in error.msg
    assert error.details["bucket"] == "ghost" and error.details["error_code"] == "NoSuchBucket"


@pytest.mark.parametrize("code", ["InvalidAccessKeyId", "SignatureDoesNotMatch"])
def test_translate_when_credentials_rejected_says_so_without_the_secret(code):
    error = s3.translate(client_error(code), ENDPOINT, "listing objects", "rat")
    assert "access key or secret key is not accepted" in error.msg
    assert SECRET not in error.msg and SECRET not in repr(error.details)


def test_translate_when_endpoint_unreachable_names_it():
    exc = botocore.exceptions.EndpointConnectionError(endpoint_url="http://127.0.0.1:19000/rat")
    error = s3.translate(exc, ENDPOINT, "reading", "rat", "a/b")
    assert "unreachable" in error.msg and "'a/b'" in error.msg and "127.0.0.1:19000" in error.msg


@pytest.mark.parametrize("text, expected", [
    ("2026-11-25T18:15:28.000Z", datetime.datetime(2026, 11, 25, 18, 15, 28, tzinfo=datetime.timezone.utc)),
    ("Wed, 25 Nov 2026 18:15:28 GMT", datetime.datetime(2026, 11, 25, 18, 15, 28, tzinfo=datetime.timezone.utc)),
    ("1795631728", datetime.datetime.fromtimestamp(1795631728, datetime.timezone.utc)),
])
def test_parse_timestamp_when_s3_formats_returns_aware_utc(text, expected):
    assert s3.parse_timestamp(text) == expected


def test_make_client_when_called_uses_endpoint_retries_and_timeouts():
    client = s3.make_client(ENDPOINT, retry_mode="adaptive", retry_max_attempts=7, connect_timeout=3,
                            read_timeout=9, max_pool_connections=20)
    config = client.meta.config
    assert client.meta.endpoint_url == "http://127.0.0.1:19000"
    assert config.retries == {"mode": "adaptive", "total_max_attempts": 7}
    assert (config.connect_timeout, config.read_timeout, config.max_pool_connections) == (3, 9, 20)


def _fill(client, name, count, versioned):
    client.create_bucket(Bucket=name)
    if versioned:
        client.put_bucket_versioning(Bucket=name, VersioningConfiguration={"Status": "Enabled"})
    for index in range(count):
        client.put_object(Bucket=name, Key="k%05d" % index, Body=b"x")


def test_delete_bucket_when_more_than_one_listing_page_removes_every_version(monkeypatch):
    monkeypatch.delenv("AWS_CA_BUNDLE", raising=False)
    with mock_aws():
        endpoint = s3.Endpoint(None, "key", "secret")
        client = s3.make_client(endpoint, retry_max_attempts=1)
        # Paged on while deleting, moto's second page came back empty: 5 of 1,005 objects stayed.
        _fill(client, "many", s3.DELETE_BATCH + 5, versioned=True)
        client.delete_object(Bucket="many", Key="k00000")
        assert s3.delete_bucket(client, endpoint, "many") is True
        assert not s3.bucket_exists(client, endpoint, "many")
        assert s3.delete_bucket(client, endpoint, "many") is False


def test_delete_bucket_when_server_lists_no_versions_removes_by_the_plain_listing(monkeypatch):
    monkeypatch.delenv("AWS_CA_BUNDLE", raising=False)
    with serve(NO_OPTIONAL_APIS) as url:
        endpoint = s3.Endpoint(url, "key", "secret")
        client = s3.make_client(endpoint, retry_max_attempts=1)
        _fill(client, "plain-no-versions", 3, versioned=False)
        with pytest.raises(botocore.exceptions.ClientError):
            client.list_object_versions(Bucket="plain-no-versions")
        assert s3.delete_bucket(client, endpoint, "plain-no-versions") is True
        assert not s3.bucket_exists(client, endpoint, "plain-no-versions")


# --- boto3 imported at a client's first use (issue 24) ---------------------------------------------

PARAMS = {"endpoint": "http://127.0.0.1:1", "access_key": "k", "secret_key": SECRET}


def test_connect_when_called_makes_no_client_until_one_is_used():
    side = s3.connect(PARAMS, fast=True)
    assert side.fast is not None and not side.client.made
    assert side.client.meta.region_name == "us-east-1" and side.client.made


def test_client_when_boto3_missing_fails_naming_it_at_first_use(monkeypatch):
    monkeypatch.setattr(s3_client, "HAS_BOTO3", False)
    side = s3.connect(PARAMS)
    with pytest.raises(RatBackupError, match="boto3 is required"):
        side.client.list_buckets()


def test_client_when_boto3_installed_but_broken_fails_naming_it(monkeypatch):
    # None in sys.modules makes `import boto3` raise ImportError, as a broken installation does.
    monkeypatch.setitem(sys.modules, "boto3", None)
    with pytest.raises(RatBackupError, match="boto3 is installed but cannot be imported"):
        s3.make_client(ENDPOINT)


@pytest.mark.parametrize("refused, call, expected", [
    # s3rver: no ListObjectVersions. The proxy's error body holds the query's "&" unescaped (not
    # XML), so both paths fall back on the status, as botocore does.
    (NO_OPTIONAL_APIS, lambda c, e, h: list(s3.version_pages(c, e, "lake", "", h)),
     "listing versions on {url} bucket 'lake' failed: Method Not Allowed (405)"),
    # A server (or a policy) that does not answer GetBucketVersioning: the backup cannot know, and stops.
    ({("GET", "versioning"): (501, "NotImplemented")}, lambda c, e, h: s3.is_versioned(c, e, "lake", h),
     "reading versioning on {url} bucket 'lake' failed: NotImplemented (NotImplemented)"),
])
def test_bucket_reads_when_server_lacks_the_api_fail_alike_on_both_paths(monkeypatch, refused, call, expected):
    monkeypatch.delenv("AWS_CA_BUNDLE", raising=False)
    with serve(refused) as url:
        endpoint = s3.Endpoint(url, "key", "secret")
        client = s3.make_client(endpoint, retry_max_attempts=1)
        _fill(client, "lake", 2, versioned=False)
        fast = s3.connect({"endpoint": url, "access_key": "key", "secret_key": "secret", "retry_max_attempts": 1},
                          fast=True).fast
        with pytest.raises(RatBackupError) as by_boto:
            call(client, endpoint, None)
        with pytest.raises(RatBackupError) as by_fast:
            call(None, endpoint, fast)
        assert str(by_fast.value) == str(by_boto.value) == expected.format(url=url)
