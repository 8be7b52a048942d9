# -*- coding: utf-8 -*-
# Copyright: rat.backup contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The fast transport held to boto3: the same operations through both, on moto and on `rclone serve s3`
(which, like AWS and MinIO, lists a space as "+"), over the awkward-key corpus, compared field by
field: what each server accepts, listings (keys, sizes, ETags, times) page by page, GETs (bytes,
ETag, length, content type, metadata, range) and errors."""

from __future__ import annotations

import email.utils
import hashlib
import os
import re
import threading
import time

import pytest

boto3 = pytest.importorskip("boto3")
moto_server = pytest.importorskip("moto.server")

from ansible_collections.rat.backup.plugins.module_utils import consistency, s3  # noqa: E402
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


# Keys around the places where a listing is cut into parts: keys sorting just before and after "/"
# ("a-", "a.b", "a0/q"), a directory's own marker key ("b/"), a key and a prefix of the same name
# ("zz", "zz/q": only moto holds both, a server on a filesystem refuses the second), the awkward
# corpus below prefixes of its own, keys at the top between prefixes. The second page (PAGE keys
# each) ends at "a/m/07", inside "a/m/", which is then read on from there (start-after).
SPLIT_TREE = sorted({"a-", "a.b", "a/x", "a/y/z", "a0/q", "b/", "b/c", "zz", "zz/q", "zz top"}
                    | {"a/m/%02d" % index for index in range(12)}
                    | {"t/%02d/k%d" % (table, index) for table in range(12) for index in range(3)}
                    | {"t/%02d/deep/%s" % (table, key) for table in (3, 7) for key in s3_servers.CORPUS[:6]}
                    | {"t/%02d.note" % table for table in (4, 9)}
                    | {"%s/%s" % (top, key) for top in ("sp ace", "plus+", "ünï") for key in s3_servers.CORPUS})


def test_listing_when_split_into_parts_lists_what_boto3_lists_in_its_order(sides, monkeypatch):
    _server, _endpoint, client, fast = sides
    name = bucket(client, "split")
    for key in SPLIT_TREE:
        boto_put(client, name, key)
    made = []
    request = fast_transport.Transport.request

    def recording(self, method, bucket_name, key=None, query=None, **kwargs):
        made.append((threading.current_thread().name, dict(query or {})))
        return request(self, method, bucket_name, key, query, **kwargs)

    monkeypatch.setattr(fast_transport.Transport, "request", recording)
    assert fast_listing(fast, name) == boto_listing(client, name)
    # The listing was split: delimiter listings found the parts, read by threads of their own, one
    # of them from where page 2 ended.
    assert any("delimiter" in query for dummy, query in made)
    assert {query.get("start-after") for thread, query in made if thread.startswith("listing-parts")} >= {None, "a/m/07"}
    for prefix in ("t/", "t/03/", "sp ace/", "a"):
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


# --- what a backup starts with: buckets, versioning, the clock, versions listings ----------------

# Keys beside the corpus that only a versions listing shows: relative segments, and one key with
# more versions and delete markers than a page holds.
MANY = "many versions"
VERSIONED_EXTRA = ["..", "a/../b", "./dot", MANY]


CONTROL = re.compile("[\x00-\x1f]")


def without_metadata(pages):
    return [{k: v for k, v in page.items() if k != "ResponseMetadata"} for page in pages]


def boto_version_pages(client, name, prefix="", page_size=PAGE):
    return without_metadata(client.get_paginator("list_object_versions").paginate(
        Bucket=name, Prefix=prefix, PaginationConfig={"PageSize": page_size}))


def message(call):
    """What a caller of the s3 face sees: the result, or the RatBackupError's message and code."""
    try:
        return call()
    except RatBackupError as exc:
        return str(exc), exc.details.get("error_code")


def test_version_pages_when_keys_awkward_and_versions_span_pages_equal_boto3s(sides):
    server, endpoint, client, fast = sides
    if server == "rclone":
        pytest.skip("rclone serve s3 has no versions: test_bucket_reads_when_... holds its answers")
    name = bucket(client, "versions")
    client.put_bucket_versioning(Bucket=name, VersioningConfiguration={"Status": "Enabled"})
    # moto 5.2 lists versions' keys unencoded whatever encoding-type says, so a key with a control
    # character makes its answer invalid XML (or a 500 after a key-marker): those keys stay out here
    # (test_s3_failures reads such an answer). A "+" or space is then listed as is: no decoding.
    for key in [k for k in s3_servers.CORPUS if not CONTROL.search(k)] + VERSIONED_EXTRA:
        boto_put(client, name, key)
    for round_ in range(4):
        client.put_object(Bucket=name, Key=MANY, Body=b"%d" % round_)
        client.delete_object(Bucket=name, Key=MANY)
    client.put_object(Bucket=name, Key=MANY, Body=b"last")
    for key in ("plus+only", "ünïcødé/ключ/鍵.bin", "sp ace"):
        client.delete_object(Bucket=name, Key=key)
    for page_size in (3, PAGE, 1000):
        want = boto_version_pages(client, name, page_size=page_size)
        assert list(fast.version_pages(name, page_size=page_size)) == want, page_size
    pages = boto_version_pages(client, name, page_size=3)
    # Not vacuous: MANY's history crosses page boundaries, with markers and "null"-free ids.
    assert sum(1 for page in pages if MANY in {v["Key"] for v in page.get("Versions", []) + page.get(
        "DeleteMarkers", [])}) >= 3
    assert {v["Key"] for page in pages for v in page.get("Versions", ())} >= set(VERSIONED_EXTRA)
    for prefix in ("dir/", "sp ace", "ünïcødé/", "q?x=1&", "many"):
        assert list(fast.version_pages(name, prefix, page_size=2)) == \
            boto_version_pages(client, name, prefix, page_size=2), prefix
    # What the Lister consumes, through the face: the same keys chosen now and as of a time.
    for bounds in (None, (0.0, 0.0), (float("inf"), float("inf"))):
        assert list(consistency.as_of(s3.version_pages(None, endpoint, name, "", fast), bounds)) == \
            list(consistency.as_of(s3.version_pages(client, endpoint, name), bounds)), bounds


def test_bucket_reads_when_answered_or_refused_give_what_boto3_gives(sides):
    server, endpoint, client, fast = sides
    plain = bucket(client, "plain-bucket")
    assert s3.bucket_names(None, endpoint, fast) == s3.bucket_names(client, endpoint)
    assert s3.is_versioned(None, endpoint, plain, fast) is s3.is_versioned(client, endpoint, plain) is False
    date = s3.server_date(None, endpoint, plain, fast)["ResponseMetadata"]["HTTPHeaders"]["date"]
    assert abs(email.utils.parsedate_to_datetime(date).timestamp() - time.time()) < 5
    cases = {
        "versioning, no bucket": lambda c, h: s3.is_versioned(c, endpoint, "no-such-bucket", h),
        "clock, no bucket": lambda c, h: s3.server_date(c, endpoint, "no-such-bucket", h),
        "versions, no bucket": lambda c, h: without_metadata(s3.version_pages(c, endpoint, "no-such-bucket", "", h)),
        # rclone has no versions (NotImplemented); moto lists the unversioned bucket's objects as "null".
        "versions, plain bucket": lambda c, h: without_metadata(s3.version_pages(c, endpoint, plain, "", h)),
    }
    boto_put(client, plain, "k")
    for case, call in cases.items():
        got, want = message(lambda: call(None, fast)), message(lambda: call(client, None))
        if case.startswith("clock") and isinstance(want, dict):
            got, want = got["ResponseMetadata"]["HTTPStatusCode"], want["ResponseMetadata"]["HTTPStatusCode"]
        assert got == want, case
    if server == "rclone":
        # What a backup reports of a server without versioning: the bucket is not versioned (its
        # GetBucketVersioning has no Status), so it is listed as is, best-effort; its versions
        # listing is refused, and only fail_on_best_effort would stop the backup.
        assert message(lambda: list(s3.version_pages(None, endpoint, plain, "", fast))) == (
            f"listing versions on {endpoint.url} bucket 'plain-bucket' failed: NotImplemented (NotImplemented)",
            "NotImplemented")
    wrong = s3.Endpoint(endpoint.url, s3_servers.KEY, "not-the-secret")
    wrong_fast = fast_transport.Transport(wrong, attempts=1)
    wrong_client = s3.make_client(wrong, retry_max_attempts=1)
    assert message(lambda: s3.bucket_names(None, wrong, wrong_fast)) == \
        message(lambda: s3.bucket_names(wrong_client, wrong))
    closed = s3.Endpoint("http://127.0.0.1:%d" % s3_servers.free_port(), "k", "s")
    assert message(lambda: s3.bucket_names(None, closed, fast_transport.Transport(closed, attempts=1))) == \
        message(lambda: s3.bucket_names(s3.make_client(closed, retry_max_attempts=1), closed)) == (
        f"listing buckets on {closed.url} failed: endpoint unreachable or connection dropped "
        "(EndpointConnectionError)", None)
