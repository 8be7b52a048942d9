# -*- coding: utf-8 -*-
# Copyright: rat.backup contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""read_ahead.ReadAhead: items read by a thread of its own, in order, errors where they came, nothing read after close."""

from __future__ import annotations

import threading
import time

import pytest

from ansible_collections.rat.backup.plugins.module_utils.errors import RatBackupError
from ansible_collections.rat.backup.plugins.module_utils.read_ahead import ReadAhead


def test_read_ahead_when_items_span_batches_yields_every_item_in_order_from_another_thread():
    readers = set()

    def items():
        for i in range(100):
            readers.add(threading.current_thread().name)
            yield i

    assert list(ReadAhead(items(), batch=7)) == list(range(100))
    assert readers == {"read-ahead"}


def test_read_ahead_when_items_raise_yields_those_before_then_raises_it():
    def items():
        yield from range(5)
        raise RatBackupError("listing bucket 'rat' failed")

    got = []
    with pytest.raises(RatBackupError, match="listing bucket 'rat' failed"):
        for item in ReadAhead(items(), batch=3):
            got.append(item)
    assert got == list(range(5))


def test_read_ahead_when_reader_stops_early_source_closed_and_not_read_after_close():
    state = {"read": 0, "closed": False}

    def items():
        try:
            for i in range(10000):
                state["read"] += 1
                yield i
        finally:
            state["closed"] = True

    ahead = ReadAhead(items(), batch=2, depth=1)
    assert next(iter(ahead)) == 0
    ahead.close()
    read = state["read"]
    assert state["closed"] and read < 10
    time.sleep(0.05)
    assert state["read"] == read and not any(t.name == "read-ahead" for t in threading.enumerate())
