# -*- coding: utf-8 -*-
# Copyright: rat.backup contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The worker pool every transfer and every parallel hash of a mirror runs in."""

from __future__ import annotations

import queue
import threading
import time

from ansible_collections.rat.backup.plugins.module_utils.errors import RatBackupError
from ansible_collections.rat.backup.plugins.module_utils._mirror.model import FIRST_KEYS

PROGRESS_EVERY = 15.0

_END = object()


def run_all(items, work, record, concurrency, progress=None):
    """Run ``work`` on every item with ``concurrency`` threads; ``record`` runs in this thread.

    Workers take the next item themselves and hand results back on one queue: per item that is
    a lock and a queue put, where futures and wait() cost tens of microseconds more (10 % of a
    small object's transfer). The first failure stops new work; the ones already running finish
    first. ``progress(finished, total)`` marks the items as transfers: it is called at most every
    PROGRESS_EVERY seconds, and a failure says how many transfers were done before it.
    """
    if not items:
        return
    total = len(items)
    source = iter(items)
    taking = threading.Lock()
    results = queue.SimpleQueue()
    stop = threading.Event()

    def worker():
        try:
            while not stop.is_set():
                with taking:
                    item = next(source, _END)
                if item is _END:
                    return
                try:
                    results.put((True, work(item)))
                except Exception as exc:  # pylint: disable=broad-except
                    results.put((False, exc))
        finally:
            results.put(_END)

    threads = [threading.Thread(target=worker, daemon=True) for dummy in range(min(concurrency, total))]
    for thread in threads:
        thread.start()
    failures = []
    finished = 0
    running = len(threads)
    last_log = time.monotonic()
    while running:
        got = results.get()
        if got is _END:
            running -= 1
            continue
        ok, value = got
        try:
            if not ok:
                raise value
            record(value)
            finished += 1
        except RatBackupError as exc:
            failures.append(exc)
            stop.set()
        except Exception as exc:  # pylint: disable=broad-except
            # A worker bug must still stop the run with a message, not a traceback.
            failures.append(RatBackupError("{0}: {1}".format(type(exc).__name__, exc)))
            stop.set()
        if progress is not None and time.monotonic() - last_log > PROGRESS_EVERY:
            last_log = time.monotonic()
            progress(finished, total)
    for thread in threads:
        thread.join()
    if failures:
        first = failures[0]
        details = dict(first.details)
        details.update({"failed": len(failures), "completed": finished, "planned": total,
                        "errors": [f.msg for f in failures[:FIRST_KEYS]]})
        raise RatBackupError("{0} ({1} of {2} transfers done before the failure; a rerun finishes the rest)".format(
            first.msg, finished, total) if progress is not None else first.msg, **details)
