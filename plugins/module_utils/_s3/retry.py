# -*- coding: utf-8 -*-
# Copyright: rat.backup contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Which answers the fast transport tries again, and how long it waits: botocore's standard retry mode.

Held to botocore.retries.standard: transient errors (the codes below, statuses 500/502/503/504,
dropped connections and timeouts) and throttling codes are retried; the wait before attempt i+1 is
rand(0, 1) * min(scale * 2**i, 20 s), scale 1 s after throttling and 50 ms otherwise, raised to an
``x-amz-retry-after`` (ms) the server sends, by at most 5 s. Beyond botocore: a 429 (Too Many
Requests, which S3-compatible servers send without an S3 code) counts as throttling, and an HTTP
``Retry-After`` (seconds) is honoured like ``x-amz-retry-after``. A failed TLS handshake is not
retried (botocore would): a certificate that is not trusted will not be on the next attempt.
"""

from __future__ import annotations

import random

TRANSIENT_CODES = frozenset(("RequestTimeout", "RequestTimeoutException", "PriorRequestNotComplete"))
TRANSIENT_STATUS = frozenset((500, 502, 503, 504))
THROTTLING_CODES = frozenset((
    "Throttling", "ThrottlingException", "ThrottledException", "RequestThrottledException",
    "TooManyRequestsException", "ProvisionedThroughputExceededException", "TransactionInProgressException",
    "RequestLimitExceeded", "BandwidthLimitExceeded", "LimitExceededException", "RequestThrottled",
    "SlowDown", "PriorRequestNotComplete", "EC2ThrottledException",
))
MAX_BACKOFF = 20.0
_THROTTLING_SCALE = 1.0
_TRANSIENT_SCALE = 0.05
_RETRY_AFTER_EXTRA = 5.0


def is_throttling(status, code):
    return code in THROTTLING_CODES or status == 429


def is_retryable(status, code):
    """An error answer worth another attempt (the connection-level failures are, always)."""
    return status in TRANSIENT_STATUS or code in TRANSIENT_CODES or is_throttling(status, code)


def delay(attempt, status=None, code=None, headers=None, rand=random.random):
    """Seconds to wait after attempt ``attempt`` (0-based) failed with this answer (None: no answer)."""
    scale = _THROTTLING_SCALE if is_throttling(status, code) else _TRANSIENT_SCALE
    wait = rand() * min(scale * 2 ** attempt, MAX_BACKOFF)
    asked = _retry_after(headers or {})
    if asked is not None:
        wait = max(wait, min(asked, wait + _RETRY_AFTER_EXTRA))
    return wait


def _retry_after(headers):
    try:
        if "x-amz-retry-after" in headers:
            value = int(headers["x-amz-retry-after"]) / 1000.0
        elif "retry-after" in headers:
            value = float(int(headers["retry-after"]))
        else:
            return None
    except ValueError:
        # An HTTP date or garbage: the backoff alone decides.
        return None
    return value if value >= 0 else None
