# -*- coding: utf-8 -*-
# Copyright: rat.backup contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The S3 face: connection options, ``connect`` (a module's boto3 client and fast transport from its
params), SDK errors turned into RatBackupError, and every bucket/object call made through boto3.

The connection options are declared once here and documented once in the ``rat.backup.s3``
doc fragment; modules that talk to two endpoints take them with a ``src_``/``dest_`` prefix.
The fast path (own signer and HTTP/1.1 connection) lives in the private package ``_s3``; only
this file and ``_mirror`` (through the transport ``connect`` hands out) use it.
"""

from __future__ import annotations

import base64
import hashlib
import threading
import traceback

from ansible_collections.rat.backup.plugins.module_utils.errors import RatBackupError
from ansible_collections.rat.backup.plugins.module_utils._s3.errors import (
    error_code, is_not_found, parse_timestamp, sdk_errors, translate, translated)
from ansible_collections.rat.backup.plugins.module_utils._s3 import transport as fast_transport
from ansible_collections.rat.backup.plugins.module_utils._s3.wire import quoted_etag

BOTO3_IMPORT_ERROR = None
try:
    import boto3
    import botocore.config
    import botocore.utils
    from boto3.s3.transfer import TransferConfig
except ImportError:
    BOTO3_IMPORT_ERROR = traceback.format_exc()
    HAS_BOTO3 = False
else:
    HAS_BOTO3 = True

RETRY_MODES = ("standard", "adaptive", "legacy")
# Objects up to PART_SIZE travel in one request; larger ones in parts of this size. The same size
# lets a multipart ETag written by this collection be recomputed from the local file.
PART_SIZE = 16 << 20
DELETE_BATCH = 1000
# Large transfers run one at a time: each already uses several threads, and this bounds memory.
_LARGE = threading.Semaphore(1)

# amazon.aws's names, so a play written for its modules works unchanged. Only the options
# without a prefix take them: a src_/dest_ pair has no amazon.aws counterpart.
_AWS_ALIASES = {
    "endpoint": ["endpoint_url"],
    "access_key": ["aws_access_key", "aws_access_key_id"],
    "secret_key": ["aws_secret_key", "aws_secret_access_key"],
    "session_token": ["aws_session_token"],
    "region": ["aws_region"],
    "ca_bundle": ["aws_ca_bundle"],
}


def connection_argspec(prefix=""):
    """Connection options of one S3 side; ``prefix`` is "", "src_" or "dest_"."""
    spec = {
        prefix + "endpoint": {"type": "str"},
        prefix + "access_key": {"type": "str", "no_log": False},
        prefix + "secret_key": {"type": "str", "no_log": True},
        prefix + "session_token": {"type": "str", "no_log": True},
        prefix + "region": {"type": "str", "default": "us-east-1"},
        prefix + "validate_certs": {"type": "bool", "default": True},
        prefix + "ca_bundle": {"type": "path"},
    }
    if not prefix:
        for name, aliases in _AWS_ALIASES.items():
            spec[name]["aliases"] = list(aliases)
    return spec


def transport_argspec():
    """Retry and timeout options shared by every client a module builds."""
    return {
        "retry_mode": {"type": "str", "default": "standard", "choices": list(RETRY_MODES)},
        "retry_max_attempts": {"type": "int", "default": 5},
        "connect_timeout": {"type": "int", "default": 10},
        "read_timeout": {"type": "int", "default": 60},
    }


def transport_options(params):
    """The transport_argspec options among ``params``, as make_client takes them."""
    return {name: params[name] for name in transport_argspec() if name in params}


class Endpoint:
    """One S3 side: where it is and how to talk to it. ``repr`` never shows the secret."""

    def __init__(self, url=None, access_key=None, secret_key=None, region="us-east-1",
                 validate_certs=True, ca_bundle=None, session_token=None):
        self.url = url
        self.access_key = access_key
        self.secret_key = secret_key
        self.session_token = session_token
        self.region = region
        self.validate_certs = validate_certs
        self.ca_bundle = ca_bundle

    @classmethod
    def from_params(cls, params, prefix=""):
        return cls(
            url=params.get(prefix + "endpoint"),
            access_key=params.get(prefix + "access_key"),
            secret_key=params.get(prefix + "secret_key"),
            region=params.get(prefix + "region") or "us-east-1",
            validate_certs=params.get(prefix + "validate_certs", True),
            ca_bundle=params.get(prefix + "ca_bundle"),
            session_token=params.get(prefix + "session_token"),
        )

    @property
    def name(self):
        return self.url or f"AWS S3 ({self.region})"

    def same_service(self, other):
        """True when a server-side copy between the two sides is possible."""
        return (self.url, self.access_key, self.secret_key, self.session_token, self.region) == (
            other.url, other.access_key, other.secret_key, other.session_token, other.region)

    def __repr__(self):
        return f"Endpoint({self.name!r})"


def make_client(endpoint, retry_mode="standard", retry_max_attempts=5, connect_timeout=10,
                read_timeout=60, max_pool_connections=10):
    """A thread-safe S3 client for ``endpoint``; share it between worker threads."""
    if not HAS_BOTO3:
        raise RatBackupError("boto3 is required to talk to S3", exception=BOTO3_IMPORT_ERROR)
    settings = {
        "region_name": endpoint.region,
        "retries": {"mode": retry_mode, "total_max_attempts": retry_max_attempts},
        "connect_timeout": connect_timeout,
        "read_timeout": read_timeout,
        "max_pool_connections": max_pool_connections,
        # Path-style works with MinIO, moto and AWS alike; virtual hosts need DNS per bucket.
        "s3": {"addressing_style": "path"},
    }
    if "request_checksum_calculation" in botocore.config.Config.OPTION_DEFAULTS:
        # botocore >= 1.36 adds CRC checksums by default; S3-compatible servers vary in support.
        settings["request_checksum_calculation"] = "when_required"
        settings["response_checksum_validation"] = "when_required"
    config = botocore.config.Config(**settings)
    # validate_certs: false turns verification off whatever ca_bundle says, as on the fast path
    # (and as amazon.aws reads the two options).
    verify = (endpoint.ca_bundle or True) if endpoint.validate_certs else False
    session = boto3.session.Session(
        aws_access_key_id=endpoint.access_key,
        aws_secret_access_key=endpoint.secret_key,
        aws_session_token=endpoint.session_token,
        region_name=endpoint.region,
    )
    # botocore parses every LastModified with dateutil, about half the client CPU of a listing.
    session._session.get_component("response_parser_factory").set_parser_defaults(  # pylint: disable=protected-access
        timestamp_parser=parse_timestamp)
    return session.client("s3", endpoint_url=endpoint.url, verify=verify, config=config)


class Side:
    """One S3 side of a module: its Endpoint, a boto3 client, and the fast transport (None where
    every request goes through boto3)."""

    __slots__ = ("endpoint", "client", "fast")

    def __init__(self, endpoint, client, fast):
        self.endpoint = endpoint
        self.client = client
        self.fast = fast


def connect(params, prefix="", fast=False, max_pool_connections=10):
    """The Side a module's ``params`` describe (options with ``prefix``, transport_argspec options
    where the module has them). ``fast``: also a fast transport where ``fast_path_refused`` allows."""
    endpoint = Endpoint.from_params(params, prefix)
    options = transport_options(params)
    client = make_client(endpoint, max_pool_connections=max_pool_connections, **options)
    transport = None
    if fast and not fast_path_refused(endpoint, options.get("retry_mode", "standard")):
        transport = fast_transport.Transport(endpoint, options.get("connect_timeout", 10),
                                             options.get("read_timeout", 60), options.get("retry_max_attempts", 5))
    return Side(endpoint, client, transport)


def fast_path_refused(endpoint, retry_mode="standard"):
    """Why boto3 carries every request of ``endpoint`` (None: the fast transport may).

    The fast transport covers the common case, held to boto3 by the differential tests; the rare
    ones stay with boto3 rather than being written twice: AWS by region (no URL: boto3 resolves
    the endpoint and follows region redirects), credentials from boto3's chain (environment,
    files, instance profile, SSO, web identity, with refresh), a proxy from HTTP(S)_PROXY (no
    NO_PROXY match), and retry modes other than standard (adaptive rate-limits on the client).
    """
    if not endpoint.url:
        return "no endpoint URL"
    if not (endpoint.access_key and endpoint.secret_key):
        return "credentials from boto3's chain"
    if retry_mode != "standard":
        return f"retry_mode {retry_mode}"
    scheme = endpoint.url.partition(":")[0].lower()
    if HAS_BOTO3 and botocore.utils.get_environ_proxies(endpoint.url).get(scheme):
        return "a proxy"
    return None


# --- bucket calls: the only place that calls the SDK's bucket and object operations ------------

def bucket_names(client, endpoint):
    with translated(endpoint, "listing buckets"):
        return [b["Name"] for b in client.list_buckets().get("Buckets", [])]


def bucket_created(client, endpoint, bucket):
    """When the bucket was created (ListBuckets' CreationDate), or None when the listing does not show it."""
    with translated(endpoint, "listing buckets"):
        listed = client.list_buckets().get("Buckets", [])
    return next((b.get("CreationDate") for b in listed if b["Name"] == bucket), None)


def version_attributes(client, endpoint, bucket, key, version_id):
    """What a HEAD of one version says beyond its bytes: user metadata and the HTTP attributes."""
    with translated(endpoint, "reading", bucket, key):
        head = client.head_object(Bucket=bucket, Key=key, VersionId=version_id)
    return {name: head.get(name) for name in ("Metadata", "ContentType", "CacheControl", "ContentDisposition",
                                              "ContentEncoding", "ContentLanguage", "Expires", "WebsiteRedirectLocation")}


def is_versioned(client, endpoint, bucket):
    with translated(endpoint, "reading versioning", bucket):
        status = client.get_bucket_versioning(Bucket=bucket).get("Status")
    return status in ("Enabled", "Suspended")


def bucket_exists(client, endpoint, bucket):
    try:
        client.head_bucket(Bucket=bucket)
    except sdk_errors() as exc:
        if error_code(exc) in ("404", "NoSuchBucket", "NotFound"):
            return False
        raise translate(exc, endpoint, "checking", bucket)
    return True


def create_bucket(client, endpoint, bucket, versioned):
    with translated(endpoint, "creating", bucket):
        request = {"Bucket": bucket}
        if endpoint.region and endpoint.region != "us-east-1":
            request["CreateBucketConfiguration"] = {"LocationConstraint": endpoint.region}
        client.create_bucket(**request)
        if versioned:
            client.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})


def bucket_tags(client, endpoint, bucket):
    """{key: value} of the bucket's tags; {} when it has none (or no longer exists)."""
    try:
        tagging = client.get_bucket_tagging(Bucket=bucket)
    except sdk_errors() as exc:
        if error_code(exc) in ("NoSuchTagSet", "NoSuchBucket", "404"):
            return {}
        raise translate(exc, endpoint, "reading the tags of", bucket)
    return {t["Key"]: t["Value"] for t in tagging.get("TagSet", [])}


def put_bucket_tags(client, endpoint, bucket, tags):
    with translated(endpoint, "tagging", bucket):
        client.put_bucket_tagging(Bucket=bucket, Tagging={"TagSet": [{"Key": k, "Value": v} for k, v in sorted(tags.items())]})


# A server without ListObjectVersions (or a policy denying it) answers with one of these: its buckets
# are unversioned there, and the plain listing names every object.
_NO_VERSIONS_CODES = frozenset(("NotImplemented", "MethodNotAllowed", "AccessDenied", "501", "405"))


def _first_page(client, bucket, versions):
    """Up to DELETE_BATCH objects still in ``bucket`` as delete_objects takes them."""
    if versions:
        page = client.list_object_versions(Bucket=bucket, MaxKeys=DELETE_BATCH)
        return [{"Key": v["Key"], "VersionId": v["VersionId"]}
                for v in page.get("Versions", []) + page.get("DeleteMarkers", [])]
    page = client.list_objects_v2(Bucket=bucket, MaxKeys=DELETE_BATCH)
    return [{"Key": o["Key"]} for o in page.get("Contents", [])]


def delete_bucket(client, endpoint, bucket):
    """Remove every version and delete marker (every object where the server lists no versions),
    then the bucket. False when it did not exist.

    Each round lists from the start again: a listing paged on while its keys are deleted may end
    early (moto answers an empty second page once the first page's keys are gone)."""
    versions = True
    before = None
    try:
        while True:
            try:
                doomed = _first_page(client, bucket, versions)
            except sdk_errors() as exc:
                if not versions or error_code(exc) not in _NO_VERSIONS_CODES:
                    raise
                versions = False
                continue
            if not doomed:
                break
            if doomed == before:
                # Bounded: every round must remove what the previous one listed.
                raise RatBackupError(f"removing bucket {bucket!r} on {endpoint.name}: {doomed[0]['Key']!r} "
                                     "is still listed after its deletion", endpoint=endpoint.name, bucket=bucket)
            before = doomed
            response = client.delete_objects(Bucket=bucket, Delete={"Objects": doomed, "Quiet": True})
            errors = response.get("Errors") or []
            if errors:
                raise RatBackupError(f"removing bucket {bucket!r} on {endpoint.name}: deleting "
                                     f"{errors[0].get('Key')!r} failed ({errors[0].get('Code')})",
                                     endpoint=endpoint.name, bucket=bucket)
        client.delete_bucket(Bucket=bucket)
    except sdk_errors() as exc:
        if error_code(exc) in ("NoSuchBucket", "404"):
            return False
        raise translate(exc, endpoint, "removing", bucket)
    return True


def list_objects(client, endpoint, bucket, prefix="", action="listing objects", missing_ok=False):
    """Every current object of ``bucket`` under ``prefix``, as the listing's dicts (ETag in double
    quotes, as GET answers it, where the server lists it bare: rclone); with ``missing_ok`` a bucket
    that does not exist lists nothing."""
    try:
        for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
            for item in page.get("Contents", ()):
                item["ETag"] = quoted_etag(item.get("ETag"))
                yield item
    except sdk_errors() as exc:
        if missing_ok and error_code(exc) == "NoSuchBucket":
            return
        raise translate(exc, endpoint, action, bucket)


def version_pages(client, endpoint, bucket, prefix=""):
    """The list_object_versions pages of ``bucket`` under ``prefix``, as the server sends them (sorted by key)."""
    with translated(endpoint, "listing versions", bucket):
        yield from client.get_paginator("list_object_versions").paginate(Bucket=bucket, Prefix=prefix)


def server_date(client, endpoint, bucket):
    """The boto3 response of a HeadBucket, whose Date header is the server's clock."""
    with translated(endpoint, "reading the server's clock", bucket):
        return client.head_bucket(Bucket=bucket)


def current_version(client, endpoint, bucket, key):
    """(version id, size) of the key's current version; (None, None) when it is absent or deleted."""
    try:
        head = client.head_object(Bucket=bucket, Key=key)
    except sdk_errors() as exc:
        if is_not_found(exc) or error_code(exc) == "MethodNotAllowed":
            return None, None
        raise translate(exc, endpoint, "reading the current version", bucket, key)
    return head.get("VersionId") or "null", head.get("ContentLength")


def noncurrent_expiry_days(client, endpoint, bucket):
    """Days after which the bucket's lifecycle removes noncurrent versions; None without such a rule."""
    try:
        rules = client.get_bucket_lifecycle_configuration(Bucket=bucket).get("Rules", ())
    except sdk_errors() as exc:
        if error_code(exc) in ("NoSuchLifecycleConfiguration", "NotImplemented"):
            return None
        raise translate(exc, endpoint, "reading the lifecycle", bucket)
    days = [r["NoncurrentVersionExpiration"]["NoncurrentDays"] for r in rules
            if r.get("Status") == "Enabled" and (r.get("NoncurrentVersionExpiration") or {}).get("NoncurrentDays")]
    return min(days) if days else None


def get_object(client, endpoint, bucket, key, version_id=None, missing_ok=False, byte_range=None):
    """The GET response (its Body still to be read; ``byte_range`` = (first, last) of it); None
    for a missing object when ``missing_ok``."""
    request = {"Bucket": bucket, "Key": key}
    if version_id:
        request["VersionId"] = version_id
    if byte_range:
        request["Range"] = f"bytes={byte_range[0]}-{byte_range[1]}"
    try:
        return client.get_object(**request)
    except sdk_errors() as exc:
        if missing_ok and is_not_found(exc):
            return None
        raise translate(exc, endpoint, "reading", bucket, key)


def put_checked(client, endpoint, reader, bucket, key, size, extra_args, sha256=None):
    """Write the ``size`` bytes of ``reader`` (integrity.HashingReader) only if they are the expected ones.

    ``reader.finish()`` raises when they are not: one PUT is then never sent, a multipart upload is
    aborted before CompleteMultipartUpload, so the object never holds them.
    """
    if size <= PART_SIZE:
        _put_single(client, endpoint, reader, bucket, key, size, extra_args, sha256)
    else:
        _put_multipart(client, endpoint, reader, bucket, key, size, extra_args)


def _b64(digest):
    return base64.b64encode(digest).decode("ascii")


def _put_single(client, endpoint, reader, bucket, key, size, extra_args, sha256):
    """Bytes checked before they are sent, with Content-MD5 and the expected SHA-256.

    The server checks those where it can (AWS S3 and MinIO answer BadDigest; moto 5 ignores both),
    so a body damaged on the way is refused there too.
    """
    body = reader.read(size + 1)
    reader.finish()
    extra = dict(extra_args, ContentMD5=_b64(hashlib.md5(body).digest()))
    if sha256:
        extra["ChecksumSHA256"] = _b64(bytes.fromhex(sha256))
    with translated(endpoint, "writing", bucket, key):
        client.put_object(Bucket=bucket, Key=key, Body=body, **extra)


def _put_multipart(client, endpoint, reader, bucket, key, size, extra_args):
    """Parts of PART_SIZE, each with its Content-MD5; completed only when the whole stream matched."""
    with translated(endpoint, "writing", bucket, key):
        upload_id = client.create_multipart_upload(Bucket=bucket, Key=key, **extra_args)["UploadId"]
    try:
        parts = []
        while reader.size < size:
            data = reader.read(min(PART_SIZE, size - reader.size))
            if not data:
                break
            with translated(endpoint, "writing", bucket, key):
                etag = client.upload_part(Bucket=bucket, Key=key, UploadId=upload_id, PartNumber=len(parts) + 1,
                                          Body=data, ContentMD5=_b64(hashlib.md5(data).digest()))["ETag"]
            parts.append({"PartNumber": len(parts) + 1, "ETag": etag})
        reader.finish()
        with translated(endpoint, "writing", bucket, key):
            client.complete_multipart_upload(Bucket=bucket, Key=key, UploadId=upload_id,
                                             MultipartUpload={"Parts": parts})
    except BaseException:
        try:
            client.abort_multipart_upload(Bucket=bucket, Key=key, UploadId=upload_id)
        except sdk_errors():
            # The first error is the one to report; an upload left unaborted is invisible as an object.
            pass
        raise


def copy_object(client, endpoint, source, bucket, key, size):
    """Server-side copy of ``source`` ({Bucket, Key[, VersionId]}) within one endpoint."""
    with translated(endpoint, f"copying {source['Bucket']}/{source['Key']} to", bucket, key):
        if size <= PART_SIZE:
            client.copy_object(CopySource=source, Bucket=bucket, Key=key)
        else:
            with _LARGE:
                client.copy(source, bucket, key, Config=_transfer_config())


def delete_objects(client, endpoint, bucket, keys):
    """Delete ``keys`` of ``bucket`` in batches; fails naming the first key the server refused."""
    for start in range(0, len(keys), DELETE_BATCH):
        batch = keys[start:start + DELETE_BATCH]
        with translated(endpoint, "deleting objects", bucket):
            response = client.delete_objects(
                Bucket=bucket, Delete={"Objects": [{"Key": k} for k in batch], "Quiet": True})
        errors = response.get("Errors") or []
        if errors:
            raise RatBackupError(f"deleting {len(errors)} object(s) in bucket {bucket!r} on {endpoint.name} failed, "
                                 f"first: {errors[0].get('Key')} ({errors[0].get('Code')})",
                                 endpoint=endpoint.name, bucket=bucket)


def list_prefixes(client, endpoint, bucket, prefix):
    """The "directories" right under ``prefix`` (which ends with ``/``), without it and the slash."""
    with translated(endpoint, "listing", bucket):
        for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix, Delimiter="/"):
            for item in page.get("CommonPrefixes", ()):
                yield item["Prefix"][len(prefix):].rstrip("/")


def content_md5(data):
    return base64.b64encode(hashlib.md5(data).digest()).decode("ascii")


def put_bytes(client, endpoint, bucket, key, data, body=None):
    """One request carrying ``data`` with its Content-MD5 (the server refuses damaged bytes); the
    ETag. ``body`` may wrap ``data`` in a file object (a rate limit); it must read back ``data``."""
    with translated(endpoint, "writing", bucket, key):
        return client.put_object(Bucket=bucket, Key=key, Body=data if body is None else body,
                                 ContentMD5=content_md5(data)).get("ETag")


def put_parts(client, endpoint, bucket, key, blocks, before_commit, body=None):
    """A multipart upload of ``blocks`` (bytes, in order, each with its Content-MD5); ETag.

    ``before_commit()`` runs after the last part and may raise: the upload is then aborted and no
    object appears, as on any other failure. ``body(block)`` as in put_bytes.
    """
    upload = None
    try:
        with translated(endpoint, "writing", bucket, key):
            upload = client.create_multipart_upload(Bucket=bucket, Key=key)["UploadId"]
            parts = []
            for number, block in enumerate(blocks, 1):
                answer = client.upload_part(Bucket=bucket, Key=key, UploadId=upload, PartNumber=number,
                                            Body=block if body is None else body(block), ContentMD5=content_md5(block))
                parts.append({"PartNumber": number, "ETag": answer["ETag"]})
            before_commit()
            etag = client.complete_multipart_upload(Bucket=bucket, Key=key, UploadId=upload,
                                                    MultipartUpload={"Parts": parts}).get("ETag")
            upload = None
            return etag
    finally:
        if upload:
            try:
                client.abort_multipart_upload(Bucket=bucket, Key=key, UploadId=upload)
            except sdk_errors():
                pass  # the failure that got us here is the one to report; lifecycle rules clean parts up


def _transfer_config():
    return TransferConfig(multipart_threshold=PART_SIZE, multipart_chunksize=PART_SIZE, max_concurrency=4,
                          use_threads=True)
