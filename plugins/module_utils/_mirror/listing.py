# -*- coding: utf-8 -*-
# Copyright: rat.backup contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""What the S3 side holds: its buckets and the objects to mirror, as Entries."""

from __future__ import annotations

from ansible_collections.rat.backup.plugins.module_utils import consistency, s3, s3_source
from ansible_collections.rat.backup.plugins.module_utils._mirror.model import Entry, to_ms


def buckets(client, endpoint, location, wanted, http=None):
    """The buckets a location names: its one bucket, or those of all of S3 (s3_source.buckets:
    ``wanted``, or all but a restore drill's scratch buckets). ``http``: the side's fast transport, or None."""
    if location.single_bucket:
        return [location.bucket]
    return s3_source.buckets(client, endpoint, wanted, http)


class Lister:
    """Lists the source side: current objects, or the versions chosen by ``as_of``/``use_versions``.

    ``snapshot_window`` ((lo, hi) S3 time of the database snapshot, set once the clocks are compared)
    lists every versioned bucket as of that snapshot.
    """

    def __init__(self, client, endpoint, prefix, key_filter, as_of=None, use_versions=False, http=None):
        self.client = client
        # The fast transport (s3.connect) lists for a fraction of the client's CPU; with it, no
        # request of the Lister goes through boto3 (which is then never imported).
        self.http = http
        self.endpoint = endpoint
        self.prefix = prefix
        self.filter = key_filter
        self.as_of = as_of
        self.use_versions = use_versions
        self.snapshot_window = None

    def pin(self, buckets, point=None, max_clock_skew=0.0, fail_on_best_effort=False):
        """({bucket: versioned}, the consistency record or None). With a consistency ``point`` the
        clock skew is measured (refused over ``max_clock_skew``) and, for a dump's snapshot, every
        versioned bucket is listed as of it from then on."""
        versioning = {b: s3.is_versioned(self.client, self.endpoint, b, self.http) for b in buckets}
        if fail_on_best_effort:
            consistency.refuse_best_effort(versioning)
        if not point or not buckets:
            return versioning, None
        s3_offset = consistency.measure_date_offset(
            lambda: consistency.date_header_epoch(s3.server_date(self.client, self.endpoint, buckets[0], self.http)))
        skew = consistency.check_skew(consistency.skew(s3_offset, point["host_offset"]), max_clock_skew)
        if "time_epoch" not in point:
            return versioning, {"clock_skew": [round(skew[0], 6), round(skew[1], 6)], "max_clock_skew": max_clock_skew}
        self.snapshot_window = consistency.window(point, skew)
        return versioning, consistency.describe(point, skew, self.snapshot_window, max_clock_skew, versioning)

    def entries(self, bucket, versioned):
        """The objects of one bucket to mirror, as Entries without relpath, in key order."""
        for key, size, etag, version, modified in self.listed(bucket, versioned):
            yield Entry(bucket, key, size, etag, version, to_ms(modified))

    def listed(self, bucket, versioned):
        """(key, size, ETag, version id, LastModified) of the objects of one bucket to mirror, in key order."""
        if versioned and self.snapshot_window is not None:
            return self._versions(bucket, self.snapshot_window)
        if self.as_of is not None:
            return self._versions(bucket, (self.as_of.timestamp(),) * 2)
        if versioned and self.use_versions:
            return self._versions(bucket, None)
        return self._current(bucket)

    def _current(self, bucket):
        if self.http is not None:
            for key, size, etag, modified in self.http.list_current(bucket, self.prefix):
                if self.filter(key):
                    yield key, size, etag, None, modified
            return
        for o in s3.list_objects(self.client, self.endpoint, bucket, self.prefix):
            if self.filter(o["Key"]):
                yield o["Key"], o["Size"], o.get("ETag"), None, o["LastModified"]

    def still_listed(self, bucket, key):
        """True when a fresh listing of the key's directory (its prefix up to the last "/") still
        holds ``key``. The directory, not the key as prefix: a key this client mis-names is then
        mis-named again and found, rather than "confirmed" gone by the server's exact match."""
        directory = key[:key.rfind("/") + 1]
        wanted = key.encode("utf-8")
        if self.http is not None:
            listed = (item[0] for item in self.http.list_current(bucket, directory))
        else:
            listed = (o["Key"] for o in s3.list_objects(self.client, self.endpoint, bucket, directory))
        for name in listed:
            if name == key:
                return True
            if name.encode("utf-8") > wanted:
                # Listings are in UTF-8 byte order: the key would have come by now.
                return False
        return False

    def _versions(self, bucket, bounds):
        """Each key's version as of ``bounds`` (consistency.choose; None = the latest), streamed in key order."""
        pages = s3.version_pages(self.client, self.endpoint, bucket, self.prefix, self.http)
        for key, item in consistency.as_of(pages, bounds):
            if self.filter(key):
                version = item.get("VersionId")
                yield key, item["Size"], item.get("ETag"), None if version in (None, "null") else version, \
                    item["LastModified"]


def dest_objects(client, endpoint, bucket, prefix):
    """{key: (size, etag)} of a destination bucket; empty when it does not exist yet."""
    return {key: (size, etag) for key, size, etag, dummy in dest_listing(client, endpoint, bucket, prefix)}


def dest_listing(client, endpoint, bucket, prefix):
    """(key, size, etag, LastModified in ms or None) of a destination bucket in key order; nothing when
    it does not exist yet."""
    for o in s3.list_objects(client, endpoint, bucket, prefix, missing_ok=True):
        modified = o.get("LastModified")
        yield o["Key"], o["Size"], o.get("ETag"), None if modified is None else to_ms(modified)
