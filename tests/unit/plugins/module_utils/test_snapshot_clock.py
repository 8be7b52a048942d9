# -*- coding: utf-8 -*-
# Copyright: rat.backup contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The plan beside S3's clock: while the Date header is sampled (the Date-tick wait) the versioning is
read and unversioned buckets are listed and planned; a versioned bucket's versions are asked for only
once the snapshot's window is known (a page asked earlier could lack versions the rule counts).

Order is proven by events (which request was answered before which), not by wall-clock thresholds: the
fake server's Date answers its second reading only once the test's condition on the listing holds."""

from __future__ import annotations

import datetime
import email.utils
import os
import threading
import time

import pytest

from ansible_collections.rat.backup.plugins.module_utils import consistency, s3
from ansible_collections.rat.backup.plugins.module_utils._mirror import download as mirror_download
from ansible_collections.rat.backup.plugins.module_utils._mirror import listing
from ansible_collections.rat.backup.plugins.module_utils._mirror.model import Filter
from ansible_collections.rat.backup.plugins.module_utils.errors import RatBackupError
# client is a fixture (moto in process), used by name.
from ansible_collections.rat.backup.tests.unit.plugins.module_utils.test_mirror import (  # noqa: F401 pylint: disable=unused-import
    at_apply, bucket, client, download, inodes, tree)

UTC = datetime.timezone.utc
# How long a gated Date reading waits for its condition before answering anyway (the old order, clock
# first and listing after, never meets it: the test then fails on its assertion instead of hanging).
GATE_TIMEOUT = 5.0


def point_at(now, host_offset=(0.0, 0.0)):
    stamp = datetime.datetime.fromtimestamp(now, UTC).isoformat()
    return {"time": stamp, "time_epoch": now, "earliest": stamp, "earliest_epoch": now - 0.001, "obtained": "test",
            "host_offset": list(host_offset)}


def clock_threads():
    return [t for t in threading.enumerate() if t.name == "s3-clock"]


def history(now):
    """Keys in key order, each's items newest first, and {key: version id} as of ``now``: a version
    100 s after ``now`` was written after the snapshot, a delete marker 100 s before it applies."""
    items, expected = [], {}
    for i in range(30):
        n = f"{i:03d}"
        items += [("in/" + n, "v", now - 100, True)]
        expected["in/" + n] = f"in/{n}@{now - 100}"
        items += [("newer/" + n, "v", now + 100, True), ("newer/" + n, "v", now - 100, False)]
        expected["newer/" + n] = f"newer/{n}@{now - 100}"
        items += [("future/" + n, "v", now + 100, True)]
        items += [("gone/" + n, "m", now - 100, True), ("gone/" + n, "v", now - 200, False)]
        items += [("gone-later/" + n, "m", now + 100, True), ("gone-later/" + n, "v", now - 200, False)]
        expected["gone-later/" + n] = f"gone-later/{n}@{now - 200}"
    items.sort(key=lambda item: item[0])
    return items, expected


def pages_of(items, size):
    """ListObjectVersions pages of ``size`` items: a key's versions often run on into the next page."""
    pages = []
    for start in range(0, len(items), size):
        page = {"Versions": [], "DeleteMarkers": [], "IsTruncated": start + size < len(items)}
        for key, kind, stamp, latest in items[start:start + size]:
            item = {"Key": key, "VersionId": f"{key}@{stamp}", "IsLatest": latest,
                    "LastModified": datetime.datetime.fromtimestamp(stamp, UTC)}
            if kind == "v":
                item.update(Size=len(key), ETag='"%032x"' % len(key))
                page["Versions"].append(item)
            else:
                page["DeleteMarkers"].append(item)
        pages.append(page)
    return pages


class FakeServer:
    """The fast transport of one bucket: its versions pages or its current listing, and HeadBucket's
    Date from this host's clock (+ ``ahead`` s). Its second Date reading answers once ``gate(self)``
    is true (or after GATE_TIMEOUT); ``events`` says in which order things happened."""

    def __init__(self, pages=(), current=(), versioned=True, gate=lambda server: True, ahead=0.0):
        self.pages = list(pages)
        self.current = list(current)
        self.versioned = versioned
        self.gate = gate
        self.ahead = ahead
        self.events = []
        self.changed = threading.Condition()

    def _event(self, what):
        with self.changed:
            self.events.append(what)
            self.changed.notify_all()

    def is_versioned(self, bucket):
        return self.versioned

    def version_pages(self, bucket, prefix="", page_size=None):
        for page in self.pages:
            self._event("versions page")
            yield page

    def list_current(self, bucket, prefix="", page_size=None):
        self._event("current page")
        yield from self.current

    def head_bucket(self, bucket):
        if self.events.count("date") == 1:
            with self.changed:
                self.changed.wait_for(lambda: self.gate(self), GATE_TIMEOUT)
        self._event("date")
        date = email.utils.formatdate(time.time() + self.ahead, usegmt=True)
        return {"ResponseMetadata": {"HTTPStatusCode": 200, "HTTPHeaders": {"date": date}}}

    def close(self):
        """The transport's: drops the calling thread's connection."""


def lister_of(server):
    return listing.Lister(None, s3.Endpoint("http://s3.test", "key", "secret"), "", Filter([], [], ""), http=server)


def listed(lister, versioned=True):
    return {key: version for key, size, etag, version, modified in lister.listed("lake", versioned)}


def test_pin_when_bucket_unversioned_then_listed_and_s3_clock_not_asked():
    """Only versioned buckets are captured as of the snapshot: with none, no Date tick is waited for
    (half a second on average) and the record says best-effort at the snapshot, with no skew."""
    modified = datetime.datetime.now(UTC)
    current = [(f"k/{i:02d}", i, '"%032x"' % i, modified) for i in range(5)]
    server = FakeServer(current=current, versioned=False, ahead=30.0)
    lister = lister_of(server)
    point = point_at(time.time())
    try:
        assert lister.pin(["lake"], point, 2.0) == {"lake": False}
        got = listed(lister, versioned=False)
        record = lister.pinned()
    finally:
        lister.close()
    assert "date" not in server.events and lister.clock is None
    assert got == {f"k/{i:02d}": None for i in range(5)}
    assert (record["level"], record["buckets"], record["time"]) == ("best-effort", {"lake": "best-effort"}, point["time"])
    assert not {"clock_skew", "window", "max_clock_skew"} & set(record)
    assert not clock_threads()


def test_pin_when_bucket_versioned_then_no_page_asked_before_the_window_and_versions_are_as_of_it():
    now = time.time()
    items, expected = history(now)
    pages = pages_of(items, 7)
    server = FakeServer(pages)
    lister = lister_of(server)
    try:
        assert lister.pin(["lake"], point_at(now), 2.0) == {"lake": True}
        # Asked for at once: the listing itself waits for S3's clock.
        got = listed(lister)
        record = lister.pinned()
    finally:
        lister.close()
    dates = [i for i, e in enumerate(server.events) if e == "date"]
    assert len(dates) >= 2 and server.events.index("versions page") > dates[-1]
    assert server.events.count("versions page") == len(pages)
    assert got == expected
    assert got == {key: item["VersionId"] for key, item in consistency.as_of(pages, lister.clock.window)}
    assert record["level"] == "snapshot" and record["window"] == [consistency.iso_epoch(b) for b in lister.clock.window]
    assert not clock_threads()


def test_pin_when_skew_over_bound_then_listing_raises_it_and_asks_for_no_version():
    now = time.time()
    items, dummy = history(now)
    server = FakeServer(pages_of(items, 7), ahead=30.0)
    lister = lister_of(server)
    chosen = []
    try:
        lister.pin(["lake"], point_at(now), 2.0)
        with pytest.raises(RatBackupError, match=r"^the S3 server's clock differs from PostgreSQL's by between \+29\."):
            for entry in lister.listed("lake", True):
                chosen.append(entry)
        with pytest.raises(RatBackupError, match="more than the allowed 2.0 s"):
            lister.pinned()
    finally:
        lister.close()
    assert chosen == [] and "versions page" not in server.events and not clock_threads()


def test_settled_when_clock_measuring_then_false_until_measured_within_the_bound():
    released = threading.Event()
    server = FakeServer(gate=lambda s: released.is_set())
    lister = lister_of(server)
    try:
        lister.pin(["lake"], point_at(time.time()), 2.0)
        # The second Date reading is held: the measurement cannot have ended.
        assert not lister.clock.done.is_set() and not lister.clock.settled() and not lister.settled()
        with server.changed:
            released.set()
            server.changed.notify_all()
        lister.clock.skew()
        assert lister.clock.settled() and lister.settled()
    finally:
        lister.close()


def test_settled_when_skew_over_bound_then_false_once_measured():
    server = FakeServer(ahead=30.0)
    lister = lister_of(server)
    try:
        lister.pin(["lake"], point_at(time.time()), 2.0)
        lister.clock.done.wait()
        assert not lister.clock.settled() and not lister.settled()
        with pytest.raises(RatBackupError, match="more than the allowed 2.0 s"):
            lister.clock.skew()
    finally:
        lister.close()


def test_settled_when_nothing_to_measure_then_true():
    server = FakeServer(versioned=False, ahead=30.0)
    pinned, unpinned = lister_of(server), lister_of(server)
    pinned.pin(["lake"], point_at(time.time()), 2.0)
    assert pinned.clock is None and pinned.settled() and unpinned.settled()
    assert "date" not in server.events


def test_pin_when_fail_on_best_effort_refuses_then_the_clock_is_stopped():
    server = FakeServer(versioned=False, gate=lambda s: False)
    lister = lister_of(server)
    with pytest.raises(RatBackupError, match="lake are not versioned"):
        lister.pin(["lake"], point_at(time.time()), 2.0, fail_on_best_effort=True)
    assert not clock_threads()


def test_download_when_snapshot_pinned_then_unversioned_listed_during_clock_wait_versioned_after_threads_joined(
        client, tmp_path, monkeypatch):
    # "a-plain" sorts first: the plan reaches it while S3's clock is still being measured.
    bucket(client, "a-plain", {"p": b"1"})
    bucket(client, "lake", {f"k/{i:02d}": b"v1-%d" % i for i in range(12)}, versioned=True)
    point = point_at(time.time())
    time.sleep(2.5)
    client.put_object(Bucket="lake", Key="k/00", Body=b"v2")
    client.put_object(Bucket="lake", Key="new", Body=b"n")
    events = []
    plain_listed = threading.Event()
    version_pages, list_objects = s3.version_pages, s3.list_objects

    def pages(*args, **kwargs):
        events.append("versions asked")
        yield from version_pages(*args, **kwargs)

    def objects(*args, **kwargs):
        for item in list_objects(*args, **kwargs):
            plain_listed.set()
            yield item

    def server_date(client, endpoint, bucket, http=None):
        # moto's in-process mock sends no Date header: this host's clock, its second reading
        # answered only once the unversioned bucket has been listed.
        if events.count("date") == 1:
            events.append("plain listed" if plain_listed.wait(GATE_TIMEOUT) else "plain not listed")
        events.append("date")
        return {"ResponseMetadata": {"HTTPHeaders": {"date": email.utils.formatdate(time.time(), usegmt=True)}}}

    at_apply = []
    apply = mirror_download.Download.apply

    def recorded_apply(self):
        at_apply.extend(t.name for t in threading.enumerate() if t is not threading.current_thread())
        return apply(self)

    monkeypatch.setattr(s3, "version_pages", pages)
    monkeypatch.setattr(s3, "list_objects", objects)
    monkeypatch.setattr(s3, "server_date", server_date)
    monkeypatch.setattr(mirror_download.Download, "apply", recorded_apply)
    result = download(client, tmp_path / "m", consistency_point=point, max_clock_skew=2.0)
    assert events[1] == "plain listed"
    # The versioned bucket was asked for once the clock was known: no Date reading after it.
    assert events.index("versions asked") == len(events) - 1 and events.count("date") >= 2
    assert tree(tmp_path / "m") == {**{f"lake/k/{i:02d}": b"v1-%d" % i for i in range(12)}, "a-plain/p": b"1"}
    assert result["consistency"]["buckets"] == {"a-plain": "best-effort", "lake": "snapshot"}
    # Nothing of the clock's measurement nor of the listing runs when the workers are forked.
    assert "s3-clock" not in at_apply and "read-ahead" not in at_apply


def two_buckets_backup(client, first):
    """"a-plain" (unversioned, sorts first: planned while S3's clock is measured) and "lake" (versioned),
    mirrored to ``first``/minio, its manifest where link_dest's is looked for."""
    bucket(client, "a-plain", {"p": b"1", "q/r": b"2"})
    bucket(client, "lake", {f"k/{i:02d}": b"v1-%d" % i for i in range(3)}, versioned=True)
    download(client, first / "minio", manifest=str(first / "manifest.json"), use_versions=True)
    # The objects' LastModified seconds are over before the point (moto stamps whole seconds).
    time.sleep(1.1)
    return first / "minio"


def server_date_after(monkeypatch, ready=None, ahead=0.0):
    """moto's in-process mock sends no Date header: this host's clock (+ ``ahead`` s), its second
    reading answered once ``ready`` is set (or after GATE_TIMEOUT) when given."""
    readings = []

    def server_date(client, endpoint, bucket, http=None):
        if ready is not None and len(readings) == 1:
            ready.wait(GATE_TIMEOUT)
        readings.append(time.time())
        return {"ResponseMetadata": {"HTTPHeaders": {"date": email.utils.formatdate(time.time() + ahead, usegmt=True)}}}

    monkeypatch.setattr(s3, "server_date", server_date)


def test_download_when_s3_clock_still_measured_then_links_left_to_apply_until_it_is_known(client, tmp_path, monkeypatch):
    link_dest = two_buckets_backup(client, tmp_path / "b1")
    point = point_at(time.time())
    # The clock's second Date reading waits until the plan has asked whether it may link (a-plain's objects).
    asked_unsettled = threading.Event()
    settled = listing.Lister.settled

    def recorded_settled(self):
        answer = settled(self)
        if not answer:
            asked_unsettled.set()
        return answer

    monkeypatch.setattr(listing.Lister, "settled", recorded_settled)
    server_date_after(monkeypatch, asked_unsettled)
    dest = tmp_path / "b2" / "minio"
    seen = at_apply(monkeypatch, dest)
    result = download(client, dest, manifest=str(tmp_path / "b2" / "minio.json"), consistency_point=point,
                      max_clock_skew=2.0, link_dest=str(link_dest))
    assert asked_unsettled.is_set()
    links = inodes(link_dest)
    # The versioned bucket is listed once the clock is known: its links made by the plan; a-plain's
    # were decided before and left to apply.
    assert seen == [{relpath: ino for relpath, ino in links.items() if relpath.startswith("lake/")}]
    assert inodes(dest) == links and result["linked"] == len(links) == 5
    assert result["consistency"]["buckets"] == {"a-plain": "best-effort", "lake": "snapshot"}


def test_download_when_s3_clock_over_the_bound_then_fails_with_nothing_linked(client, tmp_path, monkeypatch):
    link_dest = two_buckets_backup(client, tmp_path / "b1")
    point = point_at(time.time())
    server_date_after(monkeypatch, ahead=30.0)
    current = listing.Lister._current

    def after_the_clock(self, bucket):
        # a-plain planned once the measurement has ended in its error: a link made then would show.
        self.clock.done.wait()
        yield from current(self, bucket)

    monkeypatch.setattr(listing.Lister, "_current", after_the_clock)
    dest = tmp_path / "b2" / "minio"
    with pytest.raises(RatBackupError, match="more than the allowed 2.0 s"):
        download(client, dest, manifest=str(tmp_path / "b2" / "minio.json"), consistency_point=point,
                 max_clock_skew=2.0, link_dest=str(link_dest))
    assert not dest.exists() and not clock_threads()
    assert {os.stat(link_dest / relpath).st_nlink for relpath in inodes(link_dest)} == {1}
