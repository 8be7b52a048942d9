# -*- coding: utf-8 -*-
# Copyright: rat.backup contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""S3 connection options, boto3 clients with retries, and ``connect``: the one factory of a module's
S3 side (Endpoint, boto3 client, fast transport where it applies). Imported through ``s3``.

The connection options are declared once here and documented once in the ``rat.backup.s3``
doc fragment; modules that talk to two endpoints take them with a ``src_``/``dest_`` prefix.

boto3 is imported only when a client is made, and ``connect`` makes a Side's client at its first
use: importing boto3 and making a client cost 0.3-0.45 s of a module's start, and a module whose
every request the fast transport carries (backup_capture, bucket_mirror S3 -> disk on an endpoint
given by URL) never pays it. ``HAS_BOTO3`` says whether boto3 is installed (found, not imported);
the fast transport raises botocore's exception types, so without boto3 (and its botocore) no S3
call works, on either path.
"""

from __future__ import annotations

import importlib.util
import socket
import threading
import traceback
import urllib.parse
import urllib.request

from ansible_collections.rat.backup.plugins.module_utils.errors import RatBackupError
from ansible_collections.rat.backup.plugins.module_utils._s3 import transport as fast_transport
from ansible_collections.rat.backup.plugins.module_utils._s3.errors import parse_timestamp

HAS_BOTO3 = importlib.util.find_spec("boto3") is not None
BOTO3_IMPORT_ERROR = None if HAS_BOTO3 else "ModuleNotFoundError: No module named 'boto3'"

RETRY_MODES = ("standard", "adaptive", "legacy")

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
    try:
        # Here, not at the top: 0.3 s that a module on the fast path never pays.
        import boto3
        import botocore.config
    except ImportError:
        raise RatBackupError("boto3 is installed but cannot be imported", exception=traceback.format_exc())
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


class LazyClient:
    """A boto3 client made (by ``make()``) at its first use, once, whichever thread uses it first;
    used as the client itself."""

    def __init__(self, make):
        self._make = make
        self._client = None
        self._lock = threading.Lock()

    @property
    def made(self):
        """True once the client exists (boto3 was imported for it)."""
        return self._client is not None

    def __getattr__(self, name):
        # Only names the proxy does not have itself reach here: the client's methods and ``meta``.
        if self._client is None:
            with self._lock:
                if self._client is None:
                    self._client = self._make()
        return getattr(self._client, name)


class Side:
    """One S3 side of a module: its Endpoint, a boto3 client (a LazyClient: made at its first use),
    and the fast transport (None where every request goes through boto3)."""

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
    client = LazyClient(lambda: make_client(endpoint, max_pool_connections=max_pool_connections, **options))
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
    if _environ_proxies(endpoint.url).get(scheme):
        return "a proxy"
    return None


def _environ_proxies(url):
    """The proxies boto3 would use for ``url``: botocore.utils.get_environ_proxies, which is
    urllib's getproxies unless its proxy_bypass (NO_PROXY) matches the URL's host (botocore.utils
    itself costs 0.15 s to import)."""
    try:
        if urllib.request.proxy_bypass(urllib.parse.urlsplit(url).netloc):
            return {}
    except (TypeError, socket.gaierror):
        # As botocore: a host the bypass check cannot resolve is not bypassed.
        pass
    return urllib.request.getproxies()
