"""The Ray executor: workers as Ray actors, the same WorkerLoop, across every node of a cluster.

With no --ray-workers the run takes the whole cluster: one worker per GPU (--ray-device cuda) or per
--threads-per-worker CPUs (--ray-device cpu), spread over the nodes; --ray-workers caps that. Each
actor asks Ray for its GPU (Ray sets its CUDA_VISIBLE_DEVICES) or its CPUs, and talks to the supervisor
through the run's one mailbox actor pinned to the driver's node (ray_mailbox), as local workers do through
multiprocessing queues. A lost actor (killed process, lost node) is replaced by a new one, placed where
Ray finds room. The output root (and a local dataset path) must be storage every node reaches.
"""

from __future__ import annotations

import collections
import contextlib
import logging
import os
import signal
import socket
import sys
import time
from pathlib import Path
from typing import Any

from chatspace import __version__
from chatspace.config import ExecutorConfig
from chatspace.errors import ChatspaceError, UsageError
from chatspace.hardware.devices import Device
from chatspace.logs import quiet_worker_environment
from chatspace.pool.executors.base import TASKS_PER_WORKER, Executor, send_worker_logs, share_worker_cores
from chatspace.pool.executors.ray_mailbox import Key, Mailbox, MailboxMessages, MailboxTasks
from chatspace.pool.executors.ray_probe import cluster_refusal, nodes_chatspace_refusal
from chatspace.pool.messages import Finished, Message, Task
from chatspace.pool.worker import QueueChannel, WorkerLoop, WorkerSpec

log = logging.getLogger("chatspace")

PROBE_TIMEOUT_S = 3.0
MESSAGE_SLOTS = 10_000  # messages a worker may have waiting for the driver before its sends wait
TAKE_AT_MOST = 1_000  # messages the driver takes from the mailbox in one call
_DEFAULT_PORTS = {"ray": 10001, "gcs": 6379}  # Ray Client server; GCS (`ray start --head`)
# The address this module's `ray.init` connected the driver to (None: not connected by chatspace, say
# the user's own `ray.init`). The check connects before any output is touched and the executor keeps
# that connection, so the cluster's workers are not started twice.
_connected_to: str | None = None


def resolve_ray_address(address: str | None) -> str:
    """The address to give `ray.init`: "local" unless the user named a cluster that answers.

    A bare `ray.init()` attaches to whatever Ray's `ray_current_cluster` file names, and hangs for many
    minutes when that cluster has died. So no address (and no RAY_ADDRESS) starts a fresh local
    instance, and a named cluster ("auto" included) is probed first: one line within seconds if it
    does not answer, or answers but would refuse this driver (ray_probe: not Ray, a token it does not
    accept, other Ray or Python versions).
    """
    address = (address or os.environ.get("RAY_ADDRESS") or "").strip()
    if address in ("", "local"):
        return "local"
    target = _current_cluster_address() if address == "auto" else address
    if not target:
        raise ChatspaceError(
            "--ray-address auto: no running Ray cluster was started on this machine "
            "(start one with `ray start --head`, or leave --ray-address out to run a local one)"
        )
    host, port = _host_port(target)
    try:
        with socket.create_connection((host, port), timeout=PROBE_TIMEOUT_S):
            pass
    except OSError as e:
        raise ChatspaceError(
            f"the Ray cluster at {target} does not answer ({e.strerror or e}); check --ray-address / "
            "RAY_ADDRESS, or leave both unset to run a local Ray instance"
        ) from None
    if not target.startswith("ray://"):  # a GCS address: ask it now why it would refuse this driver
        refusal = cluster_refusal(target, host, port)
        if refusal:
            raise UsageError(refusal)
    return address


def _current_cluster_address() -> str | None:
    """What `ray start` last recorded in Ray's temp dir (RAY_TMPDIR, else <tmp>/ray)."""
    temp_dir = os.environ.get("RAY_TMPDIR") or os.path.join(
        "/tmp" if sys.platform != "win32" else os.environ.get("TEMP", "."), "ray"
    )
    try:
        return Path(temp_dir, "ray_current_cluster").read_text().strip() or None
    except OSError:
        return None


def _host_port(address: str) -> tuple[str, int]:
    scheme, sep, rest = address.partition("://")
    if not sep:
        scheme, rest = "gcs", address
    rest = rest.split("/", 1)[0]
    if rest.startswith("["):  # [ipv6]:port
        host, _, port = rest[1:].partition("]")
        port = port.lstrip(":")
    else:
        host, _, port = rest.rpartition(":") if rest.count(":") == 1 else (rest, "", "")
    if not host:
        raise UsageError(f"--ray-address {address!r} is not host:port or ray://host:port")
    try:
        return host, int(port) if port else _DEFAULT_PORTS.get(scheme, _DEFAULT_PORTS["gcs"])
    except ValueError:
        raise UsageError(f"--ray-address {address!r}: {port!r} is not a port number") from None


def _import_ray() -> Any:
    try:
        import ray
    except ImportError:
        raise UsageError("--executor ray needs Ray: pip install 'chatspace[ray]'") from None
    return ray


def connect_driver(ray: Any, address: str) -> bool:
    """Connect this process to `address` as the run's driver; True when this call connected it. A
    connection made here to another address (an earlier run of this process) is closed first; one
    the user made is used as it is."""
    global _connected_to
    if ray.is_initialized():
        if _connected_to is None or _connected_to == address:
            return False
        disconnect_driver(ray)
    ray.init(address=address, include_dashboard=False, logging_level=logging.WARNING)
    _connected_to = address
    return True


def disconnect_driver(ray: Any) -> None:
    """Close the connection `connect_driver` made (a local instance it started stops with it)."""
    global _connected_to
    ray.shutdown()
    _connected_to = None


class RayWorkerActor:
    """One worker as a Ray actor: `run` is the worker loop, for as long as the run lasts."""

    def run(self, spec: WorkerSpec, tasks, results, log_level: int) -> int:
        quiet_worker_environment()
        # Log records travel with the worker's messages, to the run's console and log file.
        send_worker_logs(results, spec.device.label, log_level)
        share_worker_cores(spec)
        # Ray ends a (non-detached) actor whose driver exits, so the supervisor is alive while this runs.
        return WorkerLoop(spec, QueueChannel(tasks, results), placement=ray_placement(spec.device)).run()


def ray_placement(device: Device) -> dict[str, Any]:
    """Where this actor runs, for the manifest: the node (Ray id, hostname, IP), the actor, the GPU."""
    import ray

    context = ray.get_runtime_context()
    placement: dict[str, Any] = {
        "hostname": socket.gethostname(),
        "node_ip": ray.util.get_node_ip_address(),
        "ray_node_id": context.get_node_id(),
        "ray_actor_id": context.get_actor_id(),
    }
    if device.kind == "cuda":
        placement["cuda_visible_devices"] = os.environ.get("CUDA_VISIBLE_DEVICES")
    return placement


def cluster_capacity(nodes: list[dict[str, Any]], kind: str, cpus_per_worker: int) -> int:
    """Workers the cluster's live nodes hold: one per GPU (each also takes a CPU), or one per
    `cpus_per_worker` CPUs. Counted per node, since a worker cannot span nodes."""
    total = 0
    for node in nodes:
        if not node.get("Alive", True):
            continue
        resources = node.get("Resources", {})
        cpus = int(resources.get("CPU", 0))
        if kind == "cuda":
            total += min(int(resources.get("GPU", 0)), cpus // cpus_per_worker)
        else:
            total += cpus // cpus_per_worker
    return total


def cpus_per_gpu(nodes: list[dict[str, Any]]) -> int | None:
    """A CUDA worker's threads (torch, tokenizer, compile pool) and the CPUs it asks Ray for: its
    node's cores shared out over the node's GPUs, as local workers share a machine's; the smallest
    share over the GPU nodes, so a worker fits on any of them. None without a GPU node."""
    shares = []
    for node in nodes:
        resources = node.get("Resources", {})
        gpus = int(resources.get("GPU", 0))
        if node.get("Alive", True) and gpus:
            shares.append(max(1, int(resources.get("CPU", 0)) // gpus))
    return min(shares) if shares else None


class RayExecutor(Executor):
    """Workers as Ray actors, placed by Ray across the cluster's nodes."""

    name = "ray"
    workers_share_this_machine = False
    replacements_always_start = False
    replacements_keep_their_device = False

    def __init__(self, cfg: ExecutorConfig, log_sink, log_level: int):
        super().__init__(cfg, log_sink, log_level)
        self.ray = _import_ray()
        self._started_ray = False
        self._mailbox: Any = None  # the run's Mailbox actor, made with the first worker
        self._keys: dict[int, Key] = {}  # rank -> its current actor's key in the mailbox
        self._starts: collections.Counter[int] = collections.Counter()
        self._inbox: collections.deque[tuple[Key, Any]] = collections.deque()  # taken, not yet returned
        self.actors: dict[int, Any] = {}
        self.refs: dict[int, Any] = {}
        self._codes: dict[int, int] = {}
        self._reasons: dict[int, str] = {}  # rank -> how its actor was lost, in Ray's words
        self._finished: set[int] = set()  # ranks whose current actor said Finished: it is about to exit
        self._actor_class = None

    @staticmethod
    def check(cfg: ExecutorConfig) -> None:
        """A cluster that does not answer, or would refuse this driver, fails now, in seconds, before
        any output is touched; so does one whose nodes import another chatspace than this one (asked
        once connected: the connection is kept for the run)."""
        address = resolve_ray_address(cfg.ray_address)
        if address == "local":
            return  # a local instance's workers are started from this very environment
        ray = _import_ray()
        started = connect_driver(ray, address)
        try:
            refusal = nodes_chatspace_refusal(ray, address, __version__)
        except BaseException:
            if started:
                disconnect_driver(ray)
            raise
        if refusal:
            if started:
                disconnect_driver(ray)
            raise UsageError(refusal)

    def _connect(self) -> None:
        if not self.ray.is_initialized() or _connected_to is not None:
            connect_driver(self.ray, resolve_ray_address(self.cfg.ray_address))
        self._started_ray = _connected_to is not None
        self._driver_node = self.ray.get_runtime_context().get_node_id()

    def place(self) -> tuple[tuple[Device, ...], int | None]:
        self._connect()
        kind = self.cfg.ray_device
        nodes = [n for n in self.ray.nodes() if n.get("Alive")]
        threads = self.cfg.threads_per_worker or (1 if kind == "cpu" else cpus_per_gpu(nodes))
        cpus_per_worker = threads or 1
        capacity = cluster_capacity(nodes, kind, cpus_per_worker)
        what = "GPU" if kind == "cuda" else f"{cpus_per_worker} CPU(s)"
        if capacity == 0:
            hint = "; use --ray-device cpu" if kind == "cuda" else "; lower --threads-per-worker"
            raise UsageError(
                f"the Ray cluster ({len(nodes)} node(s)) has no room for a worker of {what}{hint}"
            )
        wanted = self.cfg.ray_workers
        count = capacity if wanted is None else min(wanted, capacity)
        if wanted is not None and wanted > capacity:
            log.warning(
                "--ray-workers %d: the Ray cluster (%d node(s)) has room for %d worker(s) of %s; starting %d",
                wanted, len(nodes), capacity, what, count,
            )  # fmt: skip
        else:
            log.info("Ray cluster: %d node(s), room for %d worker(s) of %s", len(nodes), capacity, what)
        return tuple(Device(kind, f"ray-{kind}:{i}") for i in range(count)), threads

    def _open_mailbox(self) -> Any:
        """The run's mailbox, on the driver's node: a lost worker node must not take it along."""
        if self._mailbox is None:
            from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

            self._mailbox = (
                self.ray.remote(Mailbox)
                .options(
                    num_cpus=0,
                    max_restarts=0,
                    scheduling_strategy=NodeAffinitySchedulingStrategy(self._driver_node, soft=False),
                )
                .remote(TASKS_PER_WORKER + 1, MESSAGE_SLOTS)  # + a worker's stop marker
            )
        return self._mailbox

    def _retire(self, rank: int) -> None:
        """Kill `rank`'s actor, and forget its tasks and the messages it left (as its queues went with it)."""
        actor = self.actors.pop(rank, None)
        if actor is not None:
            with contextlib.suppress(Exception):  # already dead
                self.ray.kill(actor, no_restart=True)
        key = self._keys.pop(rank, None)
        if key is not None:
            self._inbox = collections.deque(m for m in self._inbox if m[0] != key)
            with contextlib.suppress(Exception):
                self._mailbox.drop.remote(key)

    def start_worker(self, rank: int) -> None:
        """A new actor for `rank` with a fresh key in the mailbox; Ray places it where the resources are."""
        self._retire(rank)
        self._codes.pop(rank, None)
        self._reasons.pop(rank, None)
        self._finished.discard(rank)
        spec = self.specs[rank]
        if spec.device.kind == "cuda":
            resources = {"num_gpus": 1, "num_cpus": spec.threads or 1}
        else:
            resources = {"num_cpus": spec.threads or 1}
        if self._actor_class is None:
            self._actor_class = self.ray.remote(max_restarts=0, max_task_retries=0)(RayWorkerActor)
        mailbox = self._open_mailbox()
        actor = self._actor_class.options(scheduling_strategy="SPREAD", **resources).remote()
        self._keys[rank] = key = (rank, self._starts[rank])
        self._starts[rank] += 1
        self.actors[rank] = actor
        tasks, messages = MailboxTasks(mailbox, key), MailboxMessages(mailbox, key)
        self.refs[rank] = actor.run.remote(spec, tasks, messages, self.log_level)

    def send(self, rank: int, task: Task | None) -> bool:
        return bool(self.ray.get(self._mailbox.put_task.remote(self._keys[rank], task)))

    def receive(self, timeout: float) -> Message | None:
        deadline = time.monotonic() + timeout
        while True:
            if not self._inbox:
                left = max(0.0, deadline - time.monotonic())
                # Bounded, so a mailbox that stopped answering cannot hang the run.
                taken = self.ray.get(self._mailbox.take.remote(left, TAKE_AT_MOST), timeout=left + 60)
                current = set(self._keys.values())
                self._inbox.extend(m for m in taken if m[0] in current)
                if not self._inbox:
                    return None
            _, msg = self._inbox.popleft()
            if isinstance(msg, logging.LogRecord):  # a worker's log line, sent with its messages
                self.log_sink(msg)
            else:
                if isinstance(msg, Finished):
                    self._finished.add(msg.rank)
                return msg

    def exitcode(self, rank: int) -> int | None:
        if rank in self._codes:
            return self._codes[rank]
        ready, _ = self.ray.wait([self.refs[rank]], timeout=0)
        if not ready:
            return None
        try:
            code = int(self.ray.get(self.refs[rank]))
        except (self.ray.exceptions.RayActorError, self.ray.exceptions.WorkerCrashedError) as e:
            # The actor's process or its node is gone: Ray does not say by which signal.
            first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            self._reasons[rank] = f"lost its Ray actor ({first})"
            code = -signal.SIGKILL
        except Exception as e:  # noqa: BLE001 - a task that raised outside the loop's own handling
            log.error("Ray worker %d ended with %s", rank, type(e).__name__)
            code = 1
        self._codes[rank] = code
        return code

    def exit_reason(self, rank: int) -> str | None:
        return self._reasons.get(rank)

    def join(self, timeout: float) -> None:
        """Wait for the actors that said Finished to return. One that never did (a replacement the run
        stopped waiting for: still loading, or pending where a lost node left no room) never returns by
        itself, and waiting for it kept a finished run open for the whole `timeout`; shutdown kills it."""
        refs = [ref for rank, ref in self.refs.items() if rank in self._finished]
        if refs:
            self.ray.wait(refs, num_returns=len(refs), timeout=timeout)

    def shutdown(self, grace: float = 5.0) -> None:
        """Kill every actor this run made, its mailbox too; a Ray instance started here is stopped too."""
        if not self.ray.is_initialized():
            return
        for rank in list(self.actors):
            self._retire(rank)
        if self._mailbox is not None:
            with contextlib.suppress(Exception):  # already gone
                self.ray.kill(self._mailbox, no_restart=True)
            self._mailbox = None
        if self._started_ray:
            disconnect_driver(self.ray)
