# -*- coding: utf-8 -*-
# Copyright: rat.backup contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The fast transport (_s3.transport) against a real moto server on loopback (mock_aws only patches botocore's own sending)."""

from __future__ import annotations

import hashlib
import io
import os
import random
import socket
import threading
import time
import urllib.parse

import pytest

boto3 = pytest.importorskip("boto3")
moto_server = pytest.importorskip("moto.server")

from ansible_collections.rat.backup.plugins.module_utils import s3  # noqa: E402
from ansible_collections.rat.backup.plugins.module_utils._s3 import transport as fast_transport  # noqa: E402
from ansible_collections.rat.backup.plugins.module_utils._s3 import split_listing  # noqa: E402
from ansible_collections.rat.backup.plugins.module_utils._s3 import wire  # noqa: E402
from ansible_collections.rat.backup.plugins.module_utils.errors import RatBackupError  # noqa: E402
from ansible_collections.rat.backup.tests.unit.plugins.module_utils.s3_servers import CORPUS  # noqa: E402

# Each pytest-xdist worker (gw0, gw1, ...) runs its own server: two on one port would leave
# ThreadedMotoServer.start() waiting forever for a server that could not bind.
PORT = int(os.environ.get("RAT_TEST_S3_HTTP_PORT", "20850")) + 2 * int(os.environ.get("PYTEST_XDIST_WORKER", "gw0")[2:] or 0)
URL = "http://127.0.0.1:%d" % PORT
KEYS = ["plain.txt", "a b/c+d=e&f?g#h", "dir/ünïcødé/ключ", "..", "dir//double", "~tilde/%25percent", "ctl\x01char"]


@pytest.fixture(scope="module")
def server():
    srv = moto_server.ThreadedMotoServer(ip_address="127.0.0.1", port=PORT, verbose=False)
    srv.start()
    yield URL
    srv.stop()


@pytest.fixture
def bucket(server, request):
    client = boto3.client("s3", endpoint_url=server, aws_access_key_id="k", aws_secret_access_key="s",
                          region_name="us-east-1")
    name = "t-" + hashlib.sha256(request.node.name.encode()).hexdigest()[:12]
    client.create_bucket(Bucket=name)
    return client, name


def transport(**kwargs):
    return fast_transport.Transport(s3.Endpoint(URL, "k", "s"), **kwargs)


def test_list_objects_when_keys_need_quoting_yields_exact_keys_in_order(bucket):
    client, name = bucket
    for index, key in enumerate(KEYS):
        client.put_object(Bucket=name, Key=key, Body=b"x" * index)
    listed = list(transport().list_objects(name))
    assert [item[0] for item in listed] == sorted(KEYS)
    assert {item[0]: item[1] for item in listed} == {key: index for index, key in enumerate(KEYS)}
    assert all(item[2].startswith('"') and item[3].endswith("Z") for item in listed)


def test_list_objects_when_more_than_one_page_follows_the_continuation_token(bucket):
    client, name = bucket
    keys = ["k/%04d" % i for i in range(1005)]
    for key in keys:
        client.put_object(Bucket=name, Key=key, Body=b"")
    client.put_object(Bucket=name, Key="other", Body=b"")
    assert [item[0] for item in transport().list_objects(name, prefix="k/")] == keys


def recorded_requests(monkeypatch):
    """(operation, thread name) of each request a Transport makes from now on."""
    made = []
    request = fast_transport.Transport.request

    def recording(self, method, bucket, *args, **kwargs):
        made.append((kwargs.get("operation"), threading.current_thread().name))
        return request(self, method, bucket, *args, **kwargs)

    monkeypatch.setattr(fast_transport.Transport, "request", recording)
    return made


def pages_bucket(bucket, count=6):
    client, name = bucket
    for index in range(count):
        client.put_object(Bucket=name, Key="k/%02d" % index, Body=b"")
    return name


def test_list_objects_when_a_page_is_being_read_the_next_one_is_asked_for_already(bucket, monkeypatch):
    name = pages_bucket(bucket)
    # One chain of pages: splitting a listing has tests of its own (test_split_listing.py).
    monkeypatch.setattr(split_listing, "SPLIT_AFTER", 100)
    made = recorded_requests(monkeypatch)
    listed = transport().list_objects(name, page_size=2)
    assert next(listed)[0] == "k/00"
    deadline = time.monotonic() + 5
    while len(made) < 2 and time.monotonic() < deadline:
        time.sleep(0.01)
    # The second page was asked for while the first one's keys were still being read here.
    assert made[:2] == [("ListObjectsV2", "listing-pages")] * 2
    assert [item[0] for item in listed] == ["k/%02d" % i for i in range(1, 6)]
    assert len(made) == 3 and not any(t.name == "listing-pages" for t in threading.enumerate())


def test_list_objects_when_reader_stops_early_no_page_thread_is_left(bucket, monkeypatch):
    name = pages_bucket(bucket)
    made = recorded_requests(monkeypatch)
    listed = transport().list_objects(name, page_size=2)
    next(listed)
    listed.close()
    asked = len(made)
    time.sleep(0.2)
    assert len(made) == asked <= 3 and not any(t.name == "listing-pages" for t in threading.enumerate())


def test_list_objects_when_a_later_page_fails_yields_the_keys_before_then_raises_it(bucket, monkeypatch):
    name = pages_bucket(bucket)
    request = fast_transport.Transport.request

    def failing_second_page(self, method, bucket_name, *args, **kwargs):
        if "continuation-token" in (kwargs.get("query") or {}):
            raise RatBackupError("the second page failed")
        return request(self, method, bucket_name, *args, **kwargs)

    monkeypatch.setattr(fast_transport.Transport, "request", failing_second_page)
    got = []
    with pytest.raises(RatBackupError, match="the second page failed"):
        for item in transport().list_objects(name, page_size=2):
            got.append(item[0])
    assert got == ["k/00", "k/01"] and not any(t.name == "listing-pages" for t in threading.enumerate())


def test_list_objects_when_the_server_answers_the_token_asked_with_fails_instead_of_listing_for_ever(monkeypatch):
    asked = []

    def same_page(self, method, bucket_name, key=None, query=None, **kwargs):
        asked.append(query.get("continuation-token"))
        if len(asked) > 5:
            raise AssertionError("the same page asked for again and again")
        page = PAGE.format(truncated="true", encoding="", key1="k").encode("utf-8")
        return fast_transport.Response(200, {}, io.BytesIO(page))

    monkeypatch.setattr(fast_transport.Transport, "request", same_page)
    monkeypatch.setattr(split_listing, "SPLIT_AFTER", 100)
    with pytest.raises(RatBackupError, match="with the continuation token it was asked with"):
        list(transport().list_objects("b"))
    assert asked == [None, "tok&en"] and not any(t.name == "listing-pages" for t in threading.enumerate())


def split_bucket(bucket, monkeypatch):
    """6 prefixes of 4 keys, listed a key a page: the rest after page 2 ("p0/k1") is split by prefix."""
    client, name = bucket
    for prefix in range(6):
        for index in range(4):
            client.put_object(Bucket=name, Key="p%d/k%d" % (prefix, index), Body=b"")
    monkeypatch.setattr(split_listing, "MIN_PARTS", 2)
    return name, ["p%d/k%d" % (prefix, index) for prefix in range(6) for index in range(4)]


def listing_threads():
    return [t for t in threading.enumerate() if t.name.startswith(("listing-pages", "listing-parts"))]


def test_list_objects_when_the_server_ignores_start_after_hands_no_key_on_twice(bucket, monkeypatch):
    name, keys = split_bucket(bucket, monkeypatch)
    request = fast_transport.Transport.request
    ignored = []

    def ignoring(self, method, bucket_name, key=None, query=None, **kwargs):
        if query and query.pop("start-after", None):
            ignored.append(query.get("prefix"))
        return request(self, method, bucket_name, key, query, **kwargs)

    monkeypatch.setattr(fast_transport.Transport, "request", ignoring)
    assert [item[0] for item in transport().list_objects(name, page_size=1)] == keys
    assert ignored == ["p0/"] and not listing_threads()


def test_list_objects_when_a_part_fails_hands_on_the_keys_before_it_then_raises_it(bucket, monkeypatch):
    name, keys = split_bucket(bucket, monkeypatch)
    request = fast_transport.Transport.request

    def failing(self, method, bucket_name, key=None, query=None, **kwargs):
        if query and query.get("prefix") == "p3/":
            raise RatBackupError("listing the prefix p3/ failed")
        return request(self, method, bucket_name, key, query, **kwargs)

    monkeypatch.setattr(fast_transport.Transport, "request", failing)
    got = []
    with pytest.raises(RatBackupError, match="listing the prefix p3/ failed"):
        for item in transport().list_objects(name, page_size=1):
            got.append(item[0])
    assert got == keys[:12] and not listing_threads()


def test_list_objects_when_split_and_the_reader_stops_early_leaves_no_thread(bucket, monkeypatch):
    name, keys = split_bucket(bucket, monkeypatch)
    listed = transport().list_objects(name, page_size=1)
    assert [next(listed)[0] for dummy in range(6)] == keys[:6]
    listed.close()
    assert not listing_threads()


def unordered_server(keys, monkeypatch):
    """Transport.request answering ListObjectsV2 over ``keys`` in the order given (a server that does
    not sort by UTF-8 bytes), with max-keys, continuation-token, prefix, delimiter and start-after (one
    of ``keys``, in their order);
    the queries it was asked, in order."""
    asked = []

    def answer(self, method, bucket_name, key=None, query=None, **kwargs):
        asked.append(dict(query))
        under, delimiter = query.get("prefix", ""), query.get("delimiter")
        entries, seen = [], set()
        for name in keys:
            if not name.startswith(under) or ("start-after" in query and keys.index(name) <= keys.index(query["start-after"])):
                continue
            cut = name.find(delimiter, len(under)) if delimiter else -1
            entry = ("prefix", name[:cut + 1]) if cut >= 0 else ("key", name)
            if entry not in seen:
                seen.add(entry)
                entries.append(entry)
        start = int(query.get("continuation-token", "0"))
        size = int(query.get("max-keys", "1000"))
        page, more = entries[start:start + size], start + size < len(entries)
        body = "".join("<Contents><Key>%s</Key><Size>1</Size><ETag>&quot;e&quot;</ETag></Contents>" % name
                       for kind, name in page if kind == "key")
        body += "".join("<CommonPrefixes><Prefix>%s</Prefix></CommonPrefixes>" % name
                        for kind, name in page if kind == "prefix")
        text = ('<ListBucketResult><IsTruncated>%s</IsTruncated>%s%s</ListBucketResult>'
                % ("true" if more else "false", body,
                   "<NextContinuationToken>%d</NextContinuationToken>" % (start + size) if more else ""))
        return fast_transport.Response(200, {}, io.BytesIO(text.encode("utf-8")))

    monkeypatch.setattr(fast_transport.Transport, "request", answer)
    monkeypatch.setattr(split_listing, "MIN_PARTS", 2)
    return asked


@pytest.mark.parametrize("keys", [
    # The first pages themselves out of order: no split is tried.
    ["b/1", "A/1", "a/2", "B/2", "c/1", "C/2", "d/1"],
    # The first pages in order, the prefixes below them not ("a/" before "B/"): no split is made.
    ["a/1", "a/2", "B/1", "b/2", "C/1", "c/2", "d/1"],
    # The first pages and each answer in order, but the key "a" before the prefix "B/", which S3 sorts
    # before it: no split is made (skipped as handed on, "B/" would have its keys dropped).
    ["0/1", "a", "B/1", "B/2", "c/1", "d/1"],
])
def test_list_objects_when_the_server_does_not_list_in_s3_order_reads_one_chain_and_drops_no_key(keys, monkeypatch):
    asked = unordered_server(keys, monkeypatch)
    assert [item[0] for item in transport().list_objects("b", page_size=1)] == keys
    assert not any("start-after" in query for query in asked) and not listing_threads()


def test_list_objects_when_a_server_starts_after_in_its_own_order_fails_naming_the_key(monkeypatch):
    # Without regard to case, "x/B" comes after "x/a", the last key of the first pages; S3's order
    # puts it before, so the part "x/" from "x/a" on must not take it for one handed on already.
    unordered_server(["0/1", "x/a", "x/B", "x/c", "y/1", "z/1"], monkeypatch)
    with pytest.raises(RatBackupError, match=r"listed the key 'x/B' after start-after 'x/a'"):
        list(transport().list_objects("b", page_size=1))
    assert not listing_threads()


def test_get_when_key_needs_quoting_returns_the_bytes_and_headers(bucket):
    client, name = bucket
    for key in KEYS:
        body = os.urandom(300) + key.encode()
        client.put_object(Bucket=name, Key=key, Body=body, ContentType="text/x-test")
        response = transport().get(name, key)
        assert response.read() == body
        assert response.headers["content-type"] == "text/x-test"
        assert response.headers["etag"] == client.head_object(Bucket=name, Key=key)["ETag"]


def test_get_when_range_given_returns_that_part(bucket):
    client, name = bucket
    body = os.urandom(10000)
    client.put_object(Bucket=name, Key="big", Body=body)
    assert transport().get(name, "big", byte_range=(100, 4099)).read() == body[100:4100]


def test_get_when_key_missing_raises_what_s3_translate_reads_as_not_found(bucket):
    _client, name = bucket
    with pytest.raises(s3.sdk_errors()) as caught:
        transport().get(name, "missing")
    assert s3.is_not_found(caught.value)
    error = s3.translate(caught.value, s3.Endpoint(URL), "reading", name, "missing")
    assert "missing" in error.msg and error.details["error_code"] == "NoSuchKey"


def test_get_when_bucket_missing_raises_no_such_bucket(server):
    with pytest.raises(s3.sdk_errors()) as caught:
        list(transport().list_objects("no-such-bucket-here"))
    assert s3.error_code(caught.value) == "NoSuchBucket"


def test_put_when_sha256_matches_stores_body_and_attributes(bucket):
    client, name = bucket
    body = os.urandom(5000)
    headers = transport().put(name, "dir/ünï key", body, hashlib.sha256(body).hexdigest(),
                              {"Content-Type": "application/x-parquet", "x-amz-meta-owner": "rat"})
    head = client.head_object(Bucket=name, Key="dir/ünï key")
    assert client.get_object(Bucket=name, Key="dir/ünï key")["Body"].read() == body
    assert head["ContentType"] == "application/x-parquet" and head["Metadata"] == {"owner": "rat"}
    assert headers["etag"] == head["ETag"]


def test_request_when_wrong_secret_raises_a_credentials_error(bucket):
    _client, name = bucket
    bad = fast_transport.Transport(s3.Endpoint(URL, "k", "wrong"))
    try:
        list(bad.list_objects(name))
    except s3.sdk_errors() as exc:
        # moto accepts any secret unless auth is enforced; then the code must be the credential one.
        assert "the access key or secret key is not accepted" in s3.translate(exc, s3.Endpoint(URL), "listing").msg


def test_request_when_server_closed_idle_connection_reconnects(bucket):
    client, name = bucket
    client.put_object(Bucket=name, Key="k", Body=b"v")
    t = transport()
    assert t.get(name, "k").read() == b"v"
    # moto's server closes after each answer; what a kept-alive connection looks like once the
    # server dropped it while idle:
    stale = socket.socket()
    stale.close()
    t.local.conn.sock = stale
    assert t.get(name, "k").read() == b"v"


def test_request_when_nothing_listens_raises_endpoint_unreachable():
    t = fast_transport.Transport(s3.Endpoint("http://127.0.0.1:9", "k", "s"), attempts=2)
    with pytest.raises(s3.sdk_errors()) as caught:
        t.get("b", "k")
    assert "endpoint unreachable" in s3.translate(caught.value, s3.Endpoint(URL), "reading").msg


def test_transport_when_endpoint_not_a_url_raises():
    with pytest.raises(RatBackupError, match="not an http"):
        fast_transport.Transport(s3.Endpoint("ftp://host", "k", "s"))


def test_transport_when_threads_share_it_each_uses_its_own_connection(bucket):
    client, name = bucket
    for i in range(40):
        client.put_object(Bucket=name, Key="k%d" % i, Body=b"%d" % i)
    t = transport()
    results = {}

    def work(start):
        for i in range(start, 40, 4):
            results[i] = t.get(name, "k%d" % i).read()

    threads = [threading.Thread(target=work, args=(s,)) for s in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert results == {i: b"%d" % i for i in range(40)}


def test_get_object_when_attributes_set_returns_them_as_boto3_does(bucket):
    client, name = bucket
    body = os.urandom(3000)
    client.put_object(Bucket=name, Key="k", Body=body, ContentType="text/csv", CacheControl="no-cache",
                      ContentDisposition="inline", Metadata={"owner": "rat"})
    want = client.get_object(Bucket=name, Key="k")
    got = transport().get_object(name, "k")
    assert b"".join(got["Body"].iter_chunks(1000)) == body
    for field in ("ETag", "ContentLength", "LastModified", "ContentType", "CacheControl", "ContentDisposition",
                  "Metadata"):
        assert got[field] == want[field], field


def test_get_object_when_body_left_unread_next_request_still_answers(bucket):
    client, name = bucket
    client.put_object(Bucket=name, Key="a", Body=os.urandom(100000))
    client.put_object(Bucket=name, Key="b", Body=b"bee")
    t = transport()
    got = t.get_object(name, "a")
    got["Body"].read(10)
    got["Body"].close()
    assert t.get_object(name, "b")["Body"].read() == b"bee"


def test_put_object_when_extra_args_given_stores_them(bucket):
    client, name = bucket
    etag = transport().put_object(name, "k", b"body", hashlib.sha256(b"body").hexdigest(),
                                  {"ContentType": "text/csv", "ContentEncoding": "gzip", "Metadata": {"a": "b"}})
    head = client.head_object(Bucket=name, Key="k")
    assert (head["ETag"], head["ContentType"], head["ContentEncoding"], head["Metadata"]) == (
        etag, "text/csv", "gzip", {"a": "b"})


def test_list_current_returns_quoted_etags_and_datetimes(bucket):
    client, name = bucket
    client.put_object(Bucket=name, Key="k", Body=b"v")
    want = client.list_objects_v2(Bucket=name)["Contents"][0]
    assert list(transport().list_current(name)) == [("k", 1, want["ETag"], want["LastModified"])]


def test_quote_key_when_any_character_writes_what_urllib_quote_writes():
    rnd = random.Random(24)
    alphabet = [chr(c) for c in range(0x80)] + ["é", "ключ", "鍵", "😀", "\u2028", "\ufeff"]
    keys = KEYS + CORPUS + ["".join(rnd.choice(alphabet) for dummy in range(rnd.randint(0, 40))) for dummy in range(2000)]
    for key in keys:
        assert fast_transport.quote_key(key) == urllib.parse.quote(key, safe="/~"), key
    with pytest.raises(UnicodeEncodeError):
        fast_transport.quote_key("lone\udc80surrogate")


def test_get_object_when_objects_share_a_second_returns_each_its_own_last_modified(bucket):
    client, name = bucket
    client.put_object(Bucket=name, Key="a", Body=b"1")
    http = transport()
    first = http.get_object(name, "a")
    first["Body"].read()
    assert first["LastModified"] == client.head_object(Bucket=name, Key="a")["LastModified"]
    wire.header_time.cache_clear()
    for text in ("Mon, 07 Dec 2026 06:38:13 GMT", "Mon, 07 Dec 2026 06:38:14 GMT", "Mon, 07 Dec 2026 06:38:13 GMT"):
        assert wire.header_time(text) == s3.parse_timestamp(text)
    assert wire.header_time.cache_info().hits == 1


def test_quoted_etag_when_bare_adds_quotes_once():
    assert wire.quoted_etag("abc") == '"abc"'
    assert wire.quoted_etag('"abc"') == '"abc"'
    assert wire.quoted_etag(None) is None


PAGE = ('<?xml version="1.0" encoding="UTF-8"?>\n<ListBucketResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/">'
        '<Name>b</Name><KeyCount>2</KeyCount><IsTruncated>{truncated}</IsTruncated>{encoding}'
        '<Contents><Key>{key1}</Key><LastModified>2026-11-27T18:12:41.357Z</LastModified>'
        '<ETag>&quot;abc&quot;</ETag><Size>12</Size><StorageClass>STANDARD</StorageClass></Contents>'
        '<Contents><Key>b%2Fc</Key><LastModified>2026-11-27T18:12:42.000Z</LastModified>'
        '<ETag>&#34;def-2&#34;</ETag><Size>0</Size></Contents>'
        '<NextContinuationToken>tok&amp;en</NextContinuationToken></ListBucketResult>')


def test_listing_items_when_url_encoded_unquotes_keys_and_unescapes_etags():
    text = PAGE.format(truncated="true", encoding="<EncodingType>url</EncodingType>", key1="a%26b%3Cc")
    assert wire.listing_items(text) == [("a&b<c", 12, '"abc"', "2026-11-27T18:12:41.357Z"),
                                        ("b/c", 0, '"def-2"', "2026-11-27T18:12:42.000Z")]
    assert wire.listing_continuation(text) == (True, "tok&en")


def test_listing_items_when_not_url_encoded_keeps_percent_and_unescapes_entities():
    text = PAGE.format(truncated="false", encoding="", key1="a&amp;b")
    assert [item[0] for item in wire.listing_items(text)] == ["a&b", "b%2Fc"]
    assert wire.listing_continuation(text) == (False, "tok&en")


@pytest.mark.parametrize("namespace", ['xmlns="http://s3.amazonaws.com/doc/2006-03-01/"', ""])
def test_listing_prefixes_when_url_encoded_or_not_gives_each_common_prefix_decoded_as_keys_are(namespace):
    page = ('<?xml version="1.0" encoding="UTF-8"?><ListBucketResult %s><Name>b</Name>{encoding}'
            '<Contents><Key>top</Key><Size>1</Size></Contents>'
            '<CommonPrefixes><Prefix>{first}</Prefix></CommonPrefixes>'
            '<CommonPrefixes><Prefix>%%C3%%BCn%%C3%%AF/</Prefix></CommonPrefixes></ListBucketResult>' % namespace)
    quoted = page.format(encoding="<EncodingType>url</EncodingType>", first="sp+ace/")
    assert wire.listing_prefixes(quoted) == ["sp ace/", "ünï/"]
    assert [item[0] for item in wire.listing_items(quoted)] == ["top"]
    assert wire.listing_prefixes(page.format(encoding="", first="sp+ace/")) == ["sp+ace/", "%C3%BCn%C3%AF/"]


def test_listing_items_when_layout_unexpected_falls_back_to_the_element_tree():
    text = PAGE.format(truncated="false", encoding="", key1="k").replace("<KeyCount>2", "<KeyCount>3")
    prefixed = text.replace("<Contents><Key>k</Key>", "<Contents><Key><![CDATA[k]]></Key>")
    for page in (text, prefixed):
        assert [item[0] for item in wire.listing_items(page)] == ["k", "b%2Fc"]


def test_listing_continuation_when_elements_not_plain_reads_the_element_tree():
    text = PAGE.format(truncated="true", encoding="", key1="k")
    spaced = text.replace("<IsTruncated>true</IsTruncated>", "<IsTruncated >true</IsTruncated >")
    assert wire.listing_continuation(spaced) == (True, "tok&en")


def without_namespace(page):
    """``page`` as a server that sends S3's XML without its namespace writes it (botocore reads both)."""
    return page.replace(' xmlns="http://s3.amazonaws.com/doc/2006-03-01/"', "")


def test_listing_items_when_no_namespace_and_layout_unexpected_reads_the_objects_not_an_empty_page():
    text = without_namespace(PAGE.format(truncated="false", encoding="", key1="k").replace("<KeyCount>2", "<KeyCount>3"))
    assert [item[0] for item in wire.listing_items(text)] == ["k", "b%2Fc"]


def test_listing_continuation_when_no_namespace_and_elements_not_plain_still_follows_the_token():
    text = without_namespace(PAGE.format(truncated="true", encoding="", key1="k"))
    spaced = text.replace("<IsTruncated>true</IsTruncated>", "<IsTruncated >true</IsTruncated >")
    assert wire.listing_continuation(spaced) == (True, "tok&en")


def test_listing_continuation_when_token_not_plain_reads_it_with_the_element_tree():
    # The regular expression sees the page truncated but no token it can read: the element tree
    # reads it, as the whole-page fallback did before the continuation was read apart.
    text = PAGE.format(truncated="true", encoding="", key1="k")
    for odd in ("<NextContinuationToken><![CDATA[tok&en]]></NextContinuationToken>",
                "<NextContinuationToken >tok&amp;en</NextContinuationToken>"):
        page = text.replace("<NextContinuationToken>tok&amp;en</NextContinuationToken>", odd)
        assert wire.listing_continuation(page) == (True, "tok&en"), odd


def test_listing_items_when_contents_elements_not_plain_and_no_key_count_reads_the_element_tree():
    text = PAGE.format(truncated="false", encoding="", key1="k").replace("<KeyCount>2</KeyCount>", "")
    for page in (text.replace("<Contents>", "<Contents >"),
                 text.replace(' xmlns="', ' xmlns:s3="').replace("<", "<s3:").replace("<s3:/", "</s3:")
                 .replace("<s3:?xml", "<?xml")):
        assert [item[0] for item in wire.listing_items(page)] == ["k", "b%2Fc"], page
