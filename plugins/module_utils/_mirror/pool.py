# -*- coding: utf-8 -*-
# Copyright: rat.backup contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The worker pool every transfer and every parallel hash of a mirror runs in."""

from __future__ import annotations

import concurrent.futures
import time

from ansible_collections.rat.backup.plugins.module_utils.errors import RatBackupError
from ansible_collections.rat.backup.plugins.module_utils._mirror.model import FIRST_KEYS

PROGRESS_EVERY = 15.0

_END = object()


def run_all(items, work, record, concurrency, progress=None):
    """Run ``work`` on every item with ``concurrency`` threads; ``record`` runs in this thread.

    At most 2 x concurrency items are in flight, so 100,000 objects never become 100,000
    futures. The first failure stops new work; the ones already running finish first.
    ``progress(finished, total)`` marks the items as transfers: it is called at most every
    PROGRESS_EVERY seconds, and a failure says how many transfers were done before it.
    """
    if not items:
        return
    total = len(items)
    failures = []
    finished = 0
    last_log = time.monotonic()
    with concurrent.futures.ThreadPoolExecutor(max_workers=concurrency) as pool:
        pending = set()
        queue = iter(items)
        exhausted = False
        while True:
            while not exhausted and not failures and len(pending) < 2 * concurrency:
                item = next(queue, _END)
                if item is _END:
                    exhausted = True
                else:
                    pending.add(pool.submit(work, item))
            if not pending:
                break
            done, pending = concurrent.futures.wait(pending, return_when=concurrent.futures.FIRST_COMPLETED)
            for future in done:
                try:
                    record(future.result())
                    finished += 1
                except RatBackupError as exc:
                    failures.append(exc)
                except Exception as exc:  # pylint: disable=broad-except
                    # A worker bug must still stop the run with a message, not a traceback.
                    failures.append(RatBackupError("{0}: {1}".format(type(exc).__name__, exc)))
            if progress is not None and time.monotonic() - last_log > PROGRESS_EVERY:
                last_log = time.monotonic()
                progress(finished, total)
    if failures:
        first = failures[0]
        details = dict(first.details)
        details.update({"failed": len(failures), "completed": finished, "planned": total,
                        "errors": [f.msg for f in failures[:FIRST_KEYS]]})
        raise RatBackupError("{0} ({1} of {2} transfers done before the failure; a rerun finishes the rest)".format(
            first.msg, finished, total) if progress is not None else first.msg, **details)
