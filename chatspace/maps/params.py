"""What a reduction is asked for: method, dimensions, sample and method settings, checked when built.
Light on purpose (no numpy): the command line reads its defaults and choices from here."""

from __future__ import annotations

from dataclasses import dataclass

from chatspace.config.base import choice
from chatspace.errors import UsageError

METHODS = ("umap", "tsne", "pca")
METRICS = ("cosine", "euclidean", "manhattan", "correlation")


@dataclass(frozen=True)
class ReduceParams:
    """The options of one reduce-embeddings run (its sidecar records them)."""

    method: str = choice("umap", METHODS)
    n_components: int = 2
    max_samples: int | None = None
    sample_seed: int = 42
    seed: int = 42
    n_neighbors: int = 15
    min_dist: float = 0.1
    metric: str = choice("cosine", METRICS)
    perplexity: float = 30.0
    full_text: bool = True
    # Of a run of messages (`--extract each-turn`): only these roles (`assistant,user`, as the run records
    # them) and/or these turns (conversation indices, `0,1`); the sample is drawn among those rows.
    roles: str | None = None
    turns: str | None = None

    def __post_init__(self) -> None:
        if self.roles is not None:
            from chatspace.config.data import canonical_roles

            object.__setattr__(self, "roles", canonical_roles(self.roles))
        if self.turns is not None:
            try:
                turns = sorted({int(t) for t in self.turns.split(",") if t.strip()})
            except ValueError:
                turns = []
            if not turns or turns[0] < 0:
                raise UsageError(f"--turns takes turn numbers from 0, comma-separated (got {self.turns!r})")
            object.__setattr__(self, "turns", ",".join(map(str, turns)))
        if self.method not in METHODS:
            raise UsageError(f"--method must be one of {', '.join(METHODS)}, not {self.method!r}")
        if self.n_components not in (2, 3):
            raise UsageError("--n-components must be 2 or 3")
        if self.max_samples is not None and self.max_samples < 1:
            raise UsageError("--max-samples must be at least 1")
        if self.n_neighbors < 2:
            raise UsageError("--n-neighbors must be at least 2")
        if not 0.0 <= self.min_dist <= 1.0:
            raise UsageError("--min-dist must be between 0 and 1")
        if self.perplexity <= 0:
            raise UsageError("--perplexity must be positive")
        if self.metric not in METRICS:
            raise UsageError(f"--metric must be one of {', '.join(METRICS)}, not {self.metric!r}")
