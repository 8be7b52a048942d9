# -*- coding: utf-8 -*-
# Copyright: rat.backup contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Items read by threads of their own ahead of their reader: a listing's pages and its keys.

A listing is a chain of requests, each waiting on the server (``continuation-token``). Read
ahead, that wait passes while the reader works on what came before, instead of adding to it:
the transport fetches each page while the page before it is parsed, and a mirror's plan reads
the keys while the keys before them are planned. Parts of a listing that do not depend on each
other (the keys of different prefixes) are read by several threads at once (``InOrder``).
"""

from __future__ import annotations

import queue
import threading


class ReadAhead:
    """``items`` read by a thread of its own (named ``name``), up to ``depth`` batches of ``batch``
    items ahead of the reader.

    The items come in their order; an exception of ``items`` is raised in the reader where the item
    would have come. ``close()`` (also when the reader stops early) closes ``items`` in the thread
    and waits for it to end, so nothing reads ``items`` (nor its connection) once it returns: no
    thread of it is left when a mirror forks its workers.
    """

    _END = object()

    def __init__(self, items, batch=1000, depth=4, name="read-ahead"):
        self._items = items
        self._batch = batch
        self._queue = queue.Queue(depth)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._read, name=name, daemon=True)
        self._thread.start()

    def _read(self):
        batch = []
        try:
            for item in self._items:
                batch.append(item)
                if len(batch) >= self._batch:
                    if not self._put(batch):
                        return
                    batch = []
            ending = self._END
        except BaseException as exc:  # pylint: disable=broad-except
            # Handed to the reader, which raises it after the items that came before it.
            ending = _Raised(exc)
        finally:
            close = getattr(self._items, "close", None)
            if close is not None:
                close()
        if self._put(batch):
            self._put(ending)

    def _put(self, value):
        """Queue ``value``; False once the reader has stopped."""
        return _put(self._queue, value, self._stop)

    def __iter__(self):
        try:
            while True:
                got = self._queue.get()
                if got is self._END:
                    return
                if isinstance(got, _Raised):
                    raise got.exc
                yield from got
        finally:
            self.close()

    def close(self):
        self._stop.set()
        self._thread.join()


class InOrder:
    """The items of each of ``parts`` (``read(part)``, an iterable), read by up to ``threads``
    threads at once and handed on in the parts' order.

    A thread takes the next part nobody has taken, once it is fewer than ``window`` parts ahead of
    the one being handed on, and reads at most ``depth`` of its items ahead of the reader: memory
    holds at most ``window`` x ``depth`` items whatever the parts hold. An exception of ``read`` is
    raised in the reader where its part's next item would have come. ``on_exit`` runs on each
    thread as it ends (a transport's per-thread connection is dropped there). ``close()`` (also
    when the reader stops early) stops the threads and waits for them: none is left once it returns.
    """

    _END = object()

    def __init__(self, parts, read, threads=4, window=16, depth=4, name="in-order", on_exit=None):
        self._parts = list(parts)
        self._read = read
        self._window = window
        self._queues = [queue.Queue(depth) for dummy in self._parts]
        self._taken = 0
        self._reading = 0
        self._turn = threading.Condition()
        self._stop = threading.Event()
        self._threads = []
        try:
            for number in range(min(threads, len(self._parts))):
                thread = threading.Thread(target=self._work, args=(on_exit,), name="%s-%d" % (name, number), daemon=True)
                thread.start()
                self._threads.append(thread)
        except BaseException:
            # A thread that cannot start (the process's thread limit): those started are stopped first.
            self.close()
            raise

    def _take(self):
        """The index of the next part to read, or None when there is none left or the reader stopped."""
        with self._turn:
            while not self._stop.is_set() and self._taken < len(self._parts):
                if self._taken < self._reading + self._window:
                    self._taken += 1
                    return self._taken - 1
                self._turn.wait()
        return None

    def _work(self, on_exit):
        try:
            while True:
                index = self._take()
                if index is None or not self._read_part(index):
                    return
        finally:
            if on_exit is not None:
                on_exit()

    def _read_part(self, index):
        """Queue part ``index``'s items, then its end (or its error); False once the reader has stopped."""
        out = self._queues[index]
        items = None
        try:
            items = self._read(self._parts[index])
            for item in items:
                if not _put(out, item, self._stop):
                    return False
            ending = self._END
        except BaseException as exc:  # pylint: disable=broad-except
            ending = _Raised(exc)
        finally:
            close = getattr(items, "close", None)
            if close is not None:
                close()
        return _put(out, ending, self._stop)

    def __iter__(self):
        try:
            for index, out in enumerate(self._queues):
                with self._turn:
                    self._reading = index
                    self._turn.notify_all()
                while True:
                    got = out.get()
                    if got is self._END:
                        break
                    if isinstance(got, _Raised):
                        raise got.exc
                    yield got
                # What was read of it is handed on: not kept until the end.
                self._queues[index] = None
        finally:
            self.close()

    def close(self):
        self._stop.set()
        with self._turn:
            self._turn.notify_all()
        for thread in self._threads:
            thread.join()


def _put(out, value, stop):
    """Queue ``value`` on ``out``; False once ``stop`` is set (the reader is gone)."""
    while not stop.is_set():
        try:
            out.put(value, timeout=0.1)
            return True
        except queue.Full:
            continue
    return False


class _Raised:
    __slots__ = ("exc",)

    def __init__(self, exc):
        self.exc = exc
