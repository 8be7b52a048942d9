# -*- coding: utf-8 -*-
# Copyright: rat.backup contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Items read by a thread of its own ahead of their reader: a listing's pages and its keys.

A listing is a chain of requests, each waiting on the server (``continuation-token``). Read
ahead, that wait passes while the reader works on what came before, instead of adding to it:
the transport fetches each page while the page before it is parsed, and a mirror's plan reads
the keys while the keys before them are planned.
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
        while not self._stop.is_set():
            try:
                self._queue.put(value, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

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


class _Raised:
    __slots__ = ("exc",)

    def __init__(self, exc):
        self.exc = exc
