"""Running batches on a torch device: two batches in flight, out-of-memory recovery, compile counters.

On CUDA a batch is launched (inputs pinned and copied without blocking, the forward queued, the
result copied back into pinned host memory without blocking, an event recorded) and collected later
(wait on the event), so the host pads and launches batch i+1 while the GPU still runs batch i. On the
CPU the same two calls run synchronously, so the code path is one and the same.
"""

from __future__ import annotations

import gc
import logging
import time
from dataclasses import dataclass
from typing import Any

import numpy as np

log = logging.getLogger(__name__)


@dataclass
class InFlight:
    """A launched batch whose embeddings may still be on their way back."""

    batch: Any
    result: Any  # a torch tensor in (pinned) host memory, or a numpy array
    done: Any = None  # torch.cuda.Event recorded after the copy back; None on the CPU
    started: Any = None  # torch.cuda.Event recorded before the forward
    launched_at: float = 0.0
    launch_seconds: float = 0.0

    def finished(self) -> bool:
        """True when collect() would not wait (always on the CPU)."""
        return self.done is None or bool(self.done.query())

    def collect(self) -> tuple[np.ndarray, float]:
        """(float32 embeddings, GPU seconds between the batch's start and end events; 0 on the CPU)."""
        gpu_seconds = 0.0
        if self.done is not None:
            self.done.synchronize()
            gpu_seconds = self.started.elapsed_time(self.done) / 1000.0
        out = self.result.numpy() if hasattr(self.result, "numpy") else self.result
        return out, gpu_seconds


def to_device(features: dict[str, Any], device: str, *, pin: bool, dynamic: bool) -> dict[str, Any]:
    """The tensors that enter the model: copies on `device` (from pinned memory, without blocking,
    when `pin`), marked dynamic when compiled. The marks go on the copies: dynamo keeps them on the
    tensor object, so marks on the host tensors would be lost in the copy (and every new shape
    would compile again)."""
    import torch

    moved = {
        k: (v.pin_memory() if pin else v).to(device, non_blocking=pin, copy=True)
        if isinstance(v, torch.Tensor)
        else v
        for k, v in features.items()
    }
    if dynamic:
        mark_dynamic(moved)
    return moved


def launch(embed, features: dict[str, Any], *, cuda: bool, dynamic: bool = False) -> tuple[Any, Any, Any]:
    """Run `embed` (features -> embeddings tensor) on `features` (torch tensors on the host), copied
    to the device as to_device does (on the CPU too: the same copy, the same marks); returns
    (result, started, done)."""
    import torch

    if not cuda:
        moved = to_device(features, "cpu", pin=False, dynamic=dynamic)
        with torch.inference_mode():
            emb = embed(moved)
        return emb.float().numpy(), None, None
    started = torch.cuda.Event(enable_timing=True)
    done = torch.cuda.Event(enable_timing=True)
    moved = to_device(features, "cuda", pin=True, dynamic=dynamic)
    started.record()
    with torch.inference_mode():
        emb = embed(moved).float()
        host = torch.empty(emb.shape, dtype=torch.float32, pin_memory=True)
        host.copy_(emb, non_blocking=True)
    done.record()
    return host, started, done


def warm_up_shapes(
    *, max_tokens: int, budget: int | None, batch_size: int, compiled: bool, cuda: bool
) -> list[tuple[int, int]]:
    """(rows, length) of the warm-up batches, the largest first. Each is a batch the planner itself
    can make (rows x length within the budget, or a single row), so no warm-up needs more memory
    than a real batch of the budget.

    Compiled: the largest many-row batch first (Inductor sizes its indexing from the first shape it
    sees: seen small, it guards on 32-bit indexing and compiles again once batch x length^2 passes
    2^31), the one-row graph at the longest length, then smaller shapes that must reuse both graphs.
    Eager on CUDA: the largest batch, so the allocator grows (or the budget adapts) before the clock
    starts, and a small one. Eager on the CPU: a small batch."""
    short = min(9, max_tokens)
    if budget is None:
        largest = (batch_size, max_tokens)
    else:
        length = min(max_tokens, max(2, budget // 2))  # two rows at least: the many-row graph
        largest = (max(2, budget // length), length)
    if compiled:
        return [largest, (1, max_tokens), (3, short), (1, short)]
    small = (2, min(16, max_tokens))
    return [largest, small] if cuda else [small]


HOST_FREE_SDPA = "chatspace_sdpa"


def _sdpa_mask_without_skips(*args, **kwargs):
    """transformers' own SDPA mask, never skipped: deciding to skip it reads the mask's values on the
    host (`padding_mask.all()` in masking_utils), which waits for the device in every forward."""
    from transformers.masking_utils import sdpa_mask

    kwargs["allow_is_causal_skip"] = False
    kwargs["allow_is_bidirectional_skip"] = False
    return sdpa_mask(*args, **kwargs)


def use_host_free_masks(model) -> bool:
    """Run `model`'s SDPA attention under an attention implementation whose mask needs no host check
    (HOST_FREE_SDPA: transformers' SDPA attention and SDPA mask, the mask always built, as it is
    anyway whenever a batch has padding). Other implementations are left as they are. Returns
    whether it applied."""
    first = model[0] if len(model) else None
    hf = getattr(first, "model", None) or getattr(first, "auto_model", None)
    config = getattr(hf, "config", None)
    if config is None or getattr(config, "_attn_implementation", None) != "sdpa":
        return False
    try:
        from transformers import AttentionInterface
        from transformers.integrations.sdpa_attention import sdpa_attention_forward
        from transformers.masking_utils import AttentionMaskInterface

        AttentionInterface.register(HOST_FREE_SDPA, sdpa_attention_forward)
        AttentionMaskInterface.register(HOST_FREE_SDPA, _sdpa_mask_without_skips)
        hf.set_attn_implementation(HOST_FREE_SDPA)
    except Exception as e:  # noqa: BLE001 - an older or newer transformers: the stock masks still work
        log.info("attention masks stay transformers' own (%s: %s)", type(e).__name__, e)
        return False
    return config._attn_implementation == HOST_FREE_SDPA


# Allocation failures that CUDA libraries raise as a plain RuntimeError rather than torch's
# OutOfMemoryError (cuBLAS/cuDNN handles and workspaces, a kernel launch that cannot allocate).
OUT_OF_MEMORY_MESSAGES = (
    "CUBLAS_STATUS_ALLOC_FAILED",
    "CUDNN_STATUS_ALLOC_FAILED",
    "CUDNN_STATUS_NOT_ENOUGH_WORKSPACE",
    "CUDA error: out of memory",
    "CUDA out of memory",
)


def is_out_of_memory(exc: BaseException) -> bool:
    """torch's OutOfMemoryError, or a CUDA library's allocation failure worded as a RuntimeError:
    either way the batch is split and retried, not the worker lost."""
    import torch

    if isinstance(exc, torch.OutOfMemoryError):
        return True
    return isinstance(exc, RuntimeError) and any(m in str(exc) for m in OUT_OF_MEMORY_MESSAGES)


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
