"""The local executor's own plumbing, without a model: retiring a worker ends every thread that holds
its queues. A pump or feeder thread still winding down while the interpreter exits can be frozen
between unlinking a queue's semaphore and telling multiprocessing's resource tracker, which then
prints "leaked semaphore" warnings after the run's last line."""

from __future__ import annotations

import multiprocessing as mp
import os
import queue
import subprocess
import sys
import threading
from types import SimpleNamespace

import numpy as np

from chatspace.config import Mode
from chatspace.pool.executors.local import SupervisorStdio, _adopt_environment, _LocalWorker, worker_context
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


def _probe_worker(environ, stdio, results) -> None:
    """A stand-in worker body: what a forked worker sees once it has taken the supervisor's state."""
    _adopt_environment(environ)
    stdio.adopt()
    os.write(1, b"worker stdout\n")
    os.write(2, b"worker stderr\n")
    results.put(os.environ.get("CHATSPACE_PROBE"))


def _start_probe(ctx, results):
    p = ctx.Process(target=_probe_worker, args=(dict(os.environ), SupervisorStdio(), results))
    p.start()
    p.join(60)
    assert p.exitcode == 0
    return results.get(timeout=30)


def test_a_worker_takes_the_supervisors_environment_and_output_of_its_start_not_the_fork_servers(
    monkeypatch, capfd
):
    ctx = worker_context(Mode.OPENAI)
    results = ctx.Queue()
    monkeypatch.setenv("CHATSPACE_PROBE", "first")
    assert _start_probe(ctx, results) == "first"  # the fork server is running from here on
    monkeypatch.setenv("CHATSPACE_PROBE", "second")
    assert _start_probe(ctx, results) == "second"
    captured = capfd.readouterr()  # file descriptors 1 and 2 of this process, as each worker started
    assert captured.out.count("worker stdout") == 2 and captured.err.count("worker stderr") == 2


def test_the_fork_servers_imports_touch_no_gpu():
    """Workers are forked from a process that imported these: had one of them started CUDA there, no
    forked worker could use a GPU."""
    probe = """
import importlib, torch
calls = []
def recorder(name, real):
    def call(*a, **k):
        calls.append(name)
        return real(*a, **k)
    return call
for name in ("is_available", "device_count", "init", "_lazy_init", "current_device", "get_device_name",
             "get_device_capability", "is_bf16_supported", "set_device", "synchronize"):
    setattr(torch.cuda, name, recorder(name, getattr(torch.cuda, name)))
from chatspace.pool.executors.local import WORKER_PRELOAD
for modules in WORKER_PRELOAD.values():
    for module in modules:
        importlib.import_module(module)
print(calls, torch.cuda.is_initialized())
"""
    out = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, timeout=120, check=True
    )
    assert out.stdout.strip() == "[] False", out.stderr


def test_a_fork_server_started_for_api_workers_is_restarted_with_torch_for_local_models():
    """One Python session that runs embed-dataset, then embed-hf: without the restart every local-model
    worker would import torch and sentence-transformers itself, seconds each time. Checked in a fresh
    interpreter, up to the point where the new fork server would import them."""
    probe = """
import multiprocessing as mp, os, time
from multiprocessing import forkserver
from chatspace.config import Mode
from chatspace.pool.executors.local import WORKER_PRELOAD, worker_context

if __name__ == "__main__":
    p = worker_context(Mode.OPENAI).Process(target=os.getpid)
    p.start()
    p.join()
    first = forkserver._forkserver._forkserver_pid
    worker_context(Mode.OPENAI)  # what it has is enough: kept
    kept = forkserver._forkserver._forkserver_pid == first
    live = worker_context(Mode.OPENAI).Process(target=time.sleep, args=(120,))
    live.start()
    worker_context(Mode.SENTENCE_TRANSFORMER)  # a worker of it still runs: kept too
    kept_while_live = forkserver._forkserver._forkserver_pid == first
    live.kill()
    live.join()
    worker_context(Mode.SENTENCE_TRANSFORMER)
    preload = forkserver._forkserver._preload_modules
    print(kept, kept_while_live, forkserver._forkserver._forkserver_pid is None,
          set(WORKER_PRELOAD[Mode.SENTENCE_TRANSFORMER]) | set(WORKER_PRELOAD[Mode.OPENAI]) == set(preload))
"""
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120)
    assert out.stdout.split() == ["True", "True", "True", "True"], out.stderr
