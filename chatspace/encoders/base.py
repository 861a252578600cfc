"""One encoder interface for local models and remote APIs.

`prepare` (tokenize, count, truncate) runs off the critical path in the worker's reader thread;
`encode` turns prepared rows into float32 vectors in input order. Rows an encoder refuses are returned
in `Prepared.skipped` with a reason, and are never written.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from chatspace.metrics import WorkerStats


@dataclass
class Prepared:
    texts: list[str]
    token_counts: np.ndarray  # tokens that will be embedded, per row
    truncated: np.ndarray  # bool per row
    skipped: dict[int, str] = field(default_factory=dict)  # row position -> reason
    payload: Any = None  # encoder-specific (token ids, request plan)


class Encoder(ABC):
    #: The model name stored in every row.
    model_name: str

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

    def describe(self) -> dict[str, Any]:
        """What the manifest records about this encoder."""
        return {"model": self.model_name, "dimension": self.dimension, "max_tokens": self.max_tokens}

    def close(self) -> None:  # noqa: B027 - optional hook
        pass
