# -*- coding: utf-8 -*-
# Copyright: rat.backup contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""S3 GET, PUT, listings and the bucket reads a backup starts with, without a boto3 client's
per-request machinery (nor its import: a module on this path never imports boto3).

A boto3 ``get_object`` costs ~2 ms of client CPU (parameter validation, event hooks, a urllib3
pool, response parsing); a 100,000-object lake is then bound by the client's one core. Here
``sigv4`` signs (as botocore would, with the day's key cached) and each thread sends on its own
kept-alive ``http1`` connection, reading the few headers it needs. Errors become the same
botocore exceptions a client raises, so ``s3.translate`` and the retry rules treat both paths
alike. Used for endpoints given by URL (MinIO, any S3-compatible server, AWS by its URL).
"""

from __future__ import annotations

import base64
import hashlib
import os
import http.client
import re
import socket
import ssl
import threading
import time
import urllib.parse
import weakref

from ansible_collections.rat.backup.plugins.module_utils.errors import RatBackupError
from ansible_collections.rat.backup.plugins.module_utils import read_ahead
from ansible_collections.rat.backup.plugins.module_utils._s3 import errors
from ansible_collections.rat.backup.plugins.module_utils._s3 import http1
from ansible_collections.rat.backup.plugins.module_utils._s3 import pipeline
from ansible_collections.rat.backup.plugins.module_utils._s3 import retry
from ansible_collections.rat.backup.plugins.module_utils._s3 import sigv4
from ansible_collections.rat.backup.plugins.module_utils._s3 import split_listing
from ansible_collections.rat.backup.plugins.module_utils._s3 import wire

try:
    import botocore.exceptions
except ImportError:
    # s3.HAS_BOTO3 tells the module; nothing here runs without botocore.
    pass

UNSIGNED = "UNSIGNED-PAYLOAD"
EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()
# Object attributes as boto3 names them and as HTTP sends them.
_ATTRIBUTES = (("ContentType", "content-type"), ("CacheControl", "cache-control"),
               ("ContentEncoding", "content-encoding"), ("ContentDisposition", "content-disposition"))
_META = "x-amz-meta-"
# A metadata name is an HTTP token; values are sent as latin-1 text without control characters.
_TOKEN = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
# What urllib.parse.quote(key, safe="/~") leaves as it is; a run of anything else is %-encoded
# as UTF-8 bytes, as quote does, at a quarter of its cost (the lake's "dt=..." keys).
_UNQUOTED = re.compile(r"[^A-Za-z0-9_.~/-]+")


def _listing_query(query, prefix, page_size):
    """``query`` with what every listing here asks: keys URL-encoded, under ``prefix``, at most
    ``page_size`` a page (the server's default without it)."""
    query["encoding-type"] = "url"
    if prefix:
        query["prefix"] = prefix
    if page_size:
        query["max-keys"] = str(page_size)
    return query


class Response:
    """Status, the headers S3 sends in lower case, and the body still to read from ``raw``."""

    __slots__ = ("status", "headers", "raw")

    def __init__(self, status, headers, raw):
        self.status = status
        self.headers = headers
        self.raw = raw

    def read(self, amount=None):
        return self.raw.read(amount)


class Transport:
    """Signed requests to one endpoint, one connection per calling thread."""

    def __init__(self, endpoint, connect_timeout=10, read_timeout=60, attempts=5):
        parts = urllib.parse.urlsplit(endpoint.url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise RatBackupError(f"endpoint {endpoint.url!r} is not an http(s):// URL", endpoint=endpoint.url)
        self.endpoint = endpoint
        self.origin = f"{parts.scheme}://{parts.netloc}"
        self.base = parts.path.rstrip("/")
        self.host, self.port = parts.hostname, parts.port or (443 if parts.scheme == "https" else 80)
        self.host_header = sigv4.host_header(self.host, self.port, parts.scheme)
        self.context = None
        if parts.scheme == "https":
            self.context = ssl.create_default_context(cafile=endpoint.ca_bundle or None)
            if not endpoint.validate_certs:
                self.context.check_hostname = False
                self.context.verify_mode = ssl.CERT_NONE
        self.connect_timeout = connect_timeout
        self.read_timeout = read_timeout
        self.attempts = max(1, attempts)
        self.signer = sigv4.Signer(endpoint.access_key, endpoint.secret_key, endpoint.region or "us-east-1",
                                   self.host_header, endpoint.session_token)
        self.local = threading.local()
        # A forked worker must not talk on the connections it inherited: the parent owns them.
        forget = weakref.WeakMethod(self._forget_connections)
        os.register_at_fork(after_in_child=lambda: forget() and forget()())

    def _forget_connections(self):
        self.local = threading.local()

    # --- plumbing -------------------------------------------------------------------------------

    def path(self, bucket, key=None):
        if bucket is None:
            # The service itself (ListBuckets).
            return self.base + "/"
        path = self.base + "/" + urllib.parse.quote(bucket, safe="")
        if key is not None:
            # As botocore quotes keys: only "/" and "~" stay as they are.
            path += "/" + quote_key(key)
        return path

    def target(self, bucket, key=None, query=None):
        """(path, query string) of a request, quoted as sent and as signed."""
        if not query:
            return self.path(bucket, key), ""
        return self.path(bucket, key), urllib.parse.urlencode(sorted(query.items()), quote_via=urllib.parse.quote)

    def _connection(self, fresh=False):
        conn = getattr(self.local, "conn", None)
        if conn is not None and fresh:
            conn.close()
            conn = None
        if conn is None:
            conn = self.local.conn = self._new_connection()
        return conn

    def close(self):
        """Drop the calling thread's connection."""
        conn = getattr(self.local, "conn", None)
        if conn is not None:
            conn.close()
            self.local.conn = None

    def request(self, method, bucket, key=None, query=None, headers=None, body=b"", payload_sha256=None,
                operation="request"):
        """A Response with status 2xx whose body is still to be read; raises botocore errors otherwise.

        ``body`` is bytes (sent again on a retry). A connection the server closed while idle is
        replaced at once; what botocore's standard mode retries (``retry``) is tried ``attempts``
        times in all, with its backoff; a TLS handshake that fails is not tried again. A GET this
        thread ``expect``-ed (a GET, or a PUT of the same body) is answered on its pipeline when it can
        be, else made alone.
        """
        path, query = self.target(bucket, key, query)
        target = path + "?" + query if query else path
        payload_sha256 = payload_sha256 or (UNSIGNED if body else EMPTY_SHA256)
        pipe = getattr(self.local, "pipeline", None)
        slot = pipe.take(method, target) if pipe is not None and (method == "PUT" or not headers) else None
        for attempt in range(self.attempts):
            answer = pipe.answer(slot) if slot is not None and not attempt else None
            try:
                response = Response(*answer) if answer else self._send(
                    method, target, self.signer.sign(method, path, query, headers, payload_sha256), body)
            except botocore.exceptions.SSLError:
                raise
            except botocore.exceptions.BotoCoreError:
                if attempt + 1 == self.attempts:
                    raise
                time.sleep(retry.delay(attempt))
                continue
            if response.status < 300:
                return response
            error = wire.client_error(response.status, response.headers, response.read() or b"", operation)
            code = error.response["Error"]["Code"]
            if not retry.is_retryable(response.status, code) or attempt + 1 == self.attempts:
                raise error
            time.sleep(retry.delay(attempt, response.status, code, response.headers))
        raise AssertionError("unreachable")

    def _send(self, method, path, headers, body):
        for reuse in (True, False):
            conn = self._connection(fresh=not reuse)
            try:
                status, fields, raw = conn.request(method, path, headers, body)
            except socket.timeout as exc:
                self.close()
                raise botocore.exceptions.ReadTimeoutError(endpoint_url=self.origin + path) from exc
            except http1.TLSFailed as exc:
                # Named as boto3 names it (SSLError), and not tried again by request().
                self.close()
                raise botocore.exceptions.SSLError(endpoint_url=self.origin, error=exc) from None
            except (OSError, http.client.HTTPException) as exc:
                # A kept-alive connection the server closed between two requests fails on first use:
                # once more on a new one. On a new connection it is the server, not the idle socket.
                self.close()
                if reuse:
                    continue
                if isinstance(exc, (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError)):
                    raise botocore.exceptions.ConnectionClosedError(endpoint_url=self.origin + path) from exc
                raise botocore.exceptions.EndpointConnectionError(endpoint_url=self.origin + path) from exc
            return Response(status, fields, raw)
        raise AssertionError("unreachable")

    def expect(self, gets=(), puts=()):
        """The requests this thread is about to make, in order: sent ahead on a pipeline connection
        of their own (pipeline.py), each answer read when ``get`` or ``put_object`` asks for it.
        ``gets``: (bucket, key, version id or None, listed quoted ETag, listed size); ``puts``:
        put_object's (bucket, key, body, sha256, extra), only where a PUT sent twice is harmless."""
        pipe = getattr(self.local, "pipeline", None)
        if pipe is None:
            pipe = self.local.pipeline = pipeline.Pipeline(self._new_connection, self._head, _answer_etag,
                                                           self.read_timeout)
        slots = []
        for bucket, key, version_id, etag, size in gets:
            path, query = self.target(bucket, key, {"versionId": version_id} if version_id else None)
            slots.append(pipeline.Slot("GET", path + "?" + query if query else path, path, query, etag, size))
        for bucket, key, body, sha256, extra in puts:
            path = self.path(bucket, key)
            try:
                headers = self._put_headers(bucket, key, body, extra)
            except RatBackupError:
                # Not sent: put_object fails on it with the same message, naming the object.
                continue
            # The ETag of a single PUT's answer is its body's MD5 (sent as Content-MD5 already).
            etag = '"' + base64.b64decode(headers["Content-MD5"]).hex() + '"'
            slots.append(pipeline.Slot("PUT", path, path, "", etag, None, (headers, body, sha256 or UNSIGNED)))
        pipe.expect(slots)

    def _head(self, slot):
        if slot.extra is None:
            return http1.request_head("GET", slot.target, self.host_header,
                                      self.signer.sign("GET", slot.path, slot.query, {}, EMPTY_SHA256))
        headers, body, sha256 = slot.extra
        return http1.request_head("PUT", slot.target, self.host_header,
                                  self.signer.sign("PUT", slot.path, slot.query, headers, sha256), len(body)) + body

    def _new_connection(self):
        return http1.Connection(self.host, self.port, self.host_header, self.context, self.connect_timeout,
                                self.read_timeout)

    # --- S3 operations ------------------------------------------------------------------------

    def get(self, bucket, key, version_id=None, byte_range=None, if_match=None):
        """GET of an object (or ``byte_range`` = (first, last) of it, only while its ETag is
        ``if_match``); read the body from the Response."""
        query = {"versionId": version_id} if version_id else None
        headers = {}
        if byte_range:
            headers["Range"] = f"bytes={byte_range[0]}-{byte_range[1]}"
        if if_match:
            headers["If-Match"] = if_match
        return self.request("GET", bucket, key, query=query, headers=headers, operation="GetObject")

    def put(self, bucket, key, body, sha256, headers=None):
        """PUT of ``body`` (bytes) whose sha256 the server checks; returns the response headers."""
        response = self.request("PUT", bucket, key, headers=headers, body=body, payload_sha256=sha256,
                                operation="PutObject")
        response.read()
        return response.headers

    def get_object(self, bucket, key, version_id=None, byte_range=None, missing_ok=False):
        """GET as ``s3.get_object`` returns it (the keys the mirror reads), Body streaming; None for
        a missing object when ``missing_ok``; failures as RatBackupError."""
        try:
            response = self.get(bucket, key, version_id, byte_range)
        except errors.sdk_errors() as exc:
            if missing_ok and errors.is_not_found(exc):
                return None
            raise errors.translate(exc, self.endpoint, "reading", bucket, key)
        headers = response.headers
        result = {"Body": wire.StreamingBody(response.raw), "ETag": wire.quoted_etag(headers.get("etag")),
                  "Metadata": {k[len(_META):]: v for k, v in headers.items() if k.startswith(_META)}}
        if "content-length" in headers and "chunked" not in headers.get("transfer-encoding", ""):
            # A chunked answer has no length up front (boto3 leaves ContentLength out then too).
            result["ContentLength"] = int(headers["content-length"])
        if headers.get("last-modified"):
            result["LastModified"] = wire.header_time(headers["last-modified"])
        if headers.get("x-amz-version-id"):
            result["VersionId"] = headers["x-amz-version-id"]
        if headers.get("content-range"):
            result["ContentRange"] = headers["content-range"]
        for name, header in _ATTRIBUTES:
            if header in headers:
                result[name] = headers[header]
        return result

    def put_object(self, bucket, key, body, sha256, extra):
        """PUT with boto3's ExtraArgs names (ContentType, ..., Metadata) and the body's Content-MD5
        (as boto3 sends it: a server that checks it refuses a body damaged on the way); returns the
        quoted ETag."""
        headers = self._put_headers(bucket, key, body, extra)
        with errors.translated(self.endpoint, "writing", bucket, key):
            return wire.quoted_etag(self.put(bucket, key, body, sha256, headers).get("etag"))

    def _put_headers(self, bucket, key, body, extra):
        headers = {header: extra[name] for name, header in _ATTRIBUTES if extra.get(name)}
        headers.update((_META + k, v) for k, v in (extra.get("Metadata") or {}).items())
        for name, value in headers.items():
            # Checked before signing: a CR or LF would otherwise reach the Authorization header
            # (SignedHeaders), and no header value may appear in an error.
            if not _TOKEN.fullmatch(name) or _CONTROL.search(value):
                raise RatBackupError(f"writing on {self.endpoint.name} bucket {bucket!r} key {key!r} failed: header "
                                     f"{name!r} has a character HTTP does not allow in its name or value",
                                     endpoint=self.endpoint.name, bucket=bucket, key=key)
        headers["Content-MD5"] = base64.b64encode(hashlib.md5(body).digest()).decode("ascii")
        return headers

    def list_current(self, bucket, prefix="", page_size=None):
        """(key, size, quoted ETag, LastModified datetime) of a bucket's current objects, in key order."""
        with errors.translated(self.endpoint, "listing objects", bucket):
            for key, size, etag, modified in self.list_objects(bucket, prefix, page_size):
                yield key, size, wire.quoted_etag(etag), errors.parse_timestamp(modified)

    def list_objects(self, bucket, prefix="", page_size=None):
        """(key, size, etag, last_modified text) of a bucket's current objects, in the server's order;
        ``page_size`` keys a page at most (the server's default, 1,000, without it).

        Each page is asked for by a thread of its own as soon as the page before it has come, while
        that one is parsed here: the server's time per page hides the parse (on `rclone serve s3`,
        100,000 keys listed in 4.3 s instead of 5.3 s). A listing that goes on past a few pages has
        its rest listed by prefixes at once (split_listing), handed on in the same order. Those
        threads end before this returns or is closed, their connections with them."""
        chunks = read_ahead.ReadAhead(self._listing_chunks(bucket, prefix, page_size), batch=1, depth=2,
                                      name="listing-pages")
        try:
            for chunk in chunks:
                yield from wire.listing_items(chunk) if isinstance(chunk, str) else chunk
        finally:
            chunks.close()

    def _listing_chunks(self, bucket, prefix, page_size):
        """Each page's text in order; once split_listing.SPLIT_AFTER pages came and the listing goes
        on, its rest as lists of items, from its parts listed at once."""
        pages = self._listing_pages(bucket, prefix, page_size)
        first = []
        try:
            for text in pages:
                yield text
                if len(first) == split_listing.SPLIT_AFTER:
                    continue
                first.append(text)
                rest = self._rest_in_parts(bucket, prefix, page_size, first) \
                    if len(first) == split_listing.SPLIT_AFTER else None
                if rest is not None:
                    pages.close()
                    yield from rest
                    return
        finally:
            pages.close()
            self.close()

    def _rest_in_parts(self, bucket, prefix, page_size, first):
        """What follows the pages ``first`` (their texts), read in parts at once (read_ahead.InOrder),
        or None when the listing ends there or does not split. Only after pages in S3's order: the
        parts skip what sorts before their last key as handed on already."""
        truncated, dummy = wire.listing_continuation(first[-1])
        keys = [item[0] for text in first for item in wire.listing_items(text)] if truncated else None
        if not keys or not split_listing.in_order(keys):
            return None
        found = split_listing.parts(lambda under: self._level(bucket, under), prefix, keys)
        if found is None:
            return None
        return read_ahead.InOrder(found, lambda part: self._part_items(bucket, part, page_size),
                                  threads=split_listing.THREADS, window=split_listing.WINDOW, name="listing-parts",
                                  on_exit=self.close)

    def _level(self, bucket, under):
        """(items, prefixes, truncated) of one delimiter page below ``under``."""
        query = _listing_query({"list-type": "2", "delimiter": "/"}, under, None)
        text = self.request("GET", bucket, query=query, operation="ListObjectsV2").read().decode("utf-8")
        return wire.listing_items(text), wire.listing_prefixes(text), wire.listing_continuation(text)[0]

    def _part_items(self, bucket, part, page_size):
        """The items of one split_listing.Part, a list per page."""
        if part.prefix is None:
            yield part.items
            return
        for text in self._listing_pages(bucket, part.prefix, page_size, part.after):
            yield split_listing.checked(wire.listing_items(text), part)

    def _listing_pages(self, bucket, prefix, page_size, start_after=None):
        """The text of each ListObjectsV2 page, asked for on the calling thread's connection."""
        token = None
        while True:
            query = _listing_query({"list-type": "2"}, prefix, page_size)
            if token:
                query["continuation-token"] = token
            elif start_after:
                query["start-after"] = start_after
            text = self.request("GET", bucket, query=query, operation="ListObjectsV2").read().decode("utf-8")
            asked, (truncated, token) = token, wire.listing_continuation(text)
            yield text
            if not truncated:
                return
            if not token:
                raise RatBackupError(f"listing bucket {bucket!r} on {self.endpoint.name}: a truncated page without a "
                                     "continuation token", bucket=bucket)
            if token == asked:
                # The same page again, for ever (botocore's paginator refuses it too).
                raise RatBackupError(f"listing bucket {bucket!r} on {self.endpoint.name}: the server answered a page "
                                     "with the continuation token it was asked with", bucket=bucket)

    def bucket_names(self):
        """The endpoint's bucket names (ListBuckets), as s3.bucket_names."""
        with errors.translated(self.endpoint, "listing buckets"):
            return wire.parse_bucket_names(self.request("GET", None, operation="ListBuckets").read())

    def is_versioned(self, bucket):
        """True when versioning is enabled or suspended on ``bucket`` (GetBucketVersioning), as s3.is_versioned."""
        with errors.translated(self.endpoint, "reading versioning", bucket):
            status = wire.parse_versioning(self.request("GET", bucket, query={"versioning": ""},
                                                        operation="GetBucketVersioning").read())
        return status in ("Enabled", "Suspended")

    def head_bucket(self, bucket):
        """A HeadBucket's answer as boto3 returns it for what is read of it: ResponseMetadata with the
        status and the headers (``Date``: the server's clock, consistency.date_header_epoch)."""
        response = self.request("HEAD", bucket, operation="HeadBucket")
        response.read()
        return {"ResponseMetadata": {"HTTPStatusCode": response.status, "HTTPHeaders": response.headers}}

    def version_pages(self, bucket, prefix="", page_size=None):
        """The ListObjectVersions pages of ``bucket`` under ``prefix`` as boto3's paginator yields them
        (wire.parse_version_page), paged on by key-marker and version-id-marker; ``page_size`` items
        a page at most (the server's default, 1,000, without it). A truncated page that names no
        next marker, or the same markers again, fails (boto3 would stop there, or fail on the repeat)."""
        markers = (None, None)
        with errors.translated(self.endpoint, "listing versions", bucket):
            while True:
                query = _listing_query({"versions": ""}, prefix, page_size)
                if markers[0] is not None:
                    query["key-marker"] = markers[0]
                    if markers[1] is not None:
                        query["version-id-marker"] = markers[1]
                page = wire.parse_version_page(self.request("GET", bucket, query=query,
                                                            operation="ListObjectVersions").read())
                yield page
                if not page.get("IsTruncated"):
                    return
                following = (page.get("NextKeyMarker"), page.get("NextVersionIdMarker"))
                if not following[0] or following == markers:
                    raise RatBackupError(f"listing versions of bucket {bucket!r} on {self.endpoint.name}: a truncated "
                                         f"page without a new key marker ({following[0]!r})", bucket=bucket)
                markers = following


def quote_key(key):
    """``key`` as urllib.parse.quote(key, safe="/~") writes it."""
    return _UNQUOTED.sub(_percent_utf8, key)


def _percent_utf8(match):
    return "".join([f"%{byte:02X}" for byte in match.group().encode("utf-8")])


def _answer_etag(fields):
    return wire.quoted_etag(fields.get("etag"))
