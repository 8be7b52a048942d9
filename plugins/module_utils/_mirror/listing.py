# -*- coding: utf-8 -*-
# Copyright: rat.backup contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""What the S3 side holds: its buckets and the objects to mirror, as Entries."""

from __future__ import annotations

import threading

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

    ``pin`` with a dump's consistency point lists every versioned bucket as of that snapshot, once
    S3's clock is known; meanwhile the rest goes on (the versioning reads, unversioned buckets).
    A versioned bucket's pages are asked for only then, as before this overlap: the measurement
    starts after the snapshot and ends at a tick of S3's Date header, so the snapshot's own second
    on S3's clock is over by then (unless the clock was narrowed without a tick) and a page asked
    then holds every version written in it (AWS and moto stamp whole seconds, and the rule counts
    each of them). A page asked during the measurement could lack versions written later in that
    second; a measurement begun before the snapshot would no longer wait out that second.
    """

    def __init__(self, client, endpoint, prefix, key_filter, as_of=None, use_versions=False, http=None,
                 checked=None):
        self.client = client
        # The fast transport (s3.connect) lists for a fraction of the client's CPU; with it, no
        # request of the Lister goes through boto3 (which is then never imported).
        self.http = http
        self.endpoint = endpoint
        self.prefix = prefix
        self.filter = key_filter
        self.as_of = as_of
        self.use_versions = use_versions
        # {bucket: versioned} the run's checks read (s3_source.check): pin() does not ask again.
        self.checked = checked
        self.clock = None
        self.point = None
        self.versioning = None

    def pin(self, buckets, point=None, max_clock_skew=0.0, fail_on_best_effort=False):
        """{bucket: versioned}. With a consistency ``point`` and a versioned bucket, S3's clock starts
        being measured against it, by a thread of its own (``clock``), while the caller lists;
        ``pinned()`` waits for it. ``close()`` ends it: call it before anything forks.

        Only versioned buckets are captured as of the point, so only they need S3's clock: with none
        (a lake served unversioned) the Date tick's wait, half a second on average, is not spent and
        a skewed S3 clock does not fail a backup it could not change."""
        self.versioning = s3_source.versioning(self.client, self.endpoint, buckets, fail_on_best_effort, self.http,
                                               self.checked)
        self.point = point if buckets else None
        versioned = [bucket for bucket in buckets if self.versioning[bucket]]
        if point and versioned:
            http = self.http
            self.clock = SnapshotClock(s3_source.date_reader(self.client, self.endpoint, versioned[0], http),
                                       point, max_clock_skew, hang_up=http.close if http is not None else None)
        return self.versioning

    def pinned(self):
        """The consistency record (None without a point) once S3's clock is measured; raises the
        skew over the bound."""
        if self.clock is None:
            # No versioned bucket: nothing to measure, a dump's snapshot is recorded all the same.
            if self.point and "time_epoch" in self.point:
                return consistency.describe(self.point, None, None, None, self.versioning)
            return None
        skew = self.clock.skew()
        if not self.clock.snapshot:
            return {"clock_skew": [round(skew[0], 6), round(skew[1], 6)], "max_clock_skew": self.clock.max_clock_skew}
        return consistency.describe(self.clock.point, skew, self.clock.window, self.clock.max_clock_skew,
                                    self.versioning)

    def settled(self):
        """True once S3's clock can no longer refuse the run (measured within the bound, or nothing to
        measure): from then on a mirror may write while it still lists."""
        return self.clock is None or self.clock.settled()

    def close(self):
        if self.clock is not None:
            self.clock.close()

    def entries(self, bucket, versioned):
        """The objects of one bucket to mirror, as Entries without relpath, in key order."""
        for key, size, etag, version, modified in self.listed(bucket, versioned):
            yield Entry(bucket, key, size, etag, version, to_ms(modified))

    def listed(self, bucket, versioned):
        """(key, size, ETag, version id, LastModified) of the objects of one bucket to mirror, in key order."""
        if versioned and self.clock is not None and self.clock.snapshot:
            return self._versions(bucket, None, self.clock)
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

    def _versions(self, bucket, bounds, clock=None):
        """Each key's version as of ``bounds`` (consistency.choose; None = the latest), streamed in key
        order; with a SnapshotClock, as of its window: no page is asked for before it is known."""
        if clock is not None:
            clock.skew()
            bounds = clock.window
        pages = s3.version_pages(self.client, self.endpoint, bucket, self.prefix, self.http)
        for key, item in consistency.as_of(pages, bounds):
            if self.filter(key):
                version = item.get("VersionId")
                yield key, item["Size"], item.get("ETag"), None if version in (None, "null") else version, \
                    item["LastModified"]


class _Stopped(Exception):
    """The measurement was stopped (close()) before it ended."""


class SnapshotClock:
    """S3's clock against the consistency ``point``'s (consistency.measure_date_offset over
    ``read_date()``), measured by a thread of its own: the Date-tick wait (half a second on average)
    no longer comes before what does not depend on it (Lister). ``done`` is set once ``skew()``
    answers without waiting; ``window`` is then the snapshot's (lo, hi) S3 time when ``snapshot``
    (a dump's exported snapshot, not only a clock reading).

    Threads and fork: the thread sends its HeadBuckets on a connection of its own (the transport
    keeps one per thread, dropped by ``hang_up`` when it ends) and takes no lock a forked worker
    could need; ``close()`` ends and joins it all the same, so none of it runs when a mirror forks.
    """

    def __init__(self, read_date, point, max_clock_skew, hang_up=None):
        self.point = point
        self.snapshot = "time_epoch" in point
        self.max_clock_skew = max_clock_skew
        self.window = None
        self.done = threading.Event()
        self._stop = threading.Event()
        self._skew = self._error = None
        self._thread = threading.Thread(target=self._measure, args=(read_date, hang_up), name="s3-clock",
                                        daemon=True)
        self._thread.start()

    def _measure(self, read_date, hang_up):
        try:
            offset = consistency.measure_date_offset(read_date, sleep=self._sleep)
            self._skew = consistency.check_skew(consistency.skew(offset, self.point["host_offset"]),
                                                self.max_clock_skew)
            if self.snapshot:
                self.window = consistency.window(self.point, self._skew)
        except BaseException as exc:  # pylint: disable=broad-except
            # Raised where the skew or the window is asked for.
            self._error = exc
        finally:
            if hang_up is not None:
                hang_up()
            self.done.set()

    def _sleep(self, seconds):
        if self._stop.wait(seconds):
            raise _Stopped()

    def skew(self):
        """(lo, hi) of S3's clock minus PostgreSQL's, once measured; raises the measurement's error
        (the skew over the bound)."""
        self.done.wait()
        if self._error is not None:
            raise self._error
        return self._skew

    def settled(self):
        """Measured, with no error (the skew within the bound); never waits."""
        return self.done.is_set() and self._error is None

    def close(self):
        """Stop the measurement (when still running) and wait for its thread to end."""
        self._stop.set()
        self._thread.join()


def dest_objects(client, endpoint, bucket, prefix):
    """{key: (size, etag)} of a destination bucket; empty when it does not exist yet."""
    return {key: (size, etag) for key, size, etag, dummy in dest_listing(client, endpoint, bucket, prefix)}


def dest_listing(client, endpoint, bucket, prefix):
    """(key, size, etag, LastModified in ms or None) of a destination bucket in key order; nothing when
    it does not exist yet."""
    for o in s3.list_objects(client, endpoint, bucket, prefix, missing_ok=True):
        modified = o.get("LastModified")
        yield o["Key"], o["Size"], o.get("ETag"), None if modified is None else to_ms(modified)
