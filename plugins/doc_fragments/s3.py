# -*- coding: utf-8 -*-
# Copyright: rat.backup contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Documentation of the S3 options declared in module_utils/s3.py.

``DOCUMENTATION`` documents the retry and timeout options (``transport_argspec``); ``SRC`` and
``DEST`` the ``src_``/``dest_`` connection options (``connection_argspec("src_")`` ...) of modules
with two sides, ``CONNECTION`` the options without a prefix (``connection_argspec()``), which also
take amazon.aws's names as aliases. ansible-test reads these as literal strings, hence no template between them.
"""

from __future__ import annotations


class ModuleDocFragment:

    DOCUMENTATION = r"""
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

    SRC = r"""
options:
  src_endpoint:
    description:
      - S3 endpoint URL of the source, for example C(http://127.0.0.1:9000) for MinIO.
      - Omit it for AWS S3.
      - Only used when the source is an C(s3://) location.
    type: str
  src_access_key:
    description:
      - Access key of the source.
      - When omitted, boto3's usual credential chain (environment, files) is used.
    type: str
  src_secret_key:
    description:
      - Secret key of the source. Never logged or returned.
    type: str
  src_session_token:
    description:
      - Session token of temporary credentials (STS) for the source, with O(src_access_key) and
        O(src_secret_key). Never logged or returned.
    type: str
  src_region:
    description:
      - Region of the source.
    type: str
    default: us-east-1
  src_validate_certs:
    description:
      - Whether to verify the TLS certificate of the source.
    type: bool
    default: true
  src_ca_bundle:
    description:
      - CA bundle (PEM file) to verify the TLS certificate of the source with.
    type: path
"""

    DEST = r"""
options:
  dest_endpoint:
    description:
      - S3 endpoint URL of the destination, for example C(http://127.0.0.1:9000) for MinIO.
      - Omit it for AWS S3.
      - Only used when the destination is an C(s3://) location.
    type: str
  dest_access_key:
    description:
      - Access key of the destination.
      - When omitted, boto3's usual credential chain (environment, files) is used.
    type: str
  dest_secret_key:
    description:
      - Secret key of the destination. Never logged or returned.
    type: str
  dest_session_token:
    description:
      - Session token of temporary credentials (STS) for the destination, with O(dest_access_key) and
        O(dest_secret_key). Never logged or returned.
    type: str
  dest_region:
    description:
      - Region of the destination.
    type: str
    default: us-east-1
  dest_validate_certs:
    description:
      - Whether to verify the TLS certificate of the destination.
    type: bool
    default: true
  dest_ca_bundle:
    description:
      - CA bundle (PEM file) to verify the TLS certificate of the destination with.
    type: path
"""

    CONNECTION = r"""
options:
  endpoint:
    description:
      - S3 endpoint URL, for example C(http://127.0.0.1:9000) for MinIO. Omit it for AWS S3.
    type: str
    aliases: [endpoint_url]
  access_key:
    description:
      - Access key. When omitted, boto3's usual credential chain (environment, files) is used.
    type: str
    aliases: [aws_access_key, aws_access_key_id]
  secret_key:
    description:
      - Secret key. Never logged or returned.
    type: str
    aliases: [aws_secret_key, aws_secret_access_key]
  session_token:
    description:
      - Session token of temporary credentials (STS), with O(access_key) and O(secret_key).
        Never logged or returned.
    type: str
    aliases: [aws_session_token]
  region:
    description:
      - Region.
    type: str
    default: us-east-1
    aliases: [aws_region]
  validate_certs:
    description:
      - Whether to verify the endpoint's TLS certificate.
    type: bool
    default: true
  ca_bundle:
    description:
      - CA bundle (PEM file) to verify the endpoint's TLS certificate with.
    type: path
    aliases: [aws_ca_bundle]
"""
