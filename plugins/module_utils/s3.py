# -*- coding: utf-8 -*-
# Copyright: rat.backup contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The S3 face: connection options and ``connect`` (a module's boto3 client and fast transport from
its params; defined in ``_s3/client.py``), SDK errors turned into RatBackupError, and every
bucket/object call made through boto3 (the few a backup starts with take the side's fast transport
as ``http`` and go through it where the side has one).

The fast path (own signer and HTTP/1.1 connection) lives in the private package ``_s3``; only
this file and ``_mirror`` (through the transport ``connect`` hands out) use it.
"""

from __future__ import annotations

import base64
import hashlib
import threading

from ansible_collections.rat.backup.plugins.module_utils.errors import RatBackupError
from ansible_collections.rat.backup.plugins.module_utils._s3.errors import (  # pylint: disable=unused-import
    error_code, is_not_found, parse_timestamp, sdk_errors, translate, translated)
# The face's names for connecting (modules call s3.connect, s3.connection_argspec, ...); the
# definitions live in _s3/client.py.
from ansible_collections.rat.backup.plugins.module_utils._s3.client import (  # pylint: disable=unused-import
    BOTO3_IMPORT_ERROR, HAS_BOTO3, RETRY_MODES, Endpoint, Side, connect, connection_argspec, fast_path_refused,
    make_client, transport_argspec, transport_options)
from ansible_collections.rat.backup.plugins.module_utils._s3.wire import quoted_etag

# Objects up to PART_SIZE travel in one request; larger ones in parts of this size. The same size
# lets a multipart ETag written by this collection be recomputed from the local file.
PART_SIZE = 16 << 20
DELETE_BATCH = 1000
# Large transfers run one at a time: each already uses several threads, and this bounds memory.
_LARGE = threading.Semaphore(1)


# --- bucket calls: the only place that calls the SDK's bucket and object operations ------------

def bucket_names(client, endpoint, http=None):
    """The endpoint's bucket names; through the fast transport ``http`` where the side has one."""
    if http is not None:
        return http.bucket_names()
    with translated(endpoint, "listing buckets"):
        return [b["Name"] for b in client.list_buckets().get("Buckets", [])]


def bucket_created(client, endpoint, bucket):
    """When the bucket was created (ListBuckets' CreationDate), or None when the listing does not show it."""
    with translated(endpoint, "listing buckets"):
        listed = client.list_buckets().get("Buckets", [])
    return next((b.get("CreationDate") for b in listed if b["Name"] == bucket), None)


def object_attributes(client, endpoint, bucket, key, version_id=None):
    """What a HEAD of one object (the current version, or ``version_id``) says beyond its bytes: user
    metadata and the HTTP attributes."""
    with translated(endpoint, "reading", bucket, key):
        head = client.head_object(Bucket=bucket, Key=key, **({"VersionId": version_id} if version_id else {}))
    return {name: head.get(name) for name in ("Metadata", "ContentType", "CacheControl", "ContentDisposition",
                                              "ContentEncoding", "ContentLanguage", "Expires", "WebsiteRedirectLocation")}


def is_versioned(client, endpoint, bucket, http=None):
    if http is not None:
        return http.is_versioned(bucket)
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


def version_pages(client, endpoint, bucket, prefix="", http=None):
    """The list_object_versions pages of ``bucket`` under ``prefix``, as the server sends them (sorted by key)."""
    if http is not None:
        yield from http.version_pages(bucket, prefix)
        return
    with translated(endpoint, "listing versions", bucket):
        yield from client.get_paginator("list_object_versions").paginate(Bucket=bucket, Prefix=prefix)


def server_date(client, endpoint, bucket, http=None):
    """The (boto3) response of a HeadBucket, whose Date header is the server's clock."""
    with translated(endpoint, "reading the server's clock", bucket):
        return http.head_bucket(bucket) if http is not None else client.head_bucket(Bucket=bucket)


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
    # Imported here: boto3 only where a client is made (see _s3/client.py).
    from boto3.s3.transfer import TransferConfig
    return TransferConfig(multipart_threshold=PART_SIZE, multipart_chunksize=PART_SIZE, max_concurrency=4,
                          use_threads=True)
