"""A dataset's description as `describe-dataset` reports it: the info dict and its printed summary."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from chatspace.data.describe.render import render
from chatspace.errors import UsageError

FORMAT = "chatspace.dataset-info/1"
SOURCES = ("auto", "huggingface", "local")


@dataclass
class DatasetReport:
    """What describing a dataset found (`info`, as written to `path`); `render()` is the printed summary."""

    info: dict[str, Any]
    path: Path | None = None

    @property
    def splits(self) -> dict[str, dict[str, Any]]:
        return self.info["splits"]

    @property
    def features(self) -> dict[str, dict[str, Any]]:
        return self.info["features"]

    @property
    def text_fields(self) -> list[dict[str, Any]]:
        return self.info["text_fields"]

    def render(self) -> str:
        return render(self.info, self.path)


def check_request(source: str, sample_rows: int) -> None:
    """Usage errors in what was asked, before anything is opened or written."""
    if source not in SOURCES:
        raise UsageError(f"--source must be auto, huggingface or local, not {source!r}")
    if sample_rows < 0:
        raise UsageError("--sample-rows must be 0 or more")


def inspect_dataset(
    name: str, subset: str | None, split: str | None, source: str, sample_rows: int, cache_dir: Path
) -> dict[str, Any]:
    """The info of a Hub dataset or a local path (`cache_dir` keeps the JSONL line index of local files).

    `split` limits it to one split (all splits otherwise); `sample_rows` rows of one split (the one asked
    for, else `train`, else the first) are read for the text-field statistics.
    """
    from chatspace.data.sources import is_local

    check_request(source, sample_rows)
    if is_local(name, source):
        from chatspace.data.describe.local import inspect_local

        info = inspect_local(name, subset, split, sample_rows, cache_dir)
    else:
        from chatspace.data.describe.hub import inspect_hub

        info = inspect_hub(name, subset, split, sample_rows)
    info["requested"] = {"subset": subset, "split": split, "sample_rows": sample_rows}
    return info
