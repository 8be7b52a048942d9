# -*- coding: utf-8 -*-
# Copyright: rat.backup contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

import datetime
import email.utils
import os

import pytest

from ansible_collections.rat.backup.plugins.module_utils import consistency
from ansible_collections.rat.backup.plugins.module_utils.errors import RatBackupError

ROLES = os.path.join(os.path.dirname(__file__), "..", "..", "..", "..", "roles")

UTC = datetime.timezone.utc
BASE = 1795804200.0  # a whole second


def at(seconds):
    return datetime.datetime.fromtimestamp(BASE + seconds, UTC)


def whole(seconds):
    """A LastModified as moto and AWS list it: truncated to the second."""
    return at(float(int(seconds)))


def version(key, vid, modified, latest=False):
    return {"Key": key, "VersionId": vid, "LastModified": modified, "IsLatest": latest, "Size": 1, "ETag": '"e"'}


def marker(key, vid, modified, latest=False):
    return {"Key": key, "VersionId": vid, "LastModified": modified, "IsLatest": latest}


def bounds(lo, hi):
    return BASE + lo, BASE + hi


class FakeServer:
    """A server clock ``offset`` seconds ahead of the host's, answering with a whole-second Date."""

    def __init__(self, offset, latency=0.002):
        self.now = 1000.3
        self.offset = offset
        self.latency = latency
        self.reads = 0

    def clock(self):
        return self.now

    def sleep(self, seconds):
        self.now += seconds

    def read_date(self):
        self.reads += 1
        self.now += self.latency / 2
        value = float(int(self.now + self.offset))
        self.now += self.latency / 2
        return value


@pytest.mark.parametrize("offset", [0.0, 0.37, -2.81, 12.999])
def test_measure_date_offset_when_sampled_contains_true_offset_within_target(offset):
    server = FakeServer(offset)
    lo, hi = consistency.measure_date_offset(server.read_date, server.clock, server.sleep)
    assert lo <= offset <= hi
    assert hi - lo <= consistency.TARGET_WIDTH
    assert server.reads <= consistency.MAX_SAMPLES


@pytest.mark.parametrize("phase", [0.0, 0.05, 0.3, 0.55, 0.8, 0.97])
@pytest.mark.parametrize("offset", [0.0, 0.37, -2.81])
def test_measure_date_offset_when_sampled_waits_at_most_for_one_tick(phase, offset):
    """The Date ticks once a second: finding one tick is the whole wait (bisection waited a second per reading)."""
    server = FakeServer(offset, latency=0.01)
    server.now = 1000.0 + phase
    started = server.now
    lo, hi = consistency.measure_date_offset(server.read_date, server.clock, server.sleep)
    assert lo <= offset <= hi and hi - lo <= consistency.TARGET_WIDTH
    assert server.now - started <= consistency.DATE_PRECISION + consistency.TARGET_WIDTH


def test_measure_date_offset_when_clock_steps_raises():
    dates = iter([100.0, 50.0, 50.0, 50.0, 50.0])
    times = iter([100.0, 100.001, 100.5, 100.5, 100.501, 101.0, 101.001] + [101.5] * 20)
    with pytest.raises(RatBackupError, match="stepped"):
        consistency.measure_date_offset(lambda: next(dates), lambda: next(times), lambda s: None)


def test_date_header_epoch_when_header_present_parses_it():
    response = {"ResponseMetadata": {"HTTPHeaders": {"date": "Fri, 27 Nov 2026 18:30:00 GMT"}}}
    assert consistency.date_header_epoch(response) == datetime.datetime(2026, 11, 27, 18, 30, tzinfo=UTC).timestamp()


@pytest.mark.parametrize("headers", [{}, {"date": "soon"}])
def test_date_header_epoch_when_missing_or_bad_raises_naming_date(headers):
    with pytest.raises(RatBackupError, match="Date header"):
        consistency.date_header_epoch({"ResponseMetadata": {"HTTPHeaders": headers}})


def test_skew_when_both_offsets_known_is_their_difference_widened():
    assert consistency.skew((1.0, 1.2), (0.1, 0.15)) == pytest.approx((0.85, 1.1))


def test_check_skew_when_within_bound_returns_interval():
    assert consistency.check_skew((-0.1, 0.3), 1.0) == (-0.1, 0.3)


@pytest.mark.parametrize("interval", [(1.5, 1.7), (-3.0, -2.0), (0.9, 1.1)])
def test_check_skew_when_possibly_over_bound_raises_with_interval(interval):
    with pytest.raises(RatBackupError, match="more than the allowed 1.0 s") as err:
        consistency.check_skew(interval, 1.0)
    assert err.value.details["clock_skew"] == [interval[0], interval[1]]


def test_window_when_skewed_moves_snapshot_onto_s3_clock():
    point = {"earliest_epoch": 100.0, "time_epoch": 100.01}
    assert consistency.window(point, (2.0, 2.1)) == pytest.approx((102.0, 102.11))


def test_choose_when_bounds_none_takes_latest():
    versions = [version("k", "2", whole(5), latest=True), version("k", "1", whole(1))]
    assert consistency.choose(versions, [], None)["VersionId"] == "2"
    assert consistency.choose([version("k", "1", whole(1))], [marker("k", "m", whole(2), latest=True)], None) is None


def test_choose_when_writes_after_window_ignores_them():
    versions = [version("k", "3", whole(12), latest=True), version("k", "2", whole(9)), version("k", "1", whole(3))]
    assert consistency.choose(versions, [], bounds(9.4, 9.6))["VersionId"] == "2"


def test_choose_when_same_second_as_window_takes_newest_of_that_second():
    # A writer overwrote k three times in second 9; the snapshot was at 9.4: the newest of second 9
    # may be a little later than T, never missing what T saw.
    versions = [version("k", "c", whole(9.8), True), version("k", "b", whole(9.5)), version("k", "a", whole(9.1))]
    assert consistency.choose(versions, [], bounds(9.4, 9.41))["VersionId"] == "c"


def test_choose_when_deleted_in_window_second_keeps_object():
    # An expiry in the snapshot's second may come after T; the file may still be referenced at T.
    versions = [version("k", "1", whole(7))]
    markers = [marker("k", "m", whole(9.9), latest=True)]
    assert consistency.choose(versions, markers, bounds(9.4, 9.41))["VersionId"] == "1"


def test_choose_when_deleted_in_second_before_window_is_absent():
    versions = [version("k", "1", whole(7))]
    markers = [marker("k", "m", whole(8.5), latest=True)]
    assert consistency.choose(versions, markers, bounds(9.4, 9.41)) is None


def test_choose_when_marker_has_milliseconds_uses_them():
    versions = [version("k", "1", at(7.0))]
    markers = [marker("k", "m", at(9.39), latest=True)]
    assert consistency.choose(versions, markers, bounds(9.4, 9.41)) is None
    markers = [marker("k", "m", at(9.401), latest=True)]
    assert consistency.choose(versions, markers, bounds(9.4, 9.41))["VersionId"] == "1"


def test_choose_when_marker_and_version_share_a_second_uses_is_latest_else_keeps_object():
    old = version("k", "1", whole(3))
    same_second = version("k", "2", whole(5.7))
    gone = marker("k", "m", whole(5.2), latest=True)
    assert consistency.choose([same_second, old], [gone], bounds(9.4, 9.41)) is None
    later = version("k", "3", whole(12), latest=True)
    gone = marker("k", "m", whole(5.2))
    assert consistency.choose([later, same_second, old], [gone], bounds(9.4, 9.41))["VersionId"] == "2"


def test_choose_when_created_after_window_is_absent():
    assert consistency.choose([version("k", "1", whole(11), True)], [], bounds(9.4, 9.41)) is None


def test_group_versions_when_key_spans_pages_yields_it_once_in_order():
    pages = [
        {"Versions": [version("a", "1", whole(1)), version("b", "2", whole(3))],
         "DeleteMarkers": [marker("a", "m", whole(2))]},
        {"Versions": [version("b", "1", whole(2)), version("c", "1", whole(1))], "DeleteMarkers": []},
    ]
    grouped = list(consistency.group_versions(pages))
    assert [(k, [v["VersionId"] for v in vs], [m["VersionId"] for m in ms]) for k, vs, ms in grouped] == [
        ("a", ["1"], ["m"]), ("b", ["2", "1"], []), ("c", ["1"], [])]


def test_as_of_when_streamed_holds_no_more_than_a_page():
    seen = []

    def pages():
        for n in range(50):
            seen.append(n)
            yield {"Versions": [version("k%03d" % n, "1", whole(1), True)], "DeleteMarkers": []}

    stream = consistency.as_of(pages(), bounds(9.4, 9.41))
    assert next(stream)[0] == "k000"
    assert seen == [0, 1]
    assert [pair[0] for pair in stream] == ["k%03d" % n for n in range(1, 50)]


def test_describe_when_given_point_records_time_skew_and_window():
    point = {"time": "2026-11-27T18:30:00.123456Z", "earliest": "2026-11-27T18:30:00.122Z", "obtained": "pg",
             "time_epoch": BASE, "earliest_epoch": BASE}
    record = consistency.describe(point, (-0.05, 0.15), bounds(-0.05, 0.15), 2.0, {"lake": True})
    assert (record["level"], record["buckets"]) == ("snapshot", {"lake": "snapshot"})
    assert record["clock_skew"] == [-0.05, 0.15]
    assert record["window"] == [consistency.iso_epoch(BASE - 0.05), consistency.iso_epoch(BASE + 0.15)]


def test_describe_when_a_bucket_unversioned_is_best_effort():
    point = {"time": "t", "earliest": "e", "obtained": "pg", "time_epoch": BASE, "earliest_epoch": BASE}
    record = consistency.describe(point, (0, 0), bounds(0, 0), 2.0, {"lake": True, "plain": False})
    assert (record["level"], record["buckets"]["plain"]) == ("best-effort", "best-effort")


def test_refuse_best_effort_when_unversioned_raises_naming_buckets():
    consistency.refuse_best_effort({"lake": True})
    with pytest.raises(RatBackupError, match="plain, zz are not versioned"):
        consistency.refuse_best_effort({"lake": True, "zz": False, "plain": False})


def read_header_date(server):
    """A Date header's value as the server sends it, read back as consistency reads it."""
    response = {"ResponseMetadata": {"HTTPHeaders": {"date": email.utils.formatdate(server.read_date(), usegmt=True)}}}
    return consistency.date_header_epoch(response)


def test_skew_when_s3_ahead_of_postgres_measures_difference_and_refuses_over_bound():
    server = FakeServer(5.3)
    point = {"host_offset": [0.999, 1.001]}  # PostgreSQL one second ahead of this host
    offset = consistency.measure_date_offset(lambda: read_header_date(server), server.clock, server.sleep)
    lo, hi = consistency.check_skew(consistency.skew(offset, point["host_offset"]), 10.0)
    assert lo <= 4.3 <= hi and hi - lo < 0.3
    with pytest.raises(RatBackupError, match="more than the allowed 2.0 s"):
        consistency.check_skew(consistency.skew(offset, point["host_offset"]), 2.0)


def _found(node, name):
    """The value of the first ``name`` key anywhere in a loaded YAML tree, or None."""
    if isinstance(node, dict):
        if name in node:
            return node[name]
        node = list(node.values())
    if isinstance(node, list):
        for item in node:
            got = _found(item, name)
            if got is not None:
                return got
    return None


def test_record_argspec_when_describe_and_the_capture_fill_a_record_then_backup_run_takes_every_key():
    # backup_run refuses a key its consistency option does not declare, and the doc fragment documents
    # the same: the record describe() writes and the run's facts backup_capture adds to it
    # (capture.consistency_record) must all be declared.
    from ansible_collections.rat.backup.plugins.module_utils import capture
    described = consistency.describe({"time": "t", "earliest": "e", "obtained": "o"}, (0, 0), (0.0, 1.0), 2.0,
                                     {"lake": True})
    record = capture.consistency_record({"use_versions": True, "quiesce_before": ["true"]},
                                        {"consistency": described, "changed_during": [{"key": "a"}],
                                         "dump": {"snapshot": "00000003-0000001B-1"}})
    declared = set(consistency.record_argspec())
    assert {"use_versions", "quiesced", "changed_during", "dump_snapshot"} <= set(record)
    assert sorted(set(record) - declared) == []
