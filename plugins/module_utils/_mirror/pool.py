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
# How far ahead of the oldest unfinished item an ordered run may get: a slow object at the front
# holds back at most this many finished ones (their results, not the items still to read).
WINDOW = 10000

_END = object()


def run_all(items, work, record, concurrency, progress=None, total=None):
    """Run ``work`` on every item with ``concurrency`` threads; ``record`` runs in this thread.

    Workers take items from one queue and hand results back on another: per item two queue
    operations, where futures and wait() cost tens of microseconds more (10 % of a small object's
    transfer). The first failure stops new work; the ones already running finish first.
    ``progress(finished, total)`` marks the items as transfers: it is called at most every
    PROGRESS_EVERY seconds, and a failure says how many transfers were done before it.
    ``items`` may be any iterable (then ``total`` says how many for the messages).
    """
    for dummy in results(items, work, record, concurrency, progress, total, ordered=False):
        pass


def results(items, work, record, concurrency, progress=None, total=None, ordered=True, ready=None):
    """Like run_all, and a generator of the results: in the items' order when ``ordered``.

    An item for which ``ready(item)`` is true needs no work: it is its own result, in its place,
    and is not recorded. Items are read as the workers need them (at most twice ``concurrency``
    in flight), so a stream of any length is never held.
    """
    total = len(items) if total is None else total
    tasks, finished_queue = queue.SimpleQueue(), queue.SimpleQueue()
    stop = threading.Event()

    def worker():
        while True:
            task = tasks.get()
            if task is _END:
                return
            index, item = task
            if stop.is_set():
                finished_queue.put((index, False, None))
                continue
            try:
                finished_queue.put((index, True, work(item)))
            except Exception as exc:  # pylint: disable=broad-except
                finished_queue.put((index, False, exc))

    threads = []
    failures = []
    done = {}
    state = {"finished": 0, "in_flight": 0, "next": 0, "logged": time.monotonic()}

    def settle(got):
        index, ok, value = got
        state["in_flight"] -= 1
        try:
            if not ok:
                if value is None:
                    return
                raise value
            record(value)
            state["finished"] += 1
            if ordered:
                done[index] = value
        except RatBackupError as exc:
            failures.append(exc)
            stop.set()
        except Exception as exc:  # pylint: disable=broad-except
            # A worker bug must still stop the run with a message, not a traceback.
            failures.append(RatBackupError(f"{type(exc).__name__}: {exc}"))
            stop.set()
        if progress is not None and time.monotonic() - state["logged"] > PROGRESS_EVERY:
            state["logged"] = time.monotonic()
            progress(state["finished"], total)

    def ready_results():
        while state["next"] in done:
            yield done.pop(state["next"])
            state["next"] += 1

    try:
        index = 0
        for item in items:
            if failures:
                break
            if ready is not None and ready(item):
                if ordered:
                    done[index] = item
            else:
                if len(threads) < concurrency:
                    thread = threading.Thread(target=worker, daemon=True)
                    thread.start()
                    threads.append(thread)
                tasks.put((index, item))
                state["in_flight"] += 1
            index += 1
            while state["in_flight"] and (state["in_flight"] >= 2 * concurrency or
                                          (ordered and index - state["next"] > WINDOW)):
                settle(finished_queue.get())
            if not failures:
                yield from ready_results()
        while state["in_flight"]:
            settle(finished_queue.get())
        if not failures:
            yield from ready_results()
    finally:
        stop.set()
        for thread in threads:
            tasks.put(_END)
        for thread in threads:
            thread.join()
    if failures:
        first = failures[0]
        details = dict(first.details)
        details.update({"failed": len(failures), "completed": state["finished"], "planned": total,
                        "errors": [f.msg for f in failures[:FIRST_KEYS]]})
        raise RatBackupError(f"{first.msg} ({state['finished']} of {total} transfers done before the failure; "
                             "a rerun finishes the rest)" if progress is not None else first.msg, **details)
