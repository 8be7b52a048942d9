# -*- coding: utf-8 -*-
# Copyright: rat.backup contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The rest of a long ListObjectsV2 listing, asked for in parts at once and handed on in key order.

One listing is a chain of pages, each asked for with the token of the one before: 100,000 keys
are 100 of the server's turns one after the other, and the server works on one of them at a time.
The keys under different prefixes ("directories") are listings of their own, which can be asked
for at once: all the keys below "a/" start so, so they come next to each other in S3's order
(UTF-8 bytes, which is Python's order of str), and the parts handed on one after the other are the
whole listing in its order. Measured on `rclone serve s3`, 100,000 keys in 10 x 20 directories
(Transport.list_objects): 4.7-4.8 s in one chain, 3.5-3.6 s in parts, for about the same CPU of
client (0.9 s) and server (5.7 s).

A listing is split only once it has gone on for SPLIT_AFTER pages (a small one never pays for
finding its prefixes). Its rest, after the last key handed on, is found by delimiter listings
from the listing's own prefix down, a level at a time while fewer than MIN_PARTS prefixes are
known (at most MAX_DEPTH levels; a prefix whose level takes more than one page stays whole, and
the keys a level gives are kept as they came). Each part's keys are checked to be below its
prefix, and only those after that last key are kept: a server that ignores start-after does not
hand a key on twice.
"""

from __future__ import annotations

import bisect
import itertools
import os

from ansible_collections.rat.backup.plugins.module_utils.errors import RatBackupError

SPLIT_AFTER = 2
MIN_PARTS = 16
MAX_DEPTH = 4


def listing_threads():
    """Parts listed at once: one per core this process may use, from 2 to 4. On a RAT host the S3
    server shares those cores; with 4 at once on 2 cores, bucket_mirror's part of an unchanged
    100,000-object lake's backup took 7.9 s (median of 5) against 7.3 s with 2, and the listing
    alone was no faster."""
    try:
        cores = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cores = os.cpu_count() or 2
    return max(2, min(4, cores))


THREADS = listing_threads()
# How many parts ahead of the reader (read_ahead.InOrder).
WINDOW = 16


class Part:
    """A run of keys already listed (``items``), or the keys below ``prefix`` after ``after``;
    ``handed``, the keys below it handed on already (up to ``after``)."""

    __slots__ = ("prefix", "items", "after", "handed", "last")

    def __init__(self, prefix=None, items=None, after=None, handed=frozenset()):
        self.prefix = prefix
        self.items = items
        self.after = after
        self.handed = handed
        # The last key of it handed on: each next one must sort after it.
        self.last = None

    def __repr__(self):
        return "Part(%r, %d items)" % (self.prefix, len(self.items or ()))


class _NotInOrder(Exception):
    """The server's answers do not fit S3's order or its rolling up of prefixes: splitting could
    drop keys or hand them on twice."""


def in_order(keys):
    """True when ``keys`` are in S3's order, each after the one before."""
    return all(earlier < later for earlier, later in zip(keys, keys[1:]))


def parts(list_level, prefix, handed):
    """The keys of the listing under ``prefix`` that come after the keys ``handed`` on already (in
    S3's order, the listing's first pages), as Parts in key order, or None when splitting would not
    pay (one prefix left to list) or the server's answers are not in S3's order (a part skipped as
    sorting before the last key handed on could hold keys the pages before did not). Keys a
    delimiter page gave are kept as they came: a rest that the levels gave whole needs no further
    request.

    ``list_level(prefix)`` is one delimiter ("/") page under ``prefix``: (items, prefixes, truncated),
    items as wire.listing_items gives them."""
    after = handed[-1]
    try:
        level = _levels(list_level, prefix, after)
        return _kept_after(level, after, handed)
    except _NotInOrder:
        return None


def _levels(list_level, prefix, after):
    """The listing under ``prefix`` as Parts in key order, descended a level at a time while fewer
    than MIN_PARTS prefixes are known (at most MAX_DEPTH levels)."""
    level = [Part(prefix=prefix)]
    for dummy in range(MAX_DEPTH):
        if sum(1 for part in level if part.prefix is not None) >= MIN_PARTS:
            break
        deeper, descended = [], False
        for part in level:
            if part.prefix is None or not _may_hold_after(part.prefix, after):
                deeper.append(part)
                continue
            items, prefixes, truncated = list_level(part.prefix)
            if truncated:
                deeper.append(part)
                continue
            deeper.extend(_level_parts(items, prefixes, part.prefix))
            descended = True
        level = deeper
        if not descended:
            break
    return level


def _kept_after(level, after, handed):
    """The Parts of ``level`` holding keys after ``after`` (None when only one listing is left).
    What is skipped as handed on already must be in ``handed``: a server whose order differs from
    S3's can list a prefix or key that sorts before ``after`` after it (one sorting "a" before
    "B/" lists "B/1" after "a"), and the delimiter pages, which send keys and prefixes apart, do not
    show it (_NotInOrder)."""
    kept = []
    for part in level:
        if part.prefix is None:
            if not all(item[0] in handed for item in part.items if item[0] <= after):
                raise _NotInOrder()
            items = [item for item in part.items if item[0] > after]
            if not items:
                continue
            if kept and kept[-1].prefix is None:
                kept[-1].items.extend(items)
            else:
                kept.append(Part(items=items))
        elif _may_hold_after(part.prefix, after):
            below = after.startswith(part.prefix)
            kept.append(Part(prefix=part.prefix, after=after if below else None,
                             handed=_handed_keys_below(handed, part.prefix) if below else frozenset()))
        elif not _handed_keys_below(handed, part.prefix):
            raise _NotInOrder()
    if sum(1 for part in kept if part.prefix is not None) == 1:
        # One listing left to ask for: as the chain of pages would, only later.
        return None
    return kept


def _may_hold_after(prefix, after):
    """False when every key below ``prefix`` is at or before ``after``: the prefix sorts before it
    and ``after`` is not below it."""
    return prefix > after or after.startswith(prefix)


def _handed_keys_below(handed, prefix):
    """The keys of ``handed`` (in S3's order) below ``prefix``."""
    start = bisect.bisect_left(handed, prefix)
    return frozenset(itertools.takewhile(lambda key: key.startswith(prefix), handed[start:]))


def _level_parts(items, prefixes, under):
    """One delimiter page's keys and prefixes as Parts, merged in key order (S3 sends them apart)."""
    for prefix in prefixes:
        if not prefix.startswith(under) or prefix == under:
            # Descending into it again would loop; the plain listing holds it whole.
            raise RatBackupError(f"the server answered a delimiter listing under {under!r} with the prefix {prefix!r}",
                                 prefix=under)
    if not in_order([item[0] for item in items]) or not in_order(prefixes):
        raise _NotInOrder()
    # A prefix before a key or prefix equal to it or below it (ties: the prefix first).
    merged = [((item[0], 1), Part(items=[item])) for item in items]
    merged.extend(((prefix, 0), Part(prefix=prefix)) for prefix in prefixes)
    merged.sort(key=lambda pair: pair[0])
    last_prefix = None
    for (name, dummy), part in merged:
        if last_prefix is not None and name.startswith(last_prefix):
            # A key or prefix below another of the same answer (a server rolling up otherwise than
            # S3, e.g. a directory marker "a/" sent both as a key and as the prefix "a/"): its keys
            # would be handed on twice. Sorted, a name below any prefix before it is below the last.
            raise _NotInOrder()
        if part.prefix is not None:
            last_prefix = part.prefix
    return [part for dummy, part in merged]


def checked(items, part):
    """``items`` of one page of ``part``, in order: those after its ``after`` (a server that ignores
    start-after sends the part from its first key, the keys ``handed`` on already). A key outside
    its prefix, or out of S3's order, fails: the parts are handed on one after the other on the
    strength of that order."""
    kept = []
    for item in items:
        key = item[0]
        if part.last is None and part.after is not None and key <= part.after:
            if key not in part.handed:
                # A server whose start-after is not S3's order ("p/B" after "p/a" without regard to
                # case): skipped as handed on, the key would be dropped.
                raise RatBackupError(f"the server listed the key {key!r} after start-after {part.after!r}, which S3's "
                                     f"order (UTF-8 bytes) puts it before, under the prefix {part.prefix!r}: a listing "
                                     "read in parts relies on that order", prefix=part.prefix, key=key)
            continue
        if not key.startswith(part.prefix):
            raise RatBackupError(f"the server answered a listing under the prefix {part.prefix!r} with the key "
                                 f"{key!r}", prefix=part.prefix, key=key)
        if part.last is not None and key <= part.last:
            raise RatBackupError(f"the server listed the key {key!r} after {part.last!r}, out of S3's order (UTF-8 "
                                 f"bytes), under the prefix {part.prefix!r}: a listing read in parts relies on that "
                                 "order", prefix=part.prefix, key=key)
        part.last = key
        kept.append(item)
    return kept
