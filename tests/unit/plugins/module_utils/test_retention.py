# -*- coding: utf-8 -*-
# Copyright: rat.backup contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

import datetime

import pytest
from hypothesis import given, settings, strategies as st

from ansible_collections.rat.backup.plugins.module_utils.backup_root import retention
from ansible_collections.rat.backup.plugins.module_utils.errors import RatBackupError

UTC = datetime.timezone.utc
NOW = datetime.datetime(2026, 11, 27, 12, 30, 0, tzinfo=UTC)  # a Friday


def at(text):
    return datetime.datetime.strptime(text, "%Y%m%d_%H%M%S").replace(tzinfo=UTC)


def backups(*names, **flags):
    return [retention.Backup(n, at(n), **flags) for n in names]


def kept(decisions):
    return [d.name for d in decisions if d.keep]


def reasons(decisions):
    return {d.name: d.reason for d in decisions}


def policy(**rules):
    return retention.check_policy(rules)


def test_plan_when_keep_daily_then_newest_of_each_day_kept():
    names = ["202611%02d_%s" % (day, hour) for day in range(20, 28) for hour in ("020000", "140000")]
    decisions = retention.plan(backups(*names), policy(keep_daily=3), NOW)
    assert kept(decisions) == ["20261125_140000", "20261126_140000", "20261127_140000"]
    assert reasons(decisions)["20261127_140000"] == "keep_daily (1/3)"
    assert reasons(decisions)["20261125_140000"] == "keep_daily (3/3)"
    assert reasons(decisions)["20261125_020000"] == "not kept by any rule"


def test_plan_when_fewer_periods_than_count_then_oldest_kept_as_borg_does():
    decisions = retention.plan(backups("20261127_010000", "20261127_020000", "20261126_010000",
                                       "20261126_020000"), policy(keep_daily=5), NOW)
    assert kept(decisions) == ["20261126_010000", "20261126_020000", "20261127_020000"]
    assert reasons(decisions)["20261126_010000"] == "keep_daily [oldest] (3/5)"


def test_plan_when_within_kept_a_period_then_weekly_uses_it_up_without_counting():
    # ISO week 48 starts Monday 2026-11-23. keep_within 2d keeps the 26th and 27th (both week 48);
    # keep_weekly then skips week 48 and keeps the newest of weeks 47 and 46.
    names = ["20261127_000000", "20261126_000000", "20261124_000000", "20261122_000000", "20261117_000000",
             "20261115_000000", "20261110_000000"]
    decisions = retention.plan(backups(*names), policy(keep_within="2d", keep_weekly=2), NOW)
    assert kept(decisions) == ["20261115_000000", "20261122_000000", "20261126_000000", "20261127_000000"]
    assert reasons(decisions)["20261126_000000"] == "keep_within 2d"
    assert reasons(decisions)["20261122_000000"] == "keep_weekly (1/2)"
    assert reasons(decisions)["20261115_000000"] == "keep_weekly (2/2)"


def test_plan_when_keep_within_then_strictly_younger_kept():
    decisions = retention.plan(backups("20261126_123000", "20261126_123001"), policy(keep_within="24h"), NOW)
    assert kept(decisions) == ["20261126_123001"]


def test_plan_when_nothing_matches_then_newest_complete_still_kept():
    decisions = retention.plan(backups("20200101_000000", "20200102_000000"), policy(keep_within="1H"), NOW)
    assert kept(decisions) == ["20200102_000000"]
    assert reasons(decisions)["20200102_000000"] == "newest complete backup (always kept)"


def test_plan_when_newer_backups_incomplete_then_they_do_not_count():
    complete = backups("20261120_000000", "20261121_000000", "20261122_000000")
    broken = backups("20261125_000000", "20261126_000000", "20261127_000000", complete=False)
    decisions = retention.plan(complete + broken, policy(keep_last=2), NOW)
    assert kept(decisions) == ["20261121_000000", "20261122_000000", "20261127_000000"]
    assert reasons(decisions)["20261125_000000"] == "incomplete, older than partial_max_age 1d"
    assert reasons(decisions)["20261127_000000"] == "incomplete, younger than partial_max_age 1d"


def test_plan_when_incomplete_busy_then_kept_whatever_its_age():
    decisions = retention.plan(backups("20200101_000000", complete=False, busy=True), policy(keep_last=1), NOW)
    assert decisions == [retention.Decision("20200101_000000", True, "incomplete, in use by a running backup")]


def test_plan_when_protect_drilled_then_newest_drilled_kept():
    plain = backups("20261101_000000", "20261126_000000", "20261127_000000")
    drilled = backups("20261010_000000", "20261020_000000", drilled=True)
    decisions = retention.plan(plain + drilled, policy(keep_last=1, protect_drilled=1), NOW)
    assert kept(decisions) == ["20261020_000000", "20261127_000000"]
    assert reasons(decisions)["20261020_000000"] == "protect_drilled (1/1): a restore drill passed"


def test_plan_when_same_second_names_then_each_its_own_keep_last_period():
    decisions = retention.plan(backups("20261127_000000", "20261127_000001", "20261127_000002"),
                               policy(keep_last=2), NOW)
    assert kept(decisions) == ["20261127_000001", "20261127_000002"]


def test_plan_when_newest_damaged_then_last_good_kept_and_damaged_not_counted():
    # Issue 27 item 11: keep_last 1 kept a damaged newest backup and deleted the last good one.
    sample = backups("20261125_000000", "20261126_000000") + [
        retention.Backup("20261127_000000", at("20261127_000000"), damaged="its last verify failed")]
    decisions = retention.plan(sample, policy(keep_last=1), NOW)
    assert kept(decisions) == ["20261126_000000", "20261127_000000"]
    assert reasons(decisions)["20261126_000000"] == "keep_last (1/1)"
    assert reasons(decisions)["20261127_000000"].startswith("damaged (its last verify failed), counted by no rule")


def test_plan_when_damaged_older_than_a_good_backup_then_deleted_and_not_counted():
    sample = backups("20261125_000000", "20261127_000000") + [
        retention.Backup("20261126_000000", at("20261126_000000"), damaged="manifest.json is not valid JSON")]
    decisions = retention.plan(sample, policy(keep_last=2), NOW)
    assert kept(decisions) == ["20261125_000000", "20261127_000000"]
    assert reasons(decisions)["20261126_000000"] == "damaged (manifest.json is not valid JSON), counted by no rule"


def test_plan_when_newest_verified_is_older_than_the_rules_reach_then_still_kept():
    sample = [retention.Backup("20261120_000000", at("20261120_000000"), verified=True)] + backups(
        "20261126_000000", "20261127_000000")
    decisions = retention.plan(sample, policy(keep_last=1), NOW)
    assert kept(decisions) == ["20261120_000000", "20261127_000000"]
    assert reasons(decisions)["20261120_000000"] == "newest verified backup (always kept)"


def test_plan_when_empty_then_no_decision():
    assert retention.plan([], policy(keep_last=3), NOW) == []


@pytest.mark.parametrize("bad, words", [
    ({"keep_lats": 3}, "unknown key(s) keep_lats"),
    ({}, "has no keep rule"),
    ({"protect_drilled": 2}, "has no keep rule"),
    ({"keep_last": -1}, "policy.keep_last=-1 is not a count"),
    ({"keep_last": True}, "policy.keep_last=True is not a count"),
    ({"keep_last": "three"}, "policy.keep_last='three' is not a count"),
    ({"keep_within": "30"}, "policy.keep_within='30' is not a duration"),
    ({"keep_within": "0d"}, "policy.keep_within='0d' is not a duration"),
    ({"keep_within": "30x"}, "policy.keep_within='30x' is not a duration"),
    ({"keep_last": 1, "partial_max_age": 5}, "policy.partial_max_age=5 is not a duration"),
    ({"keep_last": 1, "pre_restore": {"partial_max_age": "1d"}}, "policy.pre_restore has unknown key(s)"),
    ({"keep_last": 1, "pre_restore": {}}, "policy.pre_restore has no keep rule"),
    ({"keep_daily": 0}, "policy keeps nothing (keep_daily: 0)"),
    ({"keep_last": 0, "keep_daily": "0", "protect_drilled": 3}, "policy keeps nothing (keep_last: 0, keep_daily: 0)"),
    ({"keep_last": 1, "pre_restore": {"keep_last": 0}}, "policy.pre_restore keeps nothing (keep_last: 0)"),
    ("keep_last=3", "must be a dict"),
])
def test_check_policy_when_bad_then_error_names_key(bad, words):
    with pytest.raises(RatBackupError) as err:
        retention.check_policy(bad)
    assert words in err.value.msg


def test_check_policy_when_good_then_normalized_with_defaults():
    normal = retention.check_policy({"keep_daily": "7", "keep_within": "12h", "keep_weekly": None,
                                     "pre_restore": {"keep_last": 2}})
    assert normal == {"keep_daily": 7, "keep_within": datetime.timedelta(hours=12), "protect_drilled": 0,
                      "partial_max_age": datetime.timedelta(days=1), "pre_restore": {"keep_last": 2}}
    assert retention.describe(normal)["keep_within"] == "12H"
    assert retention.describe(normal)["partial_max_age"] == "1d"


@pytest.mark.parametrize("text, seconds", [("12h", 43200), ("12H", 43200), ("30d", 2592000), ("2w", 1209600),
                                           ("1m", 2678400), ("1y", 31536000)])
def test_parse_duration_when_borg_units_then_seconds(text, seconds):
    assert retention.parse_duration(text, "x").total_seconds() == seconds


# Property-based: random backup sets (up to ~3 years, some incomplete or drilled) and policies.
START = datetime.datetime(2024, 1, 1, tzinfo=UTC)
SPAN = int((NOW - START).total_seconds())

backup_sets = st.lists(
    st.tuples(st.integers(0, SPAN), st.booleans(), st.booleans()).map(
        lambda t: (START + datetime.timedelta(seconds=t[0]), t[1] or t[0] % 5 != 0, t[2])),
    max_size=60, unique_by=lambda t: t[0])

counts = st.one_of(st.none(), st.integers(0, 12))
policies = st.fixed_dictionaries({
    "keep_last": counts, "keep_hourly": counts, "keep_daily": counts, "keep_weekly": counts,
    "keep_monthly": counts, "keep_yearly": counts, "protect_drilled": st.one_of(st.none(), st.integers(0, 3)),
    "keep_within": st.one_of(st.none(), st.sampled_from(["1H", "12h", "2d", "30d", "2w", "1m", "1y"])),
    "partial_max_age": st.one_of(st.none(), st.sampled_from(["1H", "1d", "2w"])),
}).filter(lambda p: any(p[k] for k in retention.KEEP_RULES))


def to_backups(items):
    return [retention.Backup(t.strftime("%Y%m%d_%H%M%S"), t, complete, drilled) for t, complete, drilled in items]


@settings(max_examples=300, deadline=None)
@given(items=backup_sets, rules=policies)
def test_plan_when_any_set_and_policy_then_invariants_hold(items, rules):
    normal = retention.check_policy(rules)
    sample = to_backups(items)
    decisions = retention.plan(sample, normal, NOW)
    by_name = {d.name: d for d in decisions}
    # One decision per backup, each with a reason.
    assert sorted(by_name) == sorted(b.name for b in sample) and all(d.reason for d in decisions)
    complete = sorted((b for b in sample if b.complete), key=lambda b: b.time)
    if complete:
        assert by_name[complete[-1].name].keep, "the newest complete backup must stay"
    if normal.get("keep_last"):
        assert all(by_name[b.name].keep for b in complete[-normal["keep_last"]:])
    if normal.get("keep_within"):
        assert all(by_name[b.name].keep for b in complete if b.time > NOW - normal["keep_within"])
    drilled = [b for b in complete if b.drilled][::-1][:normal["protect_drilled"]]
    assert all(by_name[b.name].keep for b in drilled)
    # Incomplete backups never change what happens to complete ones.
    alone = retention.plan([b for b in sample if b.complete], normal, NOW)
    assert alone == [d for d in decisions if d.name in {b.name for b in complete}]
    # A second run at the same moment deletes nothing.
    survivors = [b for b in sample if by_name[b.name].keep]
    assert all(d.keep for d in retention.plan(survivors, normal, NOW))


@settings(max_examples=200, deadline=None)
@given(items=backup_sets, rules=policies)
def test_plan_when_keep_last_grows_then_nothing_more_is_deleted(items, rules):
    # A backup kept earlier is skipped by the later rules, which then reach further back: one more
    # for keep_last never costs a backup another rule kept.
    normal = retention.check_policy(dict(rules, keep_last=rules["keep_last"] or 0))
    more = dict(normal, keep_last=normal["keep_last"] + 1)
    sample = to_backups(items)
    fewer = {d.name for d in retention.plan(sample, normal, NOW) if not d.keep}
    assert {d.name for d in retention.plan(sample, more, NOW) if not d.keep} <= fewer
