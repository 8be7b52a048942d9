# -*- coding: utf-8 -*-
# Copyright: rat.backup contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The worker pool (threads and worker processes): order, failures, dead workers, nothing left behind."""

from __future__ import annotations

import os
import random
import signal
import threading
import time

import pytest

from ansible_collections.rat.backup.plugins.module_utils.errors import RatBackupError
from ansible_collections.rat.backup.plugins.module_utils._mirror import pool


def children_of_this_process():
    found = set()
    for pid in os.listdir("/proc"):
        if pid.isdigit():
            try:
                with open(f"/proc/{pid}/stat") as handle:
                    fields = handle.read().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == os.getpid() and fields[0] != "Z":
                found.add(int(pid))
    return found


def test_results_when_processes_then_in_order_ready_in_place_and_work_in_other_processes():
    recorded = []

    def work(item):
        time.sleep(random.random() / 2000)
        return item * 10, os.getpid()

    items = list(range(500))
    before = children_of_this_process()
    got = list(pool.results(items, work, recorded.append, 8, ready=lambda i: i % 3 == 0, processes=3))
    assert [g if isinstance(g, int) else g[0] for g in got] == [i if i % 3 == 0 else i * 10 for i in items]
    pids = {pid for dummy, pid in recorded}
    assert len(pids) == 3 and os.getpid() not in pids
    assert sorted(value for value, dummy in recorded) == [i * 10 for i in items if i % 3]
    assert children_of_this_process() == before


def test_results_when_processes_and_start_then_start_runs_once_in_each_worker():
    def start():
        os.environ["RAT_POOL_STARTED"] = os.environ.get("RAT_POOL_STARTED", "") + "x"

    got = list(pool.results(range(100), lambda i: os.environ.get("RAT_POOL_STARTED"), lambda r: None, 4,
                            processes=2, start=start))
    assert set(got) == {"x"} and "RAT_POOL_STARTED" not in os.environ


@pytest.mark.parametrize("processes", [0, 2])
def test_results_when_work_fails_then_its_message_and_details_raised_feeding_stops_and_no_worker_left(processes):
    fed = []

    def items():
        for i in range(10000):
            fed.append(i)
            yield i

    def work(item):
        if item == 40:
            raise RatBackupError("broken 40", key="k40")
        time.sleep(0.001)
        return item

    threads, children = threading.active_count(), children_of_this_process()
    with pytest.raises(RatBackupError) as caught:
        list(pool.results(items(), work, lambda r: None, 4, processes=processes, progress=lambda *a: None,
                          total=10000))
    assert caught.value.msg.startswith("broken 40 (") and caught.value.details["key"] == "k40"
    # Bounded by what the other workers finish while the failing one ends (a batch, in a process):
    # far from all, however unevenly a loaded machine schedules them.
    assert caught.value.details["errors"] == ["broken 40"] and len(fed) < 2000
    assert (threading.active_count(), children_of_this_process()) == (threads, children)


def test_results_when_worker_has_a_bug_then_run_fails_with_its_type_and_message():
    def work(item):
        return {}["missing"] if item == 3 else item

    with pytest.raises(RatBackupError, match=r"^KeyError: 'missing'$"):
        list(pool.results(range(10), work, lambda r: None, 2, processes=2))


def test_results_when_ahead_has_a_bug_then_run_fails_with_its_type_and_message_and_no_item_done():
    def ahead(items):
        raise KeyError("no such slot")

    recorded = []
    with pytest.raises(RatBackupError, match=r"^KeyError: 'no such slot'$") as caught:
        list(pool.results(range(10), lambda item: item, recorded.append, 2, processes=1, ahead=ahead))
    assert caught.value.details["completed"] == 0 and not recorded


def test_results_when_a_batch_goes_to_a_worker_already_dead_then_run_fails_naming_it_not_broken_pipe():
    def die():
        os.kill(os.getpid(), signal.SIGKILL)

    def slow_after_first_batch():
        for item in range(64):
            if item == pool._Processes.BATCH + 1:  # pylint: disable=protected-access
                time.sleep(0.5)  # the worker is dead before the second batch goes out
            yield item

    before = children_of_this_process()
    with pytest.raises(RatBackupError, match=r"^worker process \d+ ended with signal 9$"):
        list(pool.results(slow_after_first_batch(), lambda item: item, lambda r: None, 2, total=64, processes=1,
                          start=die))
    assert children_of_this_process() == before


def test_results_when_a_worker_is_killed_then_run_fails_naming_it_and_no_worker_is_left():
    def work(item):
        if item == 20:
            os.kill(os.getpid(), signal.SIGKILL)
        return item

    before = children_of_this_process()
    with pytest.raises(RatBackupError, match=r"^worker process \d+ ended with signal 9$"):
        list(pool.results(range(200), work, lambda r: None, 4, processes=2))
    assert children_of_this_process() == before
