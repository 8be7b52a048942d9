# -*- coding: utf-8 -*-
# Copyright: rat.backup contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The two ends of a mirror as S3 sees them: per side its Endpoint, boto3 client and fast transport
(``s3.connect``; None where the side is a local directory or has no endpoint URL), and the calls
every direction makes on them: the checked upload, destination deletes, the source's buckets."""

from __future__ import annotations

from ansible_collections.rat.backup.plugins.module_utils import s3


class Sides:
    """Connections of one run. ``connect_dest`` makes a boto3 client for the destination when a
    worker process needs its own (an upload too large for one PUT, after ``forget_dest_client``)."""

    def __init__(self, src_endpoint, dest_endpoint, src_client=None, dest_client=None, src_http=None, dest_http=None,
                 connect_dest=None):
        self.src_endpoint = src_endpoint
        self.dest_endpoint = dest_endpoint
        self.src_client = src_client
        self.dest_client = dest_client
        # Fast transports for endpoints given by URL: listings, GETs and single-request PUTs go
        # through them (a boto3 call costs several times their CPU per object).
        self.src_http = src_http
        self.dest_http = dest_http
        self._connect_dest = connect_dest

    @classmethod
    def from_params(cls, params, src_client=None, dest_client=None, src_http=None, dest_http=None):
        return cls(s3.Endpoint.from_params(params, "src_"), s3.Endpoint.from_params(params, "dest_"),
                   src_client, dest_client, src_http, dest_http,
                   connect_dest=lambda: s3.connect(params, "dest_").client)

    def put_checked(self, reader, bucket, key, size, sha256, extra_args):
        """Every upload of a mirror: sent (or completed) only once ``reader`` proved its bytes.

        ``reader`` is an integrity.HashingReader over the source of the object; ``sha256`` (the
        expected one, or None) also goes to the server, which rejects a body that differs from it.
        """
        if self.dest_http is not None and size <= s3.PART_SIZE:
            body = reader.read(size)
            self.dest_http.put_object(bucket, key, body, reader.finish(), extra_args)
        else:
            if self.dest_client is None:
                self.dest_client = self._connect_dest()
            s3.put_checked(self.dest_client, self.dest_endpoint, reader, bucket, key, size, extra_args, sha256)

    def forget_dest_client(self):
        """In a worker process: forget the parent's boto3 client (its pooled connections are the
        parent's; two workers on one would mix their requests). put_checked makes one of its
        own only if an upload too large for one PUT needs it (a client costs ~25 MB)."""
        self.dest_client = None

    def delete_dest(self, labels, counter):
        """Delete ``bucket/key`` labels on the destination S3 side."""
        by_bucket = {}
        for label in labels:
            bucket, dummy, key = label.partition("/")
            by_bucket.setdefault(bucket, []).append(key)
        for bucket, keys in by_bucket.items():
            s3.delete_objects(self.dest_client, self.dest_endpoint, bucket, keys)
            counter.deleted(len(keys))
