"""Running batches on a torch device: two batches in flight, out-of-memory recovery, compile counters.

On CUDA a batch is launched (inputs pinned and copied without blocking, the forward queued, the
result copied back into pinned host memory without blocking, an event recorded) and collected later
(wait on the event), so the host pads and launches batch i+1 while the GPU still runs batch i. On the
CPU the same two calls run synchronously, so the code path is one and the same.
"""

from __future__ import annotations

import gc
import time
from dataclasses import dataclass
from typing import Any

import numpy as np


@dataclass
class InFlight:
    """A launched batch whose embeddings may still be on their way back."""

    batch: Any
    result: Any  # a torch tensor in (pinned) host memory, or a numpy array
    done: Any = None  # torch.cuda.Event recorded after the copy back; None on the CPU
    started: Any = None  # torch.cuda.Event recorded before the forward
    launched_at: float = 0.0
    launch_seconds: float = 0.0

    def collect(self) -> tuple[np.ndarray, float]:
        """(float32 embeddings, GPU seconds between the batch's start and end events; 0 on the CPU)."""
        gpu_seconds = 0.0
        if self.done is not None:
            self.done.synchronize()
            gpu_seconds = self.started.elapsed_time(self.done) / 1000.0
        out = self.result.numpy() if hasattr(self.result, "numpy") else self.result
        return out, gpu_seconds


def launch(embed, features: dict[str, Any], *, cuda: bool) -> tuple[Any, Any, Any]:
    """Run `embed` (features -> embeddings tensor) on `features` (torch tensors on the host);
    returns (result, started, done)."""
    import torch

    if not cuda:
        with torch.inference_mode():
            emb = embed(features)
        return emb.float().numpy(), None, None
    started = torch.cuda.Event(enable_timing=True)
    done = torch.cuda.Event(enable_timing=True)
    moved = {
        k: v.pin_memory().to("cuda", non_blocking=True) if isinstance(v, torch.Tensor) else v
        for k, v in features.items()
    }
    started.record()
    with torch.inference_mode():
        emb = embed(moved).float()
        host = torch.empty(emb.shape, dtype=torch.float32, pin_memory=True)
        host.copy_(emb, non_blocking=True)
    done.record()
    return host, started, done


def is_out_of_memory(exc: BaseException) -> bool:
    import torch

    return isinstance(exc, torch.OutOfMemoryError)


def free_device_memory() -> None:
    """Drop what a failed attempt left behind and give cached blocks back to the allocator."""
    import torch

    gc.collect()
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        torch.cuda.empty_cache()


def peak_allocated_gib() -> float | None:
    import torch

    if torch.cuda.is_available() and torch.cuda.is_initialized():
        return torch.cuda.max_memory_allocated() / 2**30
    return None


# --- torch.compile ---------------------------------------------------------------------------------


@dataclass
class CompileCounters:
    """Dynamo's own counters: distinct graphs compiled, graph breaks, frames over the recompile limit."""

    graphs: int = 0
    graph_breaks: int = 0
    limit_hits: int = 0

    @classmethod
    def now(cls) -> CompileCounters:
        try:
            from torch._dynamo.utils import counters
        except Exception:  # noqa: BLE001 - no dynamo: nothing compiled
            return cls()
        limit_hits = sum(
            n
            for group in ("graph_break", "unimplemented")
            for reason, n in counters[group].items()
            if "recompile limit" in str(reason).lower() or "cache_size_limit" in str(reason)
        )
        breaks = sum(counters["graph_break"].values())
        return cls(
            graphs=int(counters["stats"]["unique_graphs"]),
            graph_breaks=int(breaks),
            limit_hits=int(limit_hits),
        )

    def __sub__(self, other: CompileCounters) -> CompileCounters:
        return CompileCounters(
            self.graphs - other.graphs,
            self.graph_breaks - other.graph_breaks,
            self.limit_hits - other.limit_hits,
        )


def mark_dynamic(features: dict[str, Any]) -> None:
    """Tell dynamo the batch and sequence dimensions vary, so one graph serves every batch shape.

    A dimension of size 1 is left alone: dynamo specialises sizes 0 and 1 anyway (one extra graph for
    one-row batches, compiled during warm-up)."""
    import torch

    for value in features.values():
        if isinstance(value, torch.Tensor) and value.dim() >= 2:
            for dim in (0, 1):
                if value.shape[dim] >= 2:
                    torch._dynamo.mark_dynamic(value, dim)


def set_compile_threads(threads: int | None) -> None:
    """Inductor compiles with a pool of this many processes (default: every core, in every worker)."""
    if not threads:
        return
    import torch._inductor.config as inductor_config

    inductor_config.compile_threads = max(1, int(threads))


def now() -> float:
    return time.perf_counter()
