"""The local executor's own plumbing, without a model: retiring a worker ends every thread that holds
its queues. A pump or feeder thread still winding down while the interpreter exits can be frozen
between unlinking a queue's semaphore and telling multiprocessing's resource tracker, which then
prints "leaked semaphore" warnings after the run's last line."""

from __future__ import annotations

import multiprocessing as mp
import queue
import threading
from types import SimpleNamespace

import numpy as np

from chatspace.pool.executors.local import _LocalWorker
from chatspace.pool.messages import Task


def test_retiring_a_worker_leaves_no_thread_holding_its_queues():
    before = set(threading.enumerate())
    inbox: queue.Queue = queue.Queue()
    worker = _LocalWorker(mp.get_context("spawn"), SimpleNamespace(rank=0), inbox, lambda r: None, 20)
    for pump in worker.pumps:  # the process itself is never started: its queues are what matter here
        pump.start()
    worker.tasks.put_nowait(Task(0, np.arange(10)))  # starts the task queue's feeder thread
    worker.results.put("a message")
    threads = set(threading.enumerate()) - before
    assert {t.name for t in threads} >= {"chatspace-results-0", "chatspace-logs-0", "QueueFeederThread"}
    assert inbox.get(timeout=30) == "a message"  # the result pump hands messages over until retired
    worker.retire()
    assert [t.name for t in threads if t.is_alive()] == []
