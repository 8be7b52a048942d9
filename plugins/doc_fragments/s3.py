# -*- coding: utf-8 -*-
# Copyright: rat.backup contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Documentation of the S3 connection options declared in module_utils/s3.py.

``DOCUMENTATION`` documents the unprefixed options (one endpoint); ``SRC`` and ``DEST`` the
``src_``/``dest_`` options of modules with two sides; ``TRANSPORT`` the retry and timeout
options. Each matches ``connection_argspec``/``transport_argspec`` one to one.
"""

from __future__ import annotations


def _connection(prefix, side):
    return r"""
options:
  {p}endpoint:
    description:
      - S3 endpoint URL of {side}, for example C(http://127.0.0.1:9000) for MinIO.
      - Omit it for AWS S3.
      - Only used when {side} is an C(s3://) location.
    type: str
  {p}access_key:
    description:
      - Access key of {side}.
      - When omitted, boto3's usual credential chain (environment, files) is used.
    type: str
  {p}secret_key:
    description:
      - Secret key of {side}. Never logged or returned.
    type: str
  {p}region:
    description:
      - Region of {side}.
    type: str
    default: us-east-1
  {p}validate_certs:
    description:
      - Whether to verify the TLS certificate of {side}.
    type: bool
    default: true
  {p}ca_bundle:
    description:
      - CA bundle (PEM file) to verify the TLS certificate of {side} with.
    type: path
""".format(p=prefix, side=side)


class ModuleDocFragment:

    DOCUMENTATION = _connection("", "the S3 endpoint")

    SRC = _connection("src_", "the source")

    DEST = _connection("dest_", "the destination")

    TRANSPORT = r"""
options:
  retry_mode:
    description:
      - botocore retry mode for every S3 request; C(adaptive) also rate-limits the client when
        the server throttles.
      - Retries cover throttling, 5xx answers and dropped connections.
    type: str
    default: standard
    choices: [standard, adaptive, legacy]
  retry_max_attempts:
    description:
      - Attempts per request (first try included). A download whose body breaks off midway is
        fetched again from the start up to this many times.
    type: int
    default: 5
  connect_timeout:
    description:
      - Seconds to wait for a TCP connection to an endpoint.
    type: int
    default: 10
  read_timeout:
    description:
      - Seconds to wait for data on an open connection before the request is retried.
    type: int
    default: 60
"""
