"""Split names with the `datasets` slice syntax: `train[:5]`, `train[10%:20%]`, `test[-100:]`.

The slice is read by `datasets.ReadInstruction` itself, so its meaning (percent rounding, negative
bounds, clamping) is exactly what `load_dataset(split=...)` gives. It selects a contiguous range of the
split's rows by global index; sampling (`--n`, `--p`) and `--max-rows` then apply inside that range.
Several splits joined with `+` are refused: a run reads one split.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from chatspace.errors import UsageError

_SLICE = re.compile(r"^\s*([\w.-]+)\s*\[(.*)\]\s*$")


@dataclass(frozen=True)
class SplitSpec:
    text: str  # as the user wrote it
    name: str  # the split itself (what files and hub splits are named)
    sliced: bool

    def row_range(self, total_rows: int) -> tuple[int, int]:
        """The [start, end) global row range this spec selects from a split of `total_rows` rows."""
        if not self.sliced:
            return 0, total_rows
        from datasets import ReadInstruction

        (absolute,) = ReadInstruction.from_spec(self.text).to_absolute({self.name: total_rows})
        start, end = max(0, absolute.from_), min(total_rows, absolute.to)
        if end <= start:
            raise UsageError(f"--split {self.text!r} selects no rows of the {total_rows:,} in {self.name!r}")
        return start, end

    @property
    def folder(self) -> str:
        """The split's part of output paths: `train`, or `train.10pct..20pct` for `train[10%:20%]`."""
        if not self.sliced:
            return self.name
        inside = _SLICE.match(self.text).group(2)
        lo, _, hi = inside.partition(":")
        part = lambda s, default: s.strip().replace("%", "pct") or default  # noqa: E731
        return f"{self.name}.{part(lo, 'start')}..{part(hi, 'end')}"


def parse_split(text: str) -> SplitSpec:
    """A split name, or one split with one `datasets`-style slice; anything else is a usage error."""
    if "[" not in text and "+" not in text:
        return SplitSpec(text, text, False)
    if "+" in text:
        raise UsageError(
            f"--split {text!r}: one split per run; embed each part as its own run (e.g. --split "
            f"{text.split('+')[0].strip()!r})"
        )
    m = _SLICE.match(text)
    if not m:
        raise UsageError(
            f"--split {text!r} is not a split name or a slice like train[:100] or train[10%:20%]"
        )
    from datasets import ReadInstruction

    try:
        ReadInstruction.from_spec(text)
    except (ValueError, AssertionError) as e:
        raise UsageError(f"--split {text!r}: {str(e).splitlines()[0]}") from None
    return SplitSpec(text, m.group(1), True)
