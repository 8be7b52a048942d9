# -*- coding: utf-8 -*-
# Copyright: rat.backup contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The worker pool every transfer and every parallel hash of a mirror runs in.

Workers are threads, or for small-object transfers worker processes (``processes``): Python
threads share one core and, eight of them on short GETs, spend more CPU handing over the GIL
(futex calls, ~120 per object measured) than on the requests. A fork of this process runs
``work`` one item at a time; items and results travel over a pipe, pickled.
"""

from __future__ import annotations

import collections
import os
import queue
import threading
import time
from multiprocessing import connection

from ansible_collections.rat.backup.plugins.module_utils.errors import RatBackupError
from ansible_collections.rat.backup.plugins.module_utils._mirror.model import FIRST_KEYS

PROGRESS_EVERY = 15.0
# How far ahead of the oldest unfinished item an ordered run may get: a slow object at the front
# holds back at most this many finished ones (their results, not the items still to read).
WINDOW = 10000

_END = object()


def run_all(items, work, record, concurrency, progress=None, total=None, processes=0, start=None, ahead=None):
    """Run ``work`` on every item with ``concurrency`` threads; ``record`` runs in this thread.

    Workers take items from one queue and hand results back on another: per item two queue
    operations, where futures and wait() cost tens of microseconds more (10 % of a small object's
    transfer). The first failure stops new work; the ones already running finish first.
    ``progress(finished, total)`` marks the items as transfers: it is called at most every
    PROGRESS_EVERY seconds, and a failure says how many transfers were done before it.
    ``items`` may be any iterable (then ``total`` says how many for the messages). ``processes``,
    ``start`` and ``ahead``: as ``results`` takes them.
    """
    for dummy in results(items, work, record, concurrency, progress, total, ordered=False, processes=processes,
                         start=start, ahead=ahead):
        pass


def results(items, work, record, concurrency, progress=None, total=None, ordered=True, ready=None, processes=0,
            start=None, ahead=None):
    """Like run_all, and a generator of the results: in the items' order when ``ordered``.

    An item for which ``ready(item)`` is true needs no work: it is its own result, in its place,
    and is not recorded. Items are read as the workers need them (at most twice the workers in
    flight), so a stream of any length is never held. With ``processes``, that many worker
    processes run ``work`` instead of threads; items and results must pickle, ``work`` must
    return everything the caller needs (a change it makes to this process's objects stays in
    the worker), and ``start()`` runs in each worker before its first item (to replace what
    cannot be shared with a fork, such as a boto3 client's connection pool); ``ahead(items)`` runs
    in a worker before it runs ``work`` on each of ``items`` in turn (to send their requests ahead).
    """
    total = len(items) if total is None else total
    workers = _Processes(work, processes, start, ahead) if processes else _Threads(work, concurrency)
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
            workers.stop()
        except Exception as exc:  # pylint: disable=broad-except
            # A worker bug must still stop the run with a message, not a traceback.
            failures.append(RatBackupError(f"{type(exc).__name__}: {exc}"))
            workers.stop()
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
                workers.submit(index, item)
                state["in_flight"] += 1
            index += 1
            while state["in_flight"] and (state["in_flight"] >= workers.capacity or
                                          (ordered and index - state["next"] > WINDOW)):
                settle(workers.finished())
            if not failures:
                yield from ready_results()
        while state["in_flight"]:
            settle(workers.finished())
        if not failures:
            yield from ready_results()
    finally:
        workers.close()
    if failures:
        first = failures[0]
        details = dict(first.details)
        details.update({"failed": len(failures), "completed": state["finished"], "planned": total,
                        "errors": [f.msg for f in failures[:FIRST_KEYS]]})
        raise RatBackupError(f"{first.msg} ({state['finished']} of {total} transfers done before the failure; "
                             "a rerun finishes the rest)" if progress is not None else first.msg, **details)


class _Threads:
    """Worker threads, started as the items come (a run of three items starts three)."""

    def __init__(self, work, concurrency):
        self.work = work
        self.count = concurrency
        self.capacity = 2 * concurrency
        self.tasks, self.done = queue.SimpleQueue(), queue.SimpleQueue()
        self.stopping = threading.Event()
        self.threads = []

    def _worker(self):
        while True:
            task = self.tasks.get()
            if task is _END:
                return
            index, item = task
            if self.stopping.is_set():
                self.done.put((index, False, None))
                continue
            try:
                self.done.put((index, True, self.work(item)))
            except Exception as exc:  # pylint: disable=broad-except
                self.done.put((index, False, exc))

    def submit(self, index, item):
        if len(self.threads) < self.count:
            thread = threading.Thread(target=self._worker, daemon=True)
            thread.start()
            self.threads.append(thread)
        self.tasks.put((index, item))

    def finished(self):
        return self.done.get()

    def stop(self):
        self.stopping.set()

    def close(self):
        self.stop()
        for dummy in self.threads:
            self.tasks.put(_END)
        for thread in self.threads:
            thread.join()


class _Processes:
    """Worker processes, forked as the items come. Items go out in batches of BATCH (one pipe
    message and one pickling each way per batch, not per item: ~70 us of CPU per small object
    otherwise) and each worker holds at most two batches, so none idles while this process
    records what another finished."""

    BATCH = 16

    def __init__(self, work, count, start, ahead=None):
        self.work = work
        self.start = start
        self.ahead = ahead
        self.count = count
        self.capacity = 2 * count * self.BATCH
        self.children = []  # [pid, pipe, set of the indexes of the items it holds]
        self.pending = []
        self.results = collections.deque()

    def submit(self, index, item):
        self.pending.append((index, item))
        if len(self.pending) >= self.BATCH:
            self._send_pending()

    def _send_pending(self):
        child = min(self.children, key=lambda c: len(c[2]), default=None)
        if child is None or (child[2] and len(self.children) < self.count):
            child = self._fork()
        child[2].update(index for index, dummy in self.pending)
        try:
            child[1].send(self.pending)
        except OSError:
            # It died since its last answer (a broken pipe): its items, this batch too, fail naming how.
            self._lost(child)
        self.pending = []

    def _fork(self):
        ours, theirs = connection.Pipe()
        pid = os.fork()
        if pid == 0:
            # The child: never back into the caller's code (its finally blocks, Ansible's exit).
            status = 1
            try:
                ours.close()
                self._serve(theirs)
                status = 0
            finally:
                os._exit(status)  # pylint: disable=protected-access
        theirs.close()
        child = [pid, ours, set()]
        self.children.append(child)
        return child

    def _serve(self, pipe):
        for dummy, earlier, dummy_held in self.children:
            # The earlier workers' pipes: held here, they would never see this process end.
            earlier.close()
        if self.start is not None:
            self.start()
        while True:
            try:
                batch = pipe.recv()
            except EOFError:
                return
            if batch is None:
                return
            try:
                if self.ahead is not None:
                    self.ahead([item for dummy, item in batch])
            except Exception as exc:  # pylint: disable=broad-except
                # A bug there would end this process with only its exit status to tell: the batch's
                # items fail with its words instead, none of them worked on.
                pipe.send([(index, False, _failure_of(exc)) for index, dummy in batch])
                continue
            answers = []
            for index, item in batch:
                try:
                    answers.append((index, True, self.work(item)))
                except Exception as exc:  # pylint: disable=broad-except
                    answers.append((index, False, _failure_of(exc)))
            pipe.send(answers)

    def finished(self):
        if not self.results and self.pending:
            self._send_pending()
        while not self.results:
            pipes = [c[1] for c in self.children if c[2]]
            for pipe in connection.wait(pipes):
                child = next(c for c in self.children if c[1] is pipe)
                try:
                    answers = pipe.recv()
                except (EOFError, OSError):
                    self._lost(child)
                    continue
                for index, ok, value in answers:
                    child[2].remove(index)
                    if not ok:
                        value = RatBackupError(value[0], **value[1])
                    self.results.append((index, ok, value))
        return self.results.popleft()

    def _lost(self, child):
        """A worker that died (killed, out of memory): its items fail, the run stops."""
        pid, pipe, held = child
        self.children.remove(child)
        pipe.close()
        dummy, status = os.waitpid(pid, 0)
        how = f"signal {-os.waitstatus_to_exitcode(status)}" if os.WIFSIGNALED(status) else \
            f"status {os.waitstatus_to_exitcode(status)}"
        for index in held:
            self.results.append((index, False, RatBackupError(f"worker process {pid} ended with {how}")))

    def stop(self):
        # Not sent yet: skipped, as a thread skips what it takes from the queue after a failure.
        self.results.extend((index, False, None) for index, dummy in self.pending)
        self.pending = []

    def close(self):
        for dummy, pipe, dummy_held in self.children:
            try:
                pipe.send(None)
            except OSError:
                pass
        for pid, pipe, dummy_held in self.children:
            os.waitpid(pid, 0)
            pipe.close()
        self.children = []


def _failure_of(exc):
    """(message, details) a worker process sends back for an item that failed with ``exc``."""
    if isinstance(exc, RatBackupError):
        return exc.msg, exc.details
    return f"{type(exc).__name__}: {exc}", {}
