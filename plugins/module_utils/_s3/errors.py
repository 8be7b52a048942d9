# -*- coding: utf-8 -*-
# Copyright: rat.backup contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""SDK errors (botocore's, raised by boto3 and by the fast transport alike) as RatBackupError, and S3 timestamps.

Both S3 paths raise botocore's exception types, so one translation names the endpoint, bucket and
key, never a secret, whichever path a request took. ``s3`` is the face that modules import.
"""

from __future__ import annotations

import contextlib
import datetime
import email.utils
from xml.etree import ElementTree

from ansible_collections.rat.backup.plugins.module_utils.errors import RatBackupError

try:
    # botocore.exceptions alone (0.02 s): botocore.utils costs 0.15 s more and is needed only for a
    # timestamp parse_timestamp does not read itself.
    import botocore.exceptions
except ImportError:
    HAS_BOTOCORE = False
else:
    HAS_BOTOCORE = True

# Error codes that mean "these credentials are not accepted", whatever the server calls it.
_CREDENTIAL_CODES = frozenset((
    "InvalidAccessKeyId", "SignatureDoesNotMatch", "InvalidClientTokenId",
    "InvalidToken", "ExpiredToken", "AuthorizationHeaderMalformed",
))
# Answers that say the bucket lives in another region than the one signed for.
_REGION_CODES = frozenset(("AuthorizationHeaderMalformed", "PermanentRedirect", "301", "TemporaryRedirect", "307",
                           "IllegalLocationConstraintException"))


def parse_timestamp(value):
    """Timestamps as S3 sends them (ISO 8601 in XML, RFC 1123 in headers), fast; else botocore's parser."""
    try:
        if value[-1:] == "Z" and "T" in value:
            return datetime.datetime.fromisoformat(value[:-1] + "+00:00")
        return email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        import botocore.utils
        return botocore.utils.parse_timestamp(value)


def error_code(exc):
    if HAS_BOTOCORE and isinstance(exc, botocore.exceptions.ClientError):
        return exc.response.get("Error", {}).get("Code", "")
    return ""


def is_not_found(exc):
    return error_code(exc) in ("404", "NoSuchKey", "NotFound", "NoSuchVersion")


def translate(exc, endpoint, action, bucket=None, key=None):
    """A RatBackupError for an SDK exception, naming endpoint, bucket and key, never a secret."""
    where = _where(endpoint, action, bucket, key)
    details = {"endpoint": endpoint.name, "bucket": bucket, "key": key}
    code = error_code(exc)
    if code:
        message = exc.response.get("Error", {}).get("Message") or code
        region = _other_region(exc, endpoint)
        if code in _REGION_CODES and region:
            hint = f"the bucket is in region {region}, not {endpoint.region}: set the region option to {region}"
        elif code == "NoSuchBucket":
            hint = "the bucket does not exist"
        elif code in _CREDENTIAL_CODES:
            hint = "the access key or secret key is not accepted"
        elif code in ("AccessDenied", "403", "Forbidden"):
            hint = "access denied for this access key"
        else:
            hint = message
        details["error_code"] = code
        return RatBackupError(f"{where} failed: {hint} ({code})", **details)
    if HAS_BOTOCORE and isinstance(exc, botocore.exceptions.SSLError):
        return RatBackupError(f"{where} failed: TLS handshake refused ({exc.kwargs.get('error')}); give the CA of "
                              "the server's certificate as ca_bundle", **details)
    if HAS_BOTOCORE and isinstance(exc, botocore.exceptions.NoCredentialsError):
        return RatBackupError(f"{where} failed: no credentials given", **details)
    if HAS_BOTOCORE and isinstance(exc, (botocore.exceptions.EndpointConnectionError,
                                         botocore.exceptions.ConnectionClosedError,
                                         botocore.exceptions.ReadTimeoutError,
                                         botocore.exceptions.ConnectTimeoutError)):
        return RatBackupError(f"{where} failed: endpoint unreachable or connection dropped ({type(exc).__name__})",
                              **details)
    return RatBackupError(f"{where} failed: {type(exc).__name__}: {exc}", **details)


def _where(endpoint, action, bucket, key):
    where = f"{action} on {endpoint.name}"
    if bucket is not None:
        where += f" bucket {bucket!r}"
    if key is not None:
        where += f" key {key!r}"
    return where


def _other_region(exc, endpoint):
    """The region an error answer names for the bucket (body or x-amz-bucket-region), when not ours."""
    response = exc.response
    region = response.get("Error", {}).get("Region") or \
        (response.get("ResponseMetadata", {}).get("HTTPHeaders") or {}).get("x-amz-bucket-region")
    return region if region and region != endpoint.region else None


def sdk_errors():
    """The exception types ``translate`` understands, for ``except`` clauses."""
    if not HAS_BOTOCORE:
        return (OSError,)
    return (botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError)


@contextlib.contextmanager
def translated(endpoint, action, bucket=None, key=None):
    """SDK calls in this block fail as a RatBackupError naming endpoint, action, bucket and key."""
    try:
        yield
    except sdk_errors() as exc:
        raise translate(exc, endpoint, action, bucket, key)
    except ElementTree.ParseError as exc:
        # An answer the fast transport cannot read (botocore raises its ResponseParserError, which
        # is none of its SDK errors, and the module would end in a traceback).
        raise RatBackupError(f"{_where(endpoint, action, bucket, key)} failed: the server's answer is not "
                             f"well-formed XML ({exc})", endpoint=endpoint.name, bucket=bucket, key=key)
