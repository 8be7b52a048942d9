# -*- coding: utf-8 -*-
# Copyright: rat.backup contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

import base64
import hashlib
import io

import pytest
from moto import mock_aws

from ansible_collections.rat.backup.plugins.module_utils import integrity, s3
from ansible_collections.rat.backup.plugins.module_utils._mirror import local_tree
from ansible_collections.rat.backup.plugins.module_utils._mirror.model import Entry

ENDPOINT = s3.Endpoint(None, "key", "secret")
PART = 5 << 20


@pytest.fixture
def client(monkeypatch):
    monkeypatch.delenv("AWS_CA_BUNDLE", raising=False)
    with mock_aws():
        c = s3.make_client(ENDPOINT, retry_max_attempts=1)
        c.create_bucket(Bucket="bkt")
        yield c


def sent_headers(client, operation):
    seen = []
    client.meta.events.register("before-send.s3.%s" % operation, lambda request, **_kw: seen.append(request.headers))
    return seen


def entry_for(data, key="k"):
    return Entry("bkt", key, len(data), sha256=hashlib.sha256(data).hexdigest(), content_type="text/plain")


def put(client, entry, source):
    reader = integrity.HashingReader(source, "s3://bkt/k", entry.size, entry.sha256)
    s3.put_checked(client, ENDPOINT, reader, entry.bucket, entry.key, entry.size, entry.extra_args(), entry.sha256)


def keys(client):
    return [o["Key"] for o in client.list_objects_v2(Bucket="bkt").get("Contents", [])]


def test_put_checked_single_when_bytes_match_then_stored_with_md5_and_sha256_sent(client):
    data = b"restored bytes\n" * 100
    entry = entry_for(data)
    headers = sent_headers(client, "PutObject")
    put(client, entry, io.BytesIO(data))
    assert client.get_object(Bucket="bkt", Key="k")["Body"].read() == data
    assert headers[0]["Content-MD5"] == base64.b64encode(hashlib.md5(data).digest())
    assert headers[0]["x-amz-checksum-sha256"] == base64.b64encode(hashlib.sha256(data).digest())


def test_put_checked_single_when_same_size_other_bytes_then_refused_before_sending(client):
    data = b"restored bytes\n" * 100
    entry = entry_for(data)
    other = b"X" + data[1:]
    with pytest.raises(integrity.Mismatch) as err:
        put(client, entry, io.BytesIO(other))
    assert err.value.msg.startswith("s3://bkt/k changed since it was verified")
    assert keys(client) == []


def test_put_checked_multipart_when_bytes_match_then_complete_with_the_etag_local_tree_predicts(client, monkeypatch, tmp_path):
    monkeypatch.setattr(s3, "PART_SIZE", PART)
    data = bytes(range(256)) * ((2 * PART + 1000) // 256)
    entry = entry_for(data)
    put(client, entry, io.BytesIO(data))
    stored = client.get_object(Bucket="bkt", Key="k")
    assert stored["Body"].read() == data
    assert stored["ContentType"] == "text/plain"
    path = tmp_path / "f"
    path.write_bytes(data)
    assert local_tree.local_digest(str(path)).matches_etag(stored["ETag"])


def test_put_checked_multipart_when_last_part_differs_then_aborted_and_no_object(client, monkeypatch):
    monkeypatch.setattr(s3, "PART_SIZE", PART)
    data = b"a" * (2 * PART + 1000)
    entry = entry_for(data)
    other = data[:-1] + b"b"
    with pytest.raises(integrity.Mismatch):
        put(client, entry, io.BytesIO(other))
    assert keys(client) == []
    assert client.list_multipart_uploads(Bucket="bkt").get("Uploads", []) == []


def test_put_checked_multipart_when_file_shorter_then_aborted_and_no_object(client, monkeypatch):
    monkeypatch.setattr(s3, "PART_SIZE", PART)
    data = b"a" * (PART + 1000)
    entry = entry_for(data)
    with pytest.raises(integrity.Mismatch) as err:
        put(client, entry, io.BytesIO(data[:PART]))
    assert "%d bytes read, %d expected" % (PART, len(data)) in err.value.msg
    assert keys(client) == []
