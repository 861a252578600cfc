"""The local executor: one process per device of --gpus / --devices, on this machine.

Each worker has its own task, result and log queues; the cores are shared out evenly among workers.
Shutdown escalates: terminate, wait, kill.

Workers start from a fork server where the platform has one (Linux, macOS): one clean process imports
torch and the encoder's libraries once, before any thread pool or CUDA context exists, and each worker
is forked from it. A worker is then ready in the time its model takes to load (about 0.3 s for
all-MiniLM-L6-v2 on a CPU) instead of that plus about 3 s of imports, and a replaced worker rejoins as
fast. Elsewhere workers are spawned. Either way a worker takes the supervisor's environment as it is
when the worker starts, as a spawned process would.
"""

from __future__ import annotations

import contextlib
import multiprocessing as mp
import os
import queue
import signal
import sys
import threading
import time

from chatspace.config import ExecutorConfig, Mode
from chatspace.hardware.devices import Device, cpu_count, parse_device_labels
from chatspace.logs import quiet_worker_environment
from chatspace.pool.executors.base import TASKS_PER_WORKER, Executor, send_worker_logs, share_worker_cores
from chatspace.pool.messages import Message, Task
from chatspace.pool.worker import QueueChannel, WorkerLoop, WorkerSpec


def _parent_alive() -> bool:
    parent = mp.parent_process()
    return parent is None or parent.is_alive()


def _die_with_parent() -> None:
    """Ask Linux to SIGKILL this worker if the supervisor dies, so no worker is ever orphaned."""
    try:
        import ctypes

        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        pr_set_pdeathsig = 1
        libc.prctl(pr_set_pdeathsig, signal.SIGKILL)
    except Exception:  # noqa: BLE001 - not Linux: the worker's parent check still applies
        pass


# What the fork server imports once, by encoder kind, so every worker forked from it starts with them
# loaded. Importing these touches no GPU (a test holds them to it), so a forked worker starts CUDA itself.
_EVERY_WORKER = ("chatspace.pool.executors.worker_preload", "chatspace.pool.executors.local")
WORKER_PRELOAD = {
    Mode.SENTENCE_TRANSFORMER: (
        *_EVERY_WORKER,
        "chatspace.encoders.sentence_transformer",
        "sentence_transformers",
    ),
    Mode.OPENAI: (*_EVERY_WORKER, "chatspace.encoders.openai.encoder"),
}


def worker_context(mode: Mode):
    """The multiprocessing context workers start from: a fork server preloaded for the run's encoder
    kind where the platform has one, else spawn. The fork server starts with the first worker and
    serves every later one (a process keeps one fork server; a second run in it reuses it)."""
    if "forkserver" not in mp.get_all_start_methods():
        return mp.get_context("spawn")
    ctx = mp.get_context("forkserver")
    from multiprocessing import forkserver

    # The process's one fork server, as multiprocessing keeps it (private names, hence getattr).
    server = getattr(forkserver, "_forkserver", None)
    preloaded = list(getattr(server, "_preload_modules", None) or ())
    wanted = list(WORKER_PRELOAD[mode])
    if getattr(server, "_forkserver_pid", None) is None:
        ctx.set_forkserver_preload(wanted)
    elif _worth_a_restart(mode, preloaded) and hasattr(server, "_stop") and not mp.active_children():
        # A process that ran API workers first (embed-dataset, then run_embedding in one session):
        # without torch preloaded, each sentence-transformers worker would import it itself, seconds
        # every time. No worker of this process is alive (they die with their fork server).
        server._stop()
        ctx.set_forkserver_preload(list(dict.fromkeys([*preloaded, *wanted])))
    return ctx


def _worth_a_restart(mode: Mode, preloaded: list[str]) -> bool:
    """Only the sentence-transformers stack (torch, transformers: seconds per worker) is worth
    restarting the fork server for; an API worker imports its few modules itself in a moment."""
    return mode is Mode.SENTENCE_TRANSFORMER and not set(WORKER_PRELOAD[mode]) <= set(preloaded)


def _adopt_environment(environ: dict[str, str]) -> None:
    """Take the supervisor's environment of this worker's start: a worker forked from a fork server
    otherwise holds the fork server's, from the first worker's start."""
    if dict(os.environ) != environ:
        os.environ.clear()
        os.environ.update(environ)


class SupervisorStdio:
    """The supervisor's stdout and stderr as they are when a worker starts, handed to that worker: one
    forked from the fork server would otherwise write what its libraries print to the fork server's."""

    def __init__(self, fds: tuple | None = None):
        self.fds = fds

    def __reduce__(self):
        from multiprocessing import reduction

        try:
            fds = (reduction.DupFd(1), reduction.DupFd(2))
        except OSError:  # a closed stdout or stderr: the worker keeps what it has
            fds = None
        return (SupervisorStdio, (fds,))

    def adopt(self) -> None:
        if self.fds is None:
            return
        sys.stdout.flush()
        sys.stderr.flush()
        for target, handed in zip((1, 2), self.fds, strict=True):
            fd = handed.detach()
            os.dup2(fd, target)
            os.close(fd)


def local_worker_main(
    spec: WorkerSpec, tasks, results, logs, log_level: int, environ: dict[str, str], stdio: SupervisorStdio
) -> None:
    """Entry point of a worker process."""
    _adopt_environment(environ)
    stdio.adopt()
    _die_with_parent()
    quiet_worker_environment()
    # Ctrl-C reaches the whole process group; the supervisor decides how workers stop.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if spec.device.kind == "cuda" and spec.device.physical is not None:
        os.environ["CUDA_VISIBLE_DEVICES"] = spec.device.physical
    share_worker_cores(spec)
    send_worker_logs(logs, spec.device.label, log_level)
    code = WorkerLoop(spec, QueueChannel(tasks, results, _parent_alive)).run()
    # Flush every message to the supervisor, then leave at once: interpreter teardown (garbage
    # collection of the model) costs about a second per worker and does nothing useful here.
    results.close()
    results.join_thread()
    logs.close()
    logs.join_thread()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


class _Pump(threading.Thread):
    """Moves items from one worker's queue to a sink; stops when told, or when the queue is gone."""

    def __init__(self, source, sink, name: str):
        super().__init__(name=name, daemon=True)
        self.source = source
        self.sink = sink
        self.stopping = threading.Event()

    def run(self) -> None:
        while not self.stopping.is_set():
            try:
                item = self.source.get(timeout=0.2)
            except queue.Empty:
                continue
            except (EOFError, OSError, ValueError):
                return  # the queue was closed
            self.sink(item)


class _LocalWorker:
    """One worker process and its own queues: a worker killed mid-read or mid-write can leave a queue's
    lock held or a message half-sent, so nothing it used is ever shared with another worker."""

    def __init__(self, ctx, spec: WorkerSpec, inbox: queue.Queue, log_sink, log_level: int):
        self.tasks = ctx.Queue(maxsize=TASKS_PER_WORKER + 1)  # + its stop marker
        self.results = ctx.Queue()
        self.logs = ctx.Queue()
        self.process = ctx.Process(
            target=local_worker_main,
            args=(spec, self.tasks, self.results, self.logs, log_level, dict(os.environ), SupervisorStdio()),
            name=f"chatspace-worker-{spec.rank}",
            daemon=True,
        )
        self.pumps = [
            _Pump(self.results, inbox.put, f"chatspace-results-{spec.rank}"),
            _Pump(self.logs, log_sink, f"chatspace-logs-{spec.rank}"),
        ]

    def start(self) -> None:
        self.process.start()
        for pump in self.pumps:
            pump.start()

    def retire(self, timeout: float = 2.0) -> None:
        """Stop the pumps, close the queues, and wait (boundedly) for every thread that holds them.

        A queue's named semaphores are unlinked by whichever thread drops the last reference to it. If
        that is a pump or a queue's feeder thread still winding down while the interpreter exits, the
        thread can be frozen between unlinking a semaphore and telling the resource tracker, which
        then warns of a "leaked semaphore" after the run's last line. So those threads end here."""
        for pump in self.pumps:
            pump.stopping.set()
        for pump in self.pumps:
            pump.join(timeout)
        for q in (self.tasks, self.results, self.logs):
            q.cancel_join_thread()  # never wait unboundedly on a dead reader
            q.close()
            # No public join with a timeout: a feeder blocked on a dead worker's full pipe stays
            # blocked (and keeps its queue, cleaned up at exit by the main thread).
            feeder = getattr(q, "_thread", None)
            if feeder is not None:
                feeder.join(timeout)


def threads_per_worker(devices: tuple[Device, ...], cfg: ExecutorConfig) -> int | None:
    """Threads per worker (torch, tokenizer, inductor's compile pool): the cores shared out evenly,
    so N workers do not each start a pool the size of the machine."""
    if cfg.threads_per_worker:
        return cfg.threads_per_worker
    local = sum(1 for d in devices if d.kind in ("cpu", "cuda"))
    if local:
        return max(1, cpu_count() // local)
    return None


class LocalExecutor(Executor):
    """One process per device, each with its own task and result queues; the supervisor hands units
    out dynamically and can restart a worker that died."""

    name = "local"

    def __init__(self, cfg: ExecutorConfig, log_sink, log_level: int):
        super().__init__(cfg, log_sink, log_level)
        self.ctx = None  # chosen at the first worker's start, for its encoder kind
        self.inbox: queue.Queue = queue.Queue()
        self.workers: dict[int, _LocalWorker] = {}

    def place(self) -> tuple[tuple[Device, ...], int | None]:
        devices = parse_device_labels(self.cfg.devices)
        return devices, threads_per_worker(devices, self.cfg)

    def start_worker(self, rank: int) -> None:
        """A process (and fresh queues) for `rank` on its device; a previous one must be dead."""
        old = self.workers.pop(rank, None)
        if old is not None:
            if old.process.is_alive():
                old.process.kill()
            old.process.join(5)
            # Let the old result pump hand over what the worker sent before it died, then retire it.
            time.sleep(0.3)
            old.retire()
        if self.ctx is None:
            self.ctx = worker_context(self.specs[rank].config.mode)
        worker = _LocalWorker(self.ctx, self.specs[rank], self.inbox, self.log_sink, self.log_level)
        self.workers[rank] = worker
        worker.start()

    def send(self, rank: int, task: Task | None) -> bool:
        try:
            self.workers[rank].tasks.put_nowait(task)
            return True
        except queue.Full:
            return False

    def receive(self, timeout: float) -> Message | None:
        try:
            return self.inbox.get(timeout=timeout)
        except queue.Empty:
            return None

    def exitcode(self, rank: int) -> int | None:
        return self.workers[rank].process.exitcode

    def alive(self, rank: int) -> bool:
        return self.workers[rank].process.is_alive()

    def join(self, timeout: float) -> None:
        for w in self.workers.values():
            w.process.join(timeout)

    def shutdown(self, grace: float = 5.0) -> None:
        """Terminate, wait (`grace` seconds for them all), kill: no worker outlives the supervisor,
        whatever the exit path. A stopped worker (SIGSTOP, a job-control stop) is continued too: it acts
        on SIGTERM only once it runs, and would otherwise be waited for in vain."""
        procs = [w.process for w in self.workers.values()]
        for p in procs:
            if p.is_alive():
                p.terminate()
                with contextlib.suppress(ProcessLookupError):  # it ended meanwhile
                    os.kill(p.pid, signal.SIGCONT)
        deadline = time.monotonic() + grace
        for p in procs:
            p.join(max(0.0, deadline - time.monotonic()))
        for p in procs:
            if p.is_alive():
                p.kill()
                p.join(2)
        for w in self.workers.values():
            w.retire()
