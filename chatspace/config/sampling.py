"""Which of the dataset's rows a run embeds: all, exactly N, each with probability P, or the first N."""

from __future__ import annotations

from dataclasses import dataclass

from chatspace.config.base import ConfigPart
from chatspace.errors import UsageError


@dataclass(frozen=True)
class SamplingConfig(ConfigPart):
    """A reproducible sample: the same seed and options select the same rows on every machine."""

    n: int | None = None  # exactly N rows, uniformly without replacement
    p: float | None = None  # each row independently with probability P
    max_rows: int | None = None  # the first N selected rows, in dataset order (quick tests)
    seed: int = 42
    # Which --n sampler draws the rows (chatspace.data.sampling): None is version 1, what every run
    # made before versions were recorded used. A run that starts afresh records the newest; a resume
    # keeps its run's (store.manifest.choose_sampler). Out of the hash at None, so old runs keep theirs.
    sampler: int | None = None

    ADDED_LATER = {"max_rows": None, "sampler": None}

    def validate(self) -> None:
        if self.sampler not in (None, 1, 2):
            raise UsageError(f"sampler must be 1 or 2 (the --n sampler version), not {self.sampler!r}")
        if self.sampler == 1 or self.n is None:  # version 1 is written as none; only --n has one
            object.__setattr__(self, "sampler", None)
        if self.n is not None and self.p is not None:
            raise UsageError("give --n or --p, not both")
        if self.max_rows is not None and (self.n is not None or self.p is not None):
            raise UsageError("give --max-rows or --n/--p, not both (--max-rows takes rows in dataset order)")
        if self.max_rows is not None and self.max_rows <= 0:
            raise UsageError(f"--max-rows must be a positive number of rows, not {self.max_rows}")
        if self.n is not None and self.n <= 0:
            raise UsageError(f"--n must be a positive number of rows, not {self.n}")
        if self.n is not None and self.seed < 0:
            raise UsageError(f"--seed must be 0 or more with --n, not {self.seed}")
        if self.p is not None and not (0.0 < self.p <= 1.0):
            raise UsageError(f"--p must be a probability in (0, 1], not {self.p}")
