# -*- coding: utf-8 -*-
# Copyright: rat.backup contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The fast transport held to boto3: the same operations through both, on moto and on `rclone serve s3`
(which, like AWS and MinIO, lists a space as "+"), over the awkward-key corpus, compared field by
field: what each server accepts, listings (keys, sizes, ETags, times) page by page, GETs (bytes,
ETag, length, content type, metadata, range) and errors."""

from __future__ import annotations

import hashlib
import os

import pytest

boto3 = pytest.importorskip("boto3")
moto_server = pytest.importorskip("moto.server")

from ansible_collections.rat.backup.plugins.module_utils import s3  # noqa: E402
from ansible_collections.rat.backup.plugins.module_utils._s3 import transport as fast_transport  # noqa: E402
from ansible_collections.rat.backup.plugins.module_utils._s3 import wire  # noqa: E402
from ansible_collections.rat.backup.plugins.module_utils.errors import RatBackupError  # noqa: E402
from ansible_collections.rat.backup.tests.unit.plugins.module_utils import s3_servers  # noqa: E402

PORT = s3_servers.worker_port(int(os.environ.get("RAT_TEST_S3_DIFF_PORT", "20880")))
PAGE = 5
FIELDS = ("ETag", "ContentLength", "ContentType", "Metadata", "LastModified", "ContentRange")


@pytest.fixture(scope="module", params=["moto", "rclone"])
def sides(request):
    if request.param == "moto":
        server = moto_server.ThreadedMotoServer(ip_address="127.0.0.1", port=PORT, verbose=False)
        server.start()
        url, stop = "http://127.0.0.1:%d" % PORT, server.stop
    else:
        if not s3_servers.rclone_binary():
            pytest.skip("rclone with serve s3 missing: lab/deps.sh all installs it")
        server = s3_servers.Rclone()
        url, stop = server.url, server.stop
    endpoint = s3.Endpoint(url, s3_servers.KEY, s3_servers.SECRET)
    client = s3.make_client(endpoint, retry_max_attempts=1)
    yield request.param, endpoint, client, fast_transport.Transport(endpoint, attempts=1)
    stop()


def bucket(client, name):
    if name not in s3.bucket_names(client, s3.Endpoint(None)):
        client.create_bucket(Bucket=name)
    return name


def body_of(key):
    return hashlib.sha256(key.encode()).digest() * 40 + key.encode()


def extra_of(key):
    return {"ContentType": "text/x-rat; charset=utf-8", "Metadata": {"owner": "rat", "n": str(len(key))}}


def boto_put(client, name, key):
    try:
        return client.put_object(Bucket=name, Key=key, Body=body_of(key), **extra_of(key))["ETag"]
    except s3.sdk_errors() as exc:
        return "error " + s3.error_code(exc)


def fast_put(fast, name, key):
    body = body_of(key)
    try:
        return fast.put_object(name, key, body, hashlib.sha256(body).hexdigest(), extra_of(key))
    except RatBackupError as exc:
        return "error " + exc.details.get("error_code", "")


def boto_listing(client, name, prefix=""):
    # The fast listing quotes ETags as GET answers them (rclone lists them bare); so does s3.list_objects.
    return [(o["Key"], o["Size"], wire.quoted_etag(o["ETag"]), o["LastModified"])
            for page in client.get_paginator("list_objects_v2").paginate(
                Bucket=name, Prefix=prefix, PaginationConfig={"PageSize": PAGE})
            for o in page.get("Contents", ())]


def fast_listing(fast, name, prefix=""):
    return list(fast.list_current(name, prefix, page_size=PAGE))


def fields(response):
    got = {name: response.get(name) for name in FIELDS}
    # Metadata names are case-insensitive header names (AWS stores them in lower case); botocore keeps
    # the case the server sent (rclone: X-Amz-Meta-Owner), the fast path lower-cases every header.
    got["Metadata"] = {k.lower(): v for k, v in got["Metadata"].items()}
    got["Body"] = response["Body"].read()
    return got


def test_writes_when_keys_awkward_both_paths_store_the_same(sides):
    _server, _endpoint, client, fast = sides
    by_boto, by_fast = bucket(client, "by-boto"), bucket(client, "by-fast")
    outcomes = {key: (boto_put(client, by_boto, key), fast_put(fast, by_fast, key)) for key in s3_servers.CORPUS}
    assert {key: pair for key, pair in outcomes.items() if pair[0] != pair[1]} == {}
    # What boto3 reads back of either bucket is the same, key by key.
    assert [item[:3] for item in boto_listing(client, by_fast)] == [item[:3] for item in boto_listing(client, by_boto)]
    for key, _size, _etag, _modified in boto_listing(client, by_fast):
        assert fields(client.get_object(Bucket=by_fast, Key=key)) | {"LastModified": None} == \
            fields(client.get_object(Bucket=by_boto, Key=key)) | {"LastModified": None}, key


def test_listing_when_keys_awkward_and_pages_small_decodes_as_boto3(sides):
    server, _endpoint, client, fast = sides
    name = bucket(client, "listed")
    for key in s3_servers.CORPUS:
        boto_put(client, name, key)
    listed = boto_listing(client, name)
    assert fast_listing(fast, name) == listed
    assert len(listed) > 2 * PAGE
    # The mirror's boto3 listing (s3.list_objects) quotes ETags as the fast one does.
    assert [(o["Key"], o["ETag"]) for o in s3.list_objects(client, s3.Endpoint(None), name)] == \
        [item[:3:2] for item in listed]
    # The key of issue 21: listed by both servers, under its own name.
    assert "landing/a b+c=d&e.csv" in [item[0] for item in listed], server
    for prefix in ("landing/", "sp ace", "plus+", "ünïcødé/", "dir/", "q?x=1&"):
        assert fast_listing(fast, name, prefix) == boto_listing(client, name, prefix), prefix


def test_reads_when_keys_awkward_return_what_boto3_returns(sides):
    _server, _endpoint, client, fast = sides
    name = bucket(client, "read")
    for key in s3_servers.CORPUS:
        boto_put(client, name, key)
    keys = [item[0] for item in boto_listing(client, name)]
    for key in keys:
        assert fields(fast.get_object(name, key)) == fields(client.get_object(Bucket=name, Key=key)), key
    key = keys[0]
    assert fields(fast.get_object(name, key, byte_range=(3, 40))) == \
        fields(client.get_object(Bucket=name, Key=key, Range="bytes=3-40")), key


def outcome(call):
    try:
        call()
    except s3.sdk_errors() as exc:
        return s3.error_code(exc), exc.response["ResponseMetadata"]["HTTPStatusCode"]
    except RatBackupError as exc:
        return exc.details.get("error_code"), None
    return None


def test_errors_when_object_or_bucket_missing_are_the_ones_boto3_raises(sides):
    _server, endpoint, client, fast = sides
    name = bucket(client, "errors")
    cases = {
        "missing key": (lambda: fast.get(name, "no/such key+"),
                        lambda: client.get_object(Bucket=name, Key="no/such key+")),
        "missing bucket, GET": (lambda: fast.get("no-such-bucket", "k"),
                                lambda: client.get_object(Bucket="no-such-bucket", Key="k")),
        "missing bucket, listing": (lambda: list(fast.list_objects("no-such-bucket")),
                                    lambda: client.list_objects_v2(Bucket="no-such-bucket")),
    }
    for case, (fast_call, boto_call) in cases.items():
        got, want = outcome(fast_call), outcome(boto_call)
        assert got == want and want is not None, case
    missing = outcome(lambda: fast.get_object(name, "gone", missing_ok=False))
    assert missing == ("NoSuchKey", None)
    assert fast.get_object(name, "gone", missing_ok=True) is None
    wrong = s3.Endpoint(endpoint.url, s3_servers.KEY, "not-the-secret")
    assert outcome(lambda: list(fast_transport.Transport(wrong, attempts=1).list_objects(name))) == \
        outcome(lambda: s3.make_client(wrong, retry_max_attempts=1).list_objects_v2(Bucket=name))
