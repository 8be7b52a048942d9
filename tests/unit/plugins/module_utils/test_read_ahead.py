# -*- coding: utf-8 -*-
# Copyright: rat.backup contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""read_ahead.ReadAhead and InOrder: items read by threads of their own, in order, errors where they came, nothing
read after close."""

from __future__ import annotations

import threading
import time

import pytest

from ansible_collections.rat.backup.plugins.module_utils.errors import RatBackupError
from ansible_collections.rat.backup.plugins.module_utils.read_ahead import InOrder, ReadAhead


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


def in_order_threads():
    return [t for t in threading.enumerate() if t.name.startswith("in-order")]


def test_in_order_when_parts_take_different_times_hands_on_every_item_in_the_parts_order():
    lengths = [5, 0, 17, 1, 9, 3, 12, 0, 4]
    readers = set()

    def read(part):
        for index in range(lengths[part]):
            readers.add(threading.current_thread().name)
            # Later parts finish first: the order is the parts', not the threads'.
            time.sleep(0.001 * (len(lengths) - part))
            yield (part, index)

    got = list(InOrder(range(len(lengths)), read, threads=3, window=4, depth=2))
    assert got == [(part, index) for part in range(len(lengths)) for index in range(lengths[part])]
    assert len(readers) > 1 and not in_order_threads()


def test_in_order_never_begins_a_part_more_than_window_parts_past_the_reader():
    started, ahead = [], []
    reading = [0]

    def read(part):
        started.append(part)
        ahead.append(part - reading[0])
        yield part

    for part in InOrder(range(40), read, threads=4, window=3, depth=1):
        reading[0] = part
        time.sleep(0.002)
    # Never more than the window past the last part handed on (without it: up to 39).
    assert sorted(started) == list(range(40)) and max(ahead) <= 3


def test_in_order_when_a_part_raises_hands_on_the_items_before_it_then_raises_it():
    closed = []

    def read(part):
        try:
            yield part * 10
            if part == 2:
                raise RatBackupError("listing the prefix 'c/' failed")
            yield part * 10 + 1
        finally:
            closed.append(part)

    got = []
    with pytest.raises(RatBackupError, match="listing the prefix 'c/' failed"):
        for item in InOrder(range(6), read, threads=2, window=4, depth=2):
            got.append(item)
    assert got == [0, 1, 10, 11, 20] and not in_order_threads()
    # Every part a thread began was closed (a listing's connection is dropped there).
    assert 2 in closed and set(closed) <= set(range(6))


def test_in_order_when_the_reader_stops_early_stops_every_thread_and_runs_on_exit_on_each():
    exits = []

    def read(part):
        while True:
            yield part

    items = iter(InOrder(range(10), read, threads=3, window=5, depth=2,
                         on_exit=lambda: exits.append(threading.current_thread().name)))
    assert next(items) == 0
    items.close()
    assert not in_order_threads() and sorted(exits) == ["in-order-0", "in-order-1", "in-order-2"]


def test_in_order_when_a_thread_cannot_start_stops_those_started_then_raises(monkeypatch):
    real_start = threading.Thread.start
    started = []

    def start(thread):
        if started:
            raise RuntimeError("can't start new thread")
        started.append(thread)
        real_start(thread)

    def read(part):
        while True:
            yield part

    monkeypatch.setattr(threading.Thread, "start", start)
    with pytest.raises(RuntimeError, match="can't start new thread"):
        InOrder(range(10), read, threads=3, window=5, depth=2)
    assert len(started) == 1 and not started[0].is_alive() and not in_order_threads()
