# -*- coding: utf-8 -*-
# Copyright: rat.backup contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The fast transport where servers and networks misbehave, against scripted loopback servers
(chunked answers, 503 storms, throttling, an early 403, region errors, a proxy), and where the
fast path hands a case to boto3 (credential chain, proxy, retry mode)."""

from __future__ import annotations

import base64
import hashlib
import socket
import threading
import urllib.parse

import pytest

boto3 = pytest.importorskip("boto3")

from ansible_collections.rat.backup.plugins.module_utils import s3  # noqa: E402
from ansible_collections.rat.backup.plugins.module_utils._s3 import http1  # noqa: E402
from ansible_collections.rat.backup.plugins.module_utils._s3 import transport as fast_transport  # noqa: E402
from ansible_collections.rat.backup.plugins.module_utils._s3 import wire  # noqa: E402
from ansible_collections.rat.backup.plugins.module_utils.errors import RatBackupError  # noqa: E402
from ansible_collections.rat.backup.tests.unit.plugins.module_utils.test_http1 import (  # noqa: E402
    OK, scripted, self_signed)

assert scripted  # a fixture, used by name


def error_answer(status, code, extra=b"", headers=b""):
    body = b"<?xml version=\"1.0\"?><Error><Code>%s</Code><Message>m</Message>%s</Error>" % (code, extra)
    return b"HTTP/1.1 %d X\r\nContent-Length: %d\r\n%s\r\n%s" % (status, len(body), headers, body)


def transport_for(server, attempts=5, scheme="http", **endpoint):
    return fast_transport.Transport(s3.Endpoint(f"{scheme}://127.0.0.1:{server.port}", "k", "s", **endpoint),
                                    attempts=attempts)


@pytest.fixture
def sleeps(monkeypatch):
    waited = []
    monkeypatch.setattr(fast_transport.time, "sleep", waited.append)
    return waited


# --- issue 21, the keys: a "+" in an encoding-type=url listing is a space -------------------------

def test_listing_items_when_server_writes_space_as_plus_decodes_as_botocore():
    page = ("<ListBucketResult><EncodingType>url</EncodingType><KeyCount>2</KeyCount>"
            "<Contents><Key>landing/a+b%2Bc%3Dd%26e.csv</Key><Size>1</Size></Contents>"
            "<Contents><Key>sp%20ace</Key><Size>2</Size></Contents><IsTruncated>false</IsTruncated>"
            "</ListBucketResult>")
    assert [item[0] for item in wire.listing_items(page)] == ["landing/a b+c=d&e.csv", "sp ace"]


# --- 1. a chunked GET -----------------------------------------------------------------------------

def test_get_object_when_answer_chunked_has_no_content_length_and_reads_whole(scripted):
    answer = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nETag: \"e\"\r\n\r\n5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n"
    server = scripted((answer, "keep"))
    got = transport_for(server).get_object("b", "k")
    assert "ContentLength" not in got
    assert got["Body"].read() == b"hello world" and got["ETag"] == '"e"'


# --- 2., 4. and retry modes: the cases handed to boto3 --------------------------------------------

PARAMS = {"endpoint": "http://127.0.0.1:1", "access_key": "k", "secret_key": "s", "region": "us-east-1",
          "validate_certs": True, "ca_bundle": None, "session_token": None, "retry_mode": "standard",
          "retry_max_attempts": 3, "connect_timeout": 2, "read_timeout": 3}


def test_connect_when_keys_given_by_url_uses_the_fast_path(monkeypatch):
    monkeypatch.delenv("HTTP_PROXY", raising=False)
    monkeypatch.delenv("http_proxy", raising=False)
    side = s3.connect(PARAMS, fast=True)
    assert side.fast is not None and side.fast.attempts == 3 and side.fast.read_timeout == 3
    assert s3.connect(PARAMS).fast is None


def test_connect_when_no_keys_given_leaves_every_request_to_boto3s_credential_chain(monkeypatch):
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "from-env")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "env-secret")
    side = s3.connect(dict(PARAMS, access_key=None, secret_key=None), fast=True)
    assert side.fast is None
    assert s3.fast_path_refused(side.endpoint) == "credentials from boto3's chain"
    assert side.client._request_signer._credentials.access_key == "from-env"  # pylint: disable=protected-access


@pytest.mark.parametrize("mode", ["adaptive", "legacy"])
def test_connect_when_retry_mode_not_standard_leaves_it_to_boto3(mode):
    assert s3.connect(dict(PARAMS, retry_mode=mode), fast=True).fast is None


def test_connect_when_proxy_set_leaves_requests_to_boto3_which_goes_through_it(scripted, monkeypatch):
    proxy = scripted((b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", "close"))
    monkeypatch.setenv("HTTP_PROXY", f"http://127.0.0.1:{proxy.port}")
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    side = s3.connect(dict(PARAMS, endpoint="http://s3.example.test:9000"), fast=True)
    assert side.fast is None and s3.fast_path_refused(side.endpoint) == "a proxy"
    side.client.head_bucket(Bucket="lake")
    assert proxy.requests[0][0] == "HEAD http://s3.example.test:9000/lake HTTP/1.1"
    monkeypatch.setenv("NO_PROXY", "s3.example.test")
    assert s3.connect(dict(PARAMS, endpoint="http://s3.example.test:9000"), fast=True).fast is not None


# --- 3. a bucket in another region ------------------------------------------------------------------

def test_request_when_bucket_in_another_region_names_the_region(scripted):
    server = scripted((error_answer(400, b"AuthorizationHeaderMalformed", b"<Region>eu-west-1</Region>"), "keep"),
                      (error_answer(301, b"PermanentRedirect", headers=b"x-amz-bucket-region: eu-central-1\r\n"),
                       "keep"))
    transport = transport_for(server)
    for region in ("eu-west-1", "eu-central-1"):
        with pytest.raises(s3.sdk_errors()) as caught:
            transport.get("b", "k")
        message = s3.translate(caught.value, transport.endpoint, "reading", "b", "k").msg
        assert f"the bucket is in region {region}, not us-east-1: set the region option to {region}" in message
    assert len(server.requests) == 2


# --- 5. retries as botocore's standard mode ---------------------------------------------------------

@pytest.mark.parametrize("failure", [
    error_answer(400, b"RequestTimeout"),
    error_answer(503, b"SlowDown"),
    b"HTTP/1.1 429 Too Many Requests\r\nContent-Length: 0\r\n\r\n",
    error_answer(500, b"InternalError"),
])
def test_request_when_transient_or_throttled_once_succeeds_on_the_next_attempt(scripted, sleeps, failure):
    server = scripted((failure, "keep"), (OK % (2, b"ok"), "keep"))
    assert transport_for(server).get("b", "k").read() == b"ok"
    assert len(server.requests) == 2 and len(sleeps) == 1


def test_request_when_503_storm_waits_like_botocore_then_fails_with_slowdown(scripted, sleeps):
    server = scripted(*[(error_answer(503, b"SlowDown", headers=b"Retry-After: 3\r\n"), "keep")] * 5)
    with pytest.raises(s3.sdk_errors()) as caught:
        transport_for(server).get("b", "k")
    assert s3.error_code(caught.value) == "SlowDown" and len(server.requests) == 5
    # Retry-After honoured on each of the four waits (at most 5 s beyond the backoff).
    assert len(sleeps) == 4 and all(3 <= wait <= 3 + 8 for wait in sleeps)


def test_delay_when_throttled_or_not_follows_botocores_standard_backoff():
    from ansible_collections.rat.backup.plugins.module_utils._s3 import retry
    top = [retry.delay(i, 503, "SlowDown", rand=lambda: 1.0) for i in range(7)]
    assert top == [1, 2, 4, 8, 16, 20, 20]
    assert [retry.delay(i, 500, "InternalError", rand=lambda: 1.0) for i in range(3)] == [0.05, 0.1, 0.2]
    assert retry.delay(0, 503, "SlowDown", {"x-amz-retry-after": "2500"}, rand=lambda: 0.0) == 2.5
    assert retry.delay(0, 503, "SlowDown", {"retry-after": "60"}, rand=lambda: 0.5) == 5.5
    assert not retry.is_retryable(403, "AccessDenied") and not retry.is_retryable(404, "NoSuchKey")


# --- 6. an early error answer -----------------------------------------------------------------------

class EarlyAnswer:
    """Reads a request's head only, answers 403 at once and closes: the body is never read."""

    def __init__(self):
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.heads = []
        self.thread = threading.Thread(target=self.serve, daemon=True)
        self.thread.start()

    def serve(self):
        while True:
            try:
                sock, _address = self.listener.accept()
            except OSError:
                return
            with sock:
                head = b""
                while b"\r\n\r\n" not in head:
                    data = sock.recv(4096)
                    if not data:
                        break
                    head += data
                self.heads.append(head.split(b"\r\n\r\n")[0])
                sock.sendall(error_answer(403, b"AccessDenied", headers=b"Connection: close\r\n"))
                sock.shutdown(socket.SHUT_WR)

    def close(self):
        self.listener.close()


@pytest.mark.parametrize("size", [900 << 10, 8 << 20])
def test_put_when_server_answers_403_before_the_body_reports_it_once(size, sleeps):
    server = EarlyAnswer()
    try:
        body = b"x" * size
        with pytest.raises(RatBackupError, match="access denied") as caught:
            transport_for(server).put_object("b", "k", body, hashlib.sha256(body).hexdigest(), {})
        assert caught.value.details["error_code"] == "AccessDenied"
        assert len(server.heads) == 1 and sleeps == []
        assert (b"Expect: 100-continue" in server.heads[0]) == (size > 1 << 20)
    finally:
        server.close()


# --- 7. header values never echoed ------------------------------------------------------------------

def test_put_object_when_metadata_name_has_crlf_fails_naming_it_without_header_values(scripted):
    server = scripted()
    with pytest.raises(RatBackupError) as caught:
        transport_for(server).put_object("b", "k", b"v", hashlib.sha256(b"v").hexdigest(),
                                         {"Metadata": {"a\r\nb": "c"}})
    assert "'x-amz-meta-a\\r\\nb'" in caught.value.msg and "Signature" not in caught.value.msg
    assert server.requests == []


def test_connection_when_header_value_has_crlf_never_echoes_the_value(scripted):
    server = scripted()
    conn = http1.Connection("127.0.0.1", server.port, "h", None, 5, 5)
    with pytest.raises(ValueError) as caught:
        conn.request("GET", "/", {"Authorization": "Signature=secret\r\nX: y"})
    assert "secret" not in str(caught.value) and "Authorization" in str(caught.value)


# --- 8. Content-MD5 on uploads ----------------------------------------------------------------------

def test_put_object_when_sent_carries_the_bodys_content_md5(scripted):
    server = scripted((b"HTTP/1.1 200 OK\r\nETag: \"e\"\r\nContent-Length: 0\r\n\r\n", "keep"))
    body = b"rat" * 1000
    transport_for(server).put_object("b", "k", body, hashlib.sha256(body).hexdigest(), {})
    assert server.requests[0][1]["Content-MD5"] == base64.b64encode(hashlib.md5(body).digest()).decode()
    assert server.requests[0][2] == body


# --- 9. validate_certs: false with a ca_bundle ------------------------------------------------------

def test_both_paths_when_validate_certs_false_and_ca_bundle_given_do_not_verify(scripted, tmp_path):
    _ca_file, server_context = self_signed(tmp_path)
    (tmp_path / "other").mkdir()
    other_ca, _other_context = self_signed(tmp_path / "other")
    empty = b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"
    server = scripted((empty, "close"), (OK % (2, b"ok"), "close"), context=server_context)
    endpoint = s3.Endpoint(f"https://127.0.0.1:{server.port}", "k", "s", validate_certs=False, ca_bundle=other_ca)
    s3.make_client(endpoint, retry_max_attempts=1).head_bucket(Bucket="b")
    assert fast_transport.Transport(endpoint, attempts=1).get("b", "k").read() == b"ok"


# --- the reads a backup starts with: ListObjectVersions pages and bucket answers, byte for byte ---

def xml_answer(body, then="keep"):
    body = b'<?xml version="1.0" encoding="UTF-8"?>\n' + body.encode("utf-8")
    return b"HTTP/1.1 200 OK\r\nContent-Type: application/xml\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body), then


# As AWS writes an encoding-type=url answer: "+" for a space, %2B for "+", times with and without
# milliseconds, the "null" version of an object written before versioning, checksums listed twice.
VERSIONS_PAGE_1 = (
    '<ListVersionsResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/"><Name>lake</Name><Prefix>in+dir%2F</Prefix>'
    '<KeyMarker></KeyMarker><VersionIdMarker></VersionIdMarker><NextKeyMarker>in+dir%2Fa+b%2Bc</NextKeyMarker>'
    '<NextVersionIdMarker>null</NextVersionIdMarker><MaxKeys>3</MaxKeys><EncodingType>url</EncodingType>'
    '<IsTruncated>true</IsTruncated>'
    '<Version><Key>in+dir%2F%25pct</Key><VersionId>v2</VersionId><IsLatest>true</IsLatest>'
    '<LastModified>2026-12-07T06:42:36Z</LastModified><ETag>&quot;abc&quot;</ETag><Size>12</Size>'
    '<Owner><DisplayName></DisplayName><ID>o</ID></Owner><StorageClass>STANDARD</StorageClass>'
    '<ChecksumAlgorithm>CRC32</ChecksumAlgorithm><ChecksumAlgorithm>SHA256</ChecksumAlgorithm></Version>'
    '<DeleteMarker><Key>in+dir%2F%25pct</Key><VersionId>m1</VersionId><IsLatest>false</IsLatest>'
    '<LastModified>2026-12-07T06:42:35.123Z</LastModified><Owner><ID>o</ID></Owner></DeleteMarker>'
    '<Version><Key>in+dir%2Fa+b%2Bc</Key><VersionId>null</VersionId><IsLatest>false</IsLatest>'
    '<LastModified>2026-12-07T06:42:34.000Z</LastModified><ETag>"d-2"</ETag><Size>0</Size>'
    '<StorageClass>STANDARD</StorageClass></Version></ListVersionsResult>')
VERSIONS_PAGE_2 = (
    '<ListVersionsResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/"><Name>lake</Name><Prefix>in+dir%2F</Prefix>'
    '<KeyMarker>in+dir%2Fa+b%2Bc</KeyMarker><VersionIdMarker>null</VersionIdMarker><MaxKeys>3</MaxKeys>'
    '<EncodingType>url</EncodingType><IsTruncated>false</IsTruncated>'
    '<DeleteMarker><Key>in+dir%2F%C3%BC%2F..</Key><VersionId>m2</VersionId><IsLatest>true</IsLatest>'
    '<LastModified>2026-12-07T06:42:37.5Z</LastModified><Owner><ID>o</ID></Owner></DeleteMarker>'
    '</ListVersionsResult>')


def test_version_pages_when_encoded_and_paged_read_and_page_on_as_boto3(scripted):
    server = scripted(xml_answer(VERSIONS_PAGE_1), xml_answer(VERSIONS_PAGE_2, "close"),
                      xml_answer(VERSIONS_PAGE_1), xml_answer(VERSIONS_PAGE_2, "close"))
    fast = transport_for(server, attempts=1)
    client = s3.make_client(fast.endpoint, retry_max_attempts=1)
    want = [{k: v for k, v in page.items() if k != "ResponseMetadata"} for page in client.get_paginator(
        "list_object_versions").paginate(Bucket="lake", Prefix="in dir/", PaginationConfig={"PageSize": 3})]
    got = list(fast.version_pages("lake", "in dir/", page_size=3))
    assert got == want
    assert [v["Key"] for v in got[0]["Versions"]] == ["in dir/%pct", "in dir/a b+c"]
    assert got[1]["DeleteMarkers"][0]["Key"] == "in dir/ü/.." and got[0]["Versions"][1]["VersionId"] == "null"
    # The second request names the markers as boto3's does (the key decoded, then quoted again).
    queries = [dict(urllib.parse.parse_qsl(line.split(" ")[1].partition("?")[2], keep_blank_values=True))
               for line, _headers, _body in server.requests]
    assert queries[3] == queries[1] and queries[1]["key-marker"] == "in dir/a b+c"
    assert queries[1]["version-id-marker"] == "null"


@pytest.mark.parametrize("page, error", [
    # moto lists versions' keys unencoded: a control character makes the answer invalid XML.
    ('<ListVersionsResult><IsTruncated>false</IsTruncated><Version><Key>ctl\x01char</Key></Version>'
     '</ListVersionsResult>', "the server's answer is not well-formed XML"),
    ('<ListVersionsResult><IsTruncated>true</IsTruncated><Version><Key>k</Key></Version></ListVersionsResult>',
     "a truncated page without a new key marker"),
])
def test_version_pages_when_answer_unreadable_or_unending_fails_naming_it(scripted, page, error):
    server = scripted(xml_answer(page))
    with pytest.raises(RatBackupError, match=error) as raised:
        list(s3.version_pages(None, s3.Endpoint(None), "lake", "", transport_for(server, attempts=1)))
    assert "'lake'" in str(raised.value)


@pytest.mark.parametrize("answer, versioned", [
    ('<VersioningConfiguration xmlns="http://s3.amazonaws.com/doc/2006-03-01/"><Status>Suspended</Status>'
     '</VersioningConfiguration>', True),
    # rclone serve s3, and any bucket never versioned: no Status.
    ('<VersioningConfiguration xmlns="http://s3.amazonaws.com/doc/2006-03-01/"/>', False),
    ('<VersioningConfiguration><Status>Enabled</Status><MfaDelete>Disabled</MfaDelete></VersioningConfiguration>',
     True),
])
def test_is_versioned_when_answered_reads_as_boto3(scripted, answer, versioned):
    server = scripted(xml_answer(answer, "close"), xml_answer(answer, "close"))
    fast = transport_for(server, attempts=1)
    client = s3.make_client(fast.endpoint, retry_max_attempts=1)
    assert s3.is_versioned(client, fast.endpoint, "lake") is versioned
    assert s3.is_versioned(None, fast.endpoint, "lake", fast) is versioned


def test_bucket_names_when_answered_without_namespace_reads_as_boto3(scripted):
    answer = ('<ListAllMyBucketsResult><Owner><ID>o</ID></Owner><Buckets><Bucket><Name>a&amp;b</Name>'
              '<CreationDate>2026-12-07T06:42:36Z</CreationDate></Bucket><Bucket><Name>lake</Name></Bucket>'
              '</Buckets></ListAllMyBucketsResult>')
    server = scripted(xml_answer(answer, "close"), xml_answer(answer, "close"))
    fast = transport_for(server, attempts=1)
    client = s3.make_client(fast.endpoint, retry_max_attempts=1)
    assert s3.bucket_names(None, fast.endpoint, fast) == s3.bucket_names(client, fast.endpoint) == ["a&b", "lake"]


@pytest.mark.parametrize("status, code, hint", [
    (403, b"AccessDenied", "access denied for this access key (AccessDenied)"),
    (404, b"NoSuchBucket", "the bucket does not exist (NoSuchBucket)"),
    (403, b"InvalidAccessKeyId", "the access key or secret key is not accepted (InvalidAccessKeyId)"),
])
def test_bucket_reads_when_refused_fail_as_through_boto3(scripted, status, code, hint):
    server = scripted(*[(error_answer(status, code), "close")] * 4)
    fast = transport_for(server, attempts=1)
    client = s3.make_client(fast.endpoint, retry_max_attempts=1)
    for call in (lambda c, h: s3.is_versioned(c, fast.endpoint, "lake", h),
                 lambda c, h: s3.bucket_names(c, fast.endpoint, h)):
        with pytest.raises(RatBackupError) as by_boto:
            call(client, None)
        with pytest.raises(RatBackupError) as by_fast:
            call(None, fast)
        assert str(by_fast.value) == str(by_boto.value) and str(by_fast.value).endswith(hint)
