"""Where a run writes and how: the output root, the run's name and id, shards and stored precision."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field

from chatspace.config.base import ConfigPart, check_positive, choice
from chatspace.errors import UsageError

EMBEDDING_DTYPES = ("float32", "float16")
#: A run id names a log file and is written into every row: one safe path component, nothing more.
RUN_ID_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")
#: A --run-name is one path component exactly as written (what store.layout.slug leaves unchanged):
#: no leading dot or underscore, no trailing underscore, at most 120 characters.
RUN_NAME_PATTERN = re.compile(r"[A-Za-z0-9=+-](?:[A-Za-z0-9._=+-]{0,118}[A-Za-z0-9.=+-])?")


def default_output_root() -> str:
    return os.environ.get("CHATSPACE_ROOT") or "/workspace"


@dataclass(frozen=True)
class OutputConfig(ConfigPart):
    """The run's place under the output root; shard size and stored precision change the rows."""

    output_root: str = field(default_factory=default_output_root)
    run_id: str | None = None  # None: a timestamp and a random suffix
    run_name: str | None = None  # names the run's folder instead of its text field and extraction
    resume: bool = False
    overwrite: bool = False
    rows_per_shard: int = 10_000
    embedding_dtype: str = choice("float32", EMBEDDING_DTYPES)
    progress: bool = True

    IDENTITY = ("rows_per_shard", "embedding_dtype")

    def validate(self) -> None:
        if self.output_root is None:  # not given: the environment's root, as when left out
            object.__setattr__(self, "output_root", default_output_root())
        if self.run_name is not None:
            check_run_name(self.run_name)
        check_positive("rows_per_shard", self.rows_per_shard)
        if self.resume and self.overwrite:
            raise UsageError("give --resume or --overwrite, not both")
        if self.run_id is not None:
            check_run_id(self.run_id)


def is_safe_run_id(run_id: object) -> bool:
    """A run id becomes `logs/{run_id}.log`: letters, digits, `.`, `_`, `-` only, never `..`."""
    return isinstance(run_id, str) and bool(RUN_ID_PATTERN.fullmatch(run_id)) and ".." not in run_id


def check_run_id(run_id: str) -> str:
    if not is_safe_run_id(run_id):
        raise UsageError(
            f"--run-id {run_id!r} is not a valid run id: use 1-128 letters, digits, '.', '_' or '-', "
            "starting with a letter or digit, without '..'"
        )
    return run_id


def check_run_name(name: str) -> None:
    """A --run-name is one path component as written: letters, digits and . _ - + = only."""
    if not RUN_NAME_PATTERN.fullmatch(name) or "__" in name:
        raise UsageError(f"--run-name {name!r}: use letters, digits and . _ - + = (no '__', no leading dot)")
