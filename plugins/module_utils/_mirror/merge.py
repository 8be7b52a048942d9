# -*- coding: utf-8 -*-
# Copyright: rat.backup contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Plans as merges of sorted streams: a listing, a manifest and a local tree, one key at a time.

S3 lists keys in UTF-8 byte order and manifests are written in (bucket, key) order. Python orders
str by code point, which is the same order as their UTF-8 bytes (also for the surrogates
``surrogatepass`` encodes), so keys are compared as str. A stream that turns out not to be in
order (a hand-written manifest, a server that does not sort) raises OutOfOrder; the planner then
plans again with that stream sorted in memory, which is what every plan did before.
"""

from __future__ import annotations

import json
import tempfile

from ansible_collections.rat.backup.plugins.module_utils.errors import RatBackupError
from ansible_collections.rat.backup.plugins.module_utils._mirror.model import FIRST_KEYS, Entry

_MISSING = object()


class OutOfOrder(Exception):
    """A stream said to be sorted was not; ``what`` names it."""

    def __init__(self, what):
        super().__init__(what)
        self.what = what


def in_order(items, key, what):
    """``items`` as they come, checked to be in strictly ascending ``key`` order."""
    last = _MISSING
    for item in items:
        current = key(item)
        if last is not _MISSING and not last < current:
            raise OutOfOrder(what)
        last = current
        yield item


def sorted_unique(items, key):
    """``items`` sorted by ``key`` in memory, the last of equal keys winning (a dict's rule)."""
    by_key = {}
    for item in items:
        by_key[key(item)] = item
    return [by_key[k] for k in sorted(by_key)]


def join(left, right, left_key, right_key):
    """(key, left item or None, right item or None) for every key of two ascending streams, in order."""
    left, right = iter(left), iter(right)
    a, b = next(left, None), next(right, None)
    while a is not None or b is not None:
        ka = left_key(a) if a is not None else None
        kb = right_key(b) if b is not None else None
        if b is None or (a is not None and ka < kb):
            yield ka, a, None
            a = next(left, None)
        elif a is None or kb < ka:
            yield kb, None, b
            b = next(right, None)
        else:
            yield ka, a, b
            a, b = next(left, None), next(right, None)


def entry_key(entry):
    return entry.bucket, entry.key


class Tally:
    """One kind of planned action: how many, the first FIRST_KEYS labels and the bytes, not the items."""

    __slots__ = ("count", "first", "bytes")

    def __init__(self):
        self.count = 0
        self.first = []
        self.bytes = 0

    def add(self, label, size=0):
        self.count += 1
        self.bytes += size
        if len(self.first) < FIRST_KEYS:
            self.first.append(label)

    def summary(self, with_bytes=True):
        result = {"count": self.count, "first": list(self.first)}
        if with_bytes:
            result["bytes"] = self.bytes
        return result


class Spool:
    """Planned items on disk, one line each, read back in the order written.

    A plan of 1,000,000 objects held as Entries needs ~1 GB; spooled it needs one line at a time.
    A line is ``action<TAB>source<TAB>relpath<TAB>payload``: the payload is the Entry as JSON, or
    for an item that will not change any more its manifest line, written through as it is
    (relpaths and sources never hold control characters: keys.is_plain_relpath, safe_relpath).
    The file is unlinked from the start (no leftovers).
    """

    def __init__(self, directory=None):
        self.handle = tempfile.TemporaryFile(mode="w+", encoding="utf-8", prefix="rat-mirror-plan-", dir=directory)
        self.count = 0

    def add(self, action, entry, source=None, line=None):
        if line is None:
            line = json.dumps([getattr(entry, name) for name in Entry.__slots__], ensure_ascii=False,
                              separators=(",", ":"))
        self.handle.write(f"{action}\t{source or ''}\t{entry.relpath or ''}\t{line}\n")
        self.count += 1

    def rows(self):
        """(action, Entry or manifest line, source, relpath) in the order added."""
        self.handle.flush()
        self.handle.seek(0)
        for text in self.handle:
            action, source, relpath, payload = text[:-1].split("\t", 3)
            item = Entry(*json.loads(payload)) if payload.startswith("[") else payload
            yield action, item, source, relpath

    def close(self):
        self.handle.close()


def spool_in(path, what):
    """A Spool in ``path``'s directory, or a clear error when it cannot be made."""
    try:
        return Spool(path)
    except OSError as exc:
        raise RatBackupError(f"cannot make the plan's spool file for {what} in {path}: {exc.strerror}", path=path)


class StreamPlan:
    """A Plan (same summary) whose items go to a Spool in plan order instead of lists.

    ``spool`` is None in check mode: then only the tallies are kept. ``spooled``: the actions
    whose items are spooled (all when None). ``line_of(entry)``: the manifest line of an item
    other than a copy, spooled instead of the Entry.
    """

    def __init__(self, spool, spooled=None, line_of=None):
        self.spool = spool
        self.spooled = spooled
        self.line_of = line_of
        self.tallies = {"copy": Tally(), "link": Tally(), "keep": Tally(), "delete": Tally()}
        self.deletes = []
        self.create_buckets = []

    def add(self, action, entry, source=None, line=None, done=False):
        """Plan ``entry``; ``line``: its manifest line when the caller has it already (not a copy).
        ``done``: a link already made (DownloadPlan's links while it lists), spooled as "linked"."""
        tally = self.tallies[action]
        # Only the first FIRST_KEYS are named: no label is formatted for the others.
        tally.add(f"{entry.bucket}/{entry.key}" if len(tally.first) < FIRST_KEYS else None, entry.size)
        if self.spool is not None and (self.spooled is None or action in self.spooled):
            if line is None and self.line_of is not None and action != "copy":
                line = self.line_of(entry)
            self.spool.add("linked" if done else action, entry, source, line)

    def add_delete(self, label):
        self.tallies["delete"].add(label)
        self.deletes.append(label)

    def count(self, action):
        return self.tallies[action].count

    def summary(self):
        # "copy" would shadow dict.copy in Jinja (result.plan.copy), hence the to_ names.
        return {"to_copy": self.tallies["copy"].summary(), "to_link": self.tallies["link"].summary(),
                "to_delete": self.tallies["delete"].summary(with_bytes=False),
                "unchanged": {"count": self.tallies["keep"].count},
                "create_buckets": list(self.create_buckets)}

    def close(self):
        if self.spool is not None:
            self.spool.close()
