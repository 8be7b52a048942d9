# -*- coding: utf-8 -*-
# Copyright: rat.backup contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""sigv4 held to botocore's S3SigV4Auth: the same request at the same second gets the same Authorization."""

from __future__ import annotations

import datetime
import hashlib

import pytest

botocore_auth = pytest.importorskip("botocore.auth")
from botocore.awsrequest import AWSRequest  # noqa: E402
from botocore.credentials import Credentials  # noqa: E402

from ansible_collections.rat.backup.plugins.module_utils import s3  # noqa: E402
from ansible_collections.rat.backup.plugins.module_utils._s3 import transport as fast_transport  # noqa: E402
from ansible_collections.rat.backup.plugins.module_utils._s3 import sigv4  # noqa: E402

NOW = datetime.datetime(2026, 11, 28, 23, 59, 58, tzinfo=datetime.timezone.utc)
BODY = b"parquet bytes"
BODY_SHA256 = hashlib.sha256(BODY).hexdigest()

# (method, bucket, key, query, headers, payload sha256) as Transport sends them.
REQUESTS = [
    ("GET", "lake", "dir/ünïcødé key~1.parquet", {"versionId": "3/L4kqtJl+cbU=.x"},
     {"Range": "bytes=0-16777215", "If-Match": '"0123abcd-2"'}, fast_transport.EMPTY_SHA256),
    ("GET", "lake", "a b/c+d=e&f?g#h", None, {}, fast_transport.EMPTY_SHA256),
    ("PUT", "lake", "~tilde/%25percent/ключ", None,
     {"Content-Type": "application/x-parquet", "Content-MD5": "1B2M2Y8AsgTpgAmY7PhCfg==",
      "x-amz-checksum-sha256": "47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=",
      "x-amz-meta-owner": "rat", "X-Amz-Meta-Note": "  two   spaces  ", "Cache-Control": "no-cache"}, BODY_SHA256),
    ("PUT", "lake", "unsigned", None, {"x-amz-meta-a": "b"}, fast_transport.UNSIGNED),
    ("GET", "lake", None, {"list-type": "2", "encoding-type": "url", "prefix": "dir/ünï",
                           "continuation-token": "1/abc+def==&x y~z%"}, {}, fast_transport.EMPTY_SHA256),
]
ENDPOINTS = ["http://127.0.0.1:21150", "https://S3.Example.COM", "https://s3.example.com:8443/base/",
             "http://[::1]:9000", "http://minio"]


def botocore_authorization(transport, method, bucket, key, query, headers, payload, token, monkeypatch):
    """What the code before sigv4 sent: botocore's S3SigV4Auth over an AWSRequest of the same URL."""

    class Signer(botocore_auth.S3SigV4Auth):
        def payload(self, request):
            return payload

    monkeypatch.setattr(botocore_auth, "get_current_datetime", lambda: NOW.replace(tzinfo=None))
    path, query_string = transport.target(bucket, key, query)
    url = transport.origin + path + ("?" + query_string if query_string else "")
    request = AWSRequest(method=method, url=url, headers=dict(headers), data=BODY if method == "PUT" else b"")
    Signer(Credentials("AKIDEXAMPLE", "wJalr/XUtnFEMI+K7MDENG", token), "s3", "eu-central-1").add_auth(request)
    return dict(request.headers.items())


@pytest.mark.parametrize("url", ENDPOINTS)
@pytest.mark.parametrize("token", [None, "FwoGZXIvYXdzE//session+token="])
@pytest.mark.parametrize("case", REQUESTS)
def test_sign_when_request_as_transport_sends_it_matches_botocore(url, token, case, monkeypatch):
    method, bucket, key, query, headers, payload = case
    transport = fast_transport.Transport(s3.Endpoint(url, "AKIDEXAMPLE", "wJalr/XUtnFEMI+K7MDENG", "eu-central-1",
                                                     session_token=token))
    want = botocore_authorization(transport, method, bucket, key, query, headers, payload, token, monkeypatch)
    path, query_string = transport.target(bucket, key, query)
    got = transport.signer.sign(method, path, query_string, headers, payload, now=NOW.timestamp())
    assert got["Authorization"] == want["Authorization"]
    assert {k.lower(): v for k, v in got.items()} == {k.lower(): v for k, v in want.items()}


def test_sign_when_the_day_changes_derives_that_day_key():
    signer = sigv4.Signer("AKID", "secret", "us-east-1", "host")
    first = signer.sign("GET", "/b/k", "", {}, fast_transport.EMPTY_SHA256, now=NOW.timestamp())
    later = signer.sign("GET", "/b/k", "", {}, fast_transport.EMPTY_SHA256, now=NOW.timestamp() + 5)
    fresh = sigv4.Signer("AKID", "secret", "us-east-1", "host")
    assert later == fresh.sign("GET", "/b/k", "", {}, fast_transport.EMPTY_SHA256, now=NOW.timestamp() + 5)
    assert "/20261128/" in first["Authorization"] and "/20261129/" in later["Authorization"]


def test_sign_when_headers_given_leaves_the_callers_dict_alone():
    headers = {"Range": "bytes=0-1"}
    sigv4.Signer("AKID", "secret", "us-east-1", "host").sign("GET", "/b/k", "", headers, fast_transport.EMPTY_SHA256)
    assert headers == {"Range": "bytes=0-1"}


def test_host_header_when_default_port_leaves_it_out():
    assert sigv4.host_header("Example.COM", 443, "https") == "example.com"
    assert sigv4.host_header("example.com", 80, "https") == "example.com:80"
    assert sigv4.host_header("::1", 9000, "http") == "[::1]:9000"
