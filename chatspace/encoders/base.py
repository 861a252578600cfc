"""One encoder interface for local models and remote APIs.

`prepare` (tokenize, count, truncate) runs off the critical path in the worker's reader thread;
`encode` turns prepared rows into float32 vectors in input order; `submit`/`poll` stream chunks
through it (an encoder that batches across chunks, like the local one, overrides them). Rows an encoder refuses are returned
in `Prepared.skipped` with a reason, and are never written.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from chatspace.stats import WorkerStats

#: Rows a worker hands to one prepare/encode call: the grain of progress reports and of the overlap
#: of tokenizing with encoding. An encoder's requests never span two calls (the OpenAI dry run counts so).
CHUNK_ROWS = 1024


@dataclass
class Prepared:
    texts: list[str]
    token_counts: np.ndarray  # tokens that will be embedded, per row
    truncated: np.ndarray  # bool per row
    skipped: dict[int, str] = field(default_factory=dict)  # row position -> reason
    payload: Any = None  # encoder-specific (token ids, request plan)
    # Characters of each text that reached the model (fewer than the text when it was truncated);
    # None when the encoder cannot tell.
    embedded_chars: np.ndarray | None = None


class Encoder(ABC):
    #: The model name stored in every row.
    model_name: str
    #: Called as rows of a submitted chunk come back, before the whole chunk does: (key, rows, tokens).
    #: Encoders that batch across chunks call it per batch, so progress moves with each batch; the
    #: worker sets its own listener, nobody listens by default.
    rows_back: Callable[[Any, int, int], None] = staticmethod(lambda key, rows, tokens: None)

    @property
    @abstractmethod
    def dimension(self) -> int: ...

    @property
    @abstractmethod
    def max_tokens(self) -> int: ...

    @abstractmethod
    def load(self, stats: WorkerStats) -> None:
        """Load and warm up; a worker reports ready only after this returns."""

    @abstractmethod
    def prepare(self, texts: list[str], stats: WorkerStats) -> Prepared: ...

    @abstractmethod
    def encode(self, prepared: Prepared, stats: WorkerStats) -> np.ndarray:
        """(len(texts), dimension) float32 in input order; rows in `prepared.skipped` may hold anything."""

    # --- streaming: chunks in, finished chunks out (encoders that batch across chunks override) ---

    def submit(self, key: Any, prepared: Prepared, stats: WorkerStats) -> None:
        """Hand over a prepared chunk; its embeddings come back from `poll` under `key`."""
        if not hasattr(self, "_submitted"):
            self._submitted: list[tuple[Any, Prepared, WorkerStats]] = []
        self._submitted.append((key, prepared, stats))

    def poll(self, flush: str = "full") -> list[tuple[Any, np.ndarray]]:
        """The chunks finished so far, as (key, embeddings in input order). `flush` says whether more
        input is coming ("full"), none is waiting right now ("starved"), or none will come ("all")."""
        submitted, self._submitted = getattr(self, "_submitted", []), []
        return [(key, self.encode(prepared, stats)) for key, prepared, stats in submitted]

    def has_pending(self) -> bool:
        return bool(getattr(self, "_submitted", None))

    def describe(self) -> dict[str, Any]:
        """What the manifest records about this encoder."""
        return {"model": self.model_name, "dimension": self.dimension, "max_tokens": self.max_tokens}

    def device_stats(self) -> dict[str, float]:
        """Per-worker device figures for the manifest (peak memory, device busy time); none by default."""
        return {}

    def close(self) -> None:  # noqa: B027 - optional hook
        pass
