# -*- coding: utf-8 -*-
# Copyright: rat.backup contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Retention policy engine: which backups to keep, which to delete, and why. Pure: no file system.

The local root (backup_root/prune.py) and the off-site copies both describe their backups as
``Backup`` tuples and act on the ``Decision`` list this returns.

Meaning of the rules (borg / borgmatic ``prune``, periods in UTC because backup names are UTC):
- ``keep_within: 30d`` keeps every backup younger than that (units H or h, d, w, m = 31 days,
  y = 365 days), relative to ``now``.
- ``keep_last: N`` keeps the N newest backups.
- ``keep_hourly|daily|weekly|monthly|yearly: N`` walk the backups newest first and keep the newest
  backup of each hour / day / ISO week / month / year, until N are kept. A period whose newest
  backup an earlier rule already kept is used up without counting. When fewer than N periods
  exist, the oldest backup is kept as well (reason ``[oldest]``), as borg does.
Rules apply in that order; each kept backup names the first rule that kept it.

On top of borg, whatever the policy says:
- only complete, undamaged backups count toward any rule, and the newest of them is always kept, as
  is the newest one whose verification passed (``verified``);
- a damaged backup (``damaged``: its last verify failed, its manifest is unreadable) counts toward
  no rule, so ``keep_last: 1`` never keeps a rotten newest backup in place of the last good one; it
  is kept while it is newer than the newest good backup (it may still hold the newest data) and
  deleted once a good backup is newer;
- ``protect_drilled: N`` keeps the N newest backups a restore drill has passed;
- incomplete backups are deleted only when older than ``partial_max_age`` (default 1d) and not
  ``busy`` (held by a running backup); they never count toward a rule.
"""

from __future__ import annotations

import collections
import datetime
import re

from ansible_collections.rat.backup.plugins.module_utils.errors import RatBackupError

Backup = collections.namedtuple("Backup", "name time complete drilled busy damaged verified",
                                defaults=(True, False, False, None, False))
Backup.__doc__ = ("One backup: name, aware UTC datetime, complete?, passed a restore drill?, in use?, why it is "
                  "damaged (None: it is not), passed its last verification?")

Decision = collections.namedtuple("Decision", "name keep reason")
Decision.__doc__ = "What to do with one backup: keep (bool) and the reason, in words."

# (option, strftime pattern of its period); keep_last gives every backup its own period.
PERIOD_RULES = (
    ("keep_last", None),
    ("keep_hourly", "%Y-%m-%d %H"),
    ("keep_daily", "%Y-%m-%d"),
    ("keep_weekly", "%G-%V"),
    ("keep_monthly", "%Y-%m"),
    ("keep_yearly", "%Y"),
)
KEEP_RULES = ("keep_within",) + tuple(rule for rule, _pattern in PERIOD_RULES)
POLICY_KEYS = KEEP_RULES + ("protect_drilled", "partial_max_age", "pre_restore")
DEFAULT_PARTIAL_MAX_AGE = "1d"

_UNITS = {"H": 3600, "h": 3600, "d": 86400, "w": 7 * 86400, "m": 31 * 86400, "y": 365 * 86400}
_DURATION_RE = re.compile(r"^\s*([0-9]+)\s*([Hhdwmy])\s*$")


def parse_duration(text, option):
    """A borg interval (``30d``, ``12h``, ``2w``) as a timedelta; the error names ``option``."""
    match = _DURATION_RE.match(text) if isinstance(text, str) else None
    if not match or int(match.group(1)) == 0:
        raise RatBackupError(f"{option}={text!r} is not a duration: expected a positive number and a unit, H or h "
                             "(hours), d (days), w (weeks), m (31 days) or y (365 days), e.g. 30d or 12h",
                             option=option)
    return datetime.timedelta(seconds=int(match.group(1)) * _UNITS[match.group(2)])


def _count(value, option):
    if isinstance(value, bool) or not ((isinstance(value, int) and value >= 0)
                                       or (isinstance(value, str) and value.strip().isdigit())):
        raise RatBackupError(f"{option}={value!r} is not a count: expected a whole number >= 0", option=option)
    return int(value)


def check_policy(policy, variable="policy", nested=False):
    """Validate a policy dict and return it normalized (counts as int, durations as timedelta).

    Unknown keys, bad values and a policy with no keep rule are refused, naming ``variable.key``:
    a policy without keep rules would delete every backup but the newest. So is one whose keep rules
    are all zero (``{keep_daily: 0}``): it keeps nothing either, and deletes just as much.
    """
    if not isinstance(policy, dict):
        raise RatBackupError(f"{variable} must be a dict of retention rules ({', '.join(KEEP_RULES)}), got "
                             f"{policy!r}", option=variable)
    allowed = KEEP_RULES if nested else POLICY_KEYS
    unknown = sorted(str(k) for k in policy if k not in allowed)
    if unknown:
        raise RatBackupError(f"{variable} has unknown key(s) {', '.join(unknown)}; allowed: {', '.join(allowed)}",
                             option=variable)
    given = {k: v for k, v in policy.items() if v is not None}
    if not any(k in given for k in KEEP_RULES):
        raise RatBackupError(f"{variable} has no keep rule ({', '.join(KEEP_RULES)}): it would delete every backup "
                             "but the newest", option=variable)
    normal = {}
    for key, value in given.items():
        option = f"{variable}.{key}"
        if key in ("keep_within", "partial_max_age"):
            normal[key] = parse_duration(value, option)
        elif key == "pre_restore":
            normal[key] = check_policy(value, option, nested=True)
        else:
            normal[key] = _count(value, option)
    if not any(normal.get(k) for k in KEEP_RULES):
        zeros = ", ".join(f"{k}: 0" for k in KEEP_RULES if k in normal)
        raise RatBackupError(f"{variable} keeps nothing ({zeros}): every keep rule is zero, so it would delete every "
                             "backup but the newest; give at least one rule a count above 0", option=variable)
    if not nested:
        normal.setdefault("partial_max_age", parse_duration(DEFAULT_PARTIAL_MAX_AGE, variable + ".partial_max_age"))
        normal.setdefault("protect_drilled", 0)
    return normal


def duration_text(delta):
    """A timedelta in the words of parse_duration: whole days as ``<n>d``, else ``<n>H``."""
    seconds = int(delta.total_seconds())
    return f"{seconds // 86400}d" if seconds % 86400 == 0 else f"{seconds // 3600}H"


def describe(policy):
    """A normalized policy back in the words an operator wrote."""
    shown = {}
    for key, value in policy.items():
        if isinstance(value, datetime.timedelta):
            shown[key] = duration_text(value)
        elif isinstance(value, dict):
            shown[key] = describe(value)
        else:
            shown[key] = value
    return shown


def _period_rule(complete, rule, pattern, count, kept):
    """borg's prune_split: the newest backup of each period, newest first, until ``count`` are kept."""
    if count == 0:
        return
    last = None
    found = 0
    backup = None
    for backup in complete:
        period = backup.name if pattern is None else backup.time.strftime(pattern)
        if period == last:
            continue
        last = period
        if backup.name not in kept:
            found += 1
            kept[backup.name] = f"{rule} ({found}/{count})"
            if found == count:
                return
    if backup is not None and backup.name not in kept:
        kept[backup.name] = f"{rule} [oldest] ({found + 1}/{count})"


def plan(backups, policy, now):
    """Decisions for ``backups`` under a normalized ``policy`` (check_policy) at ``now``.

    Returns one Decision per backup, oldest first (by time, then name).
    """
    ordered = sorted(backups, key=lambda b: (b.time, b.name))
    complete = [b for b in reversed(ordered) if b.complete and not b.damaged]  # newest first
    kept = {}
    within = policy.get("keep_within")
    if within is not None:
        for backup in complete:
            if backup.time > now - within:
                kept[backup.name] = f"keep_within {duration_text(within)}"
    for rule, pattern in PERIOD_RULES:
        if policy.get(rule) is not None:
            _period_rule(complete, rule, pattern, policy[rule], kept)
    if complete and complete[0].name not in kept:
        kept[complete[0].name] = "newest complete backup (always kept)"
    verified = next((b for b in complete if b.verified), None)
    if verified is not None:
        kept.setdefault(verified.name, "newest verified backup (always kept)")
    drilled = [b for b in complete if b.drilled][:policy.get("protect_drilled", 0)]
    for number, backup in enumerate(drilled, 1):
        kept.setdefault(backup.name, f"protect_drilled ({number}/{policy['protect_drilled']}): a restore drill passed")
    newest_good = complete[0].time if complete else None
    return [_decide(backup, kept, policy.get("partial_max_age"), now, newest_good) for backup in ordered]


def _decide(backup, kept, max_age, now, newest_good):
    if backup.complete and backup.damaged:
        if newest_good is None or backup.time > newest_good:
            return Decision(backup.name, True, f"damaged ({backup.damaged}), counted by no rule; kept while no good "
                                               "backup is newer")
        return Decision(backup.name, False, f"damaged ({backup.damaged}), counted by no rule")
    if backup.complete:
        reason = kept.get(backup.name)
        return Decision(backup.name, reason is not None, reason or "not kept by any rule")
    if backup.busy:
        return Decision(backup.name, True, "incomplete, in use by a running backup")
    if max_age is None:
        return Decision(backup.name, True, "incomplete, no partial_max_age")
    if backup.time > now - max_age:
        return Decision(backup.name, True, f"incomplete, younger than partial_max_age {duration_text(max_age)}")
    return Decision(backup.name, False, f"incomplete, older than partial_max_age {duration_text(max_age)}")
