"""What describing any dataset finds beyond its identity, and the column types a sample of JSON shows.

Local and Hub inspection fill the same `Findings` (splits, features, the sample, the fields worth
embedding, notes), so an info.json has the same parts whichever kind of dataset it describes.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from chatspace.data.field_survey import id_candidates, survey_fields


def plural(n: int, word: str) -> str:
    return f"{n:,} {word}" + ("" if n == 1 else "s")


def main_split(names: Sequence[str], asked: str | None) -> str | None:
    """The split whose rows are sampled: the one asked for, else `train`, else the first."""
    if asked is not None:
        return asked
    if "train" in names:
        return "train"
    return names[0] if names else None


@dataclass
class Findings:
    """The parts of an info.json that every dataset has, filled in as inspection goes."""

    main: str | None  # the split the features and the sample are of
    splits: dict[str, dict[str, Any]] = field(default_factory=dict)
    features: dict[str, dict[str, Any]] = field(default_factory=dict)
    sample: dict[str, Any] = field(default_factory=dict)
    text_fields: list[dict[str, Any]] = field(default_factory=list)
    not_text_fields: list[dict[str, Any]] = field(default_factory=list)
    id_candidates: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def survey(self, rows: list[dict], columns: list[str]) -> None:
        """The fields worth embedding and the possible ids, as the sampled rows show them."""
        self.text_fields, self.not_text_fields = survey_fields(rows, columns, self.features)
        self.id_candidates = id_candidates(rows, columns)

    def as_info(self) -> dict[str, Any]:
        return {
            "splits": self.splits,
            "features_split": self.main,
            "features": self.features,
            "sample": self.sample,
            "text_fields": self.text_fields,
            "not_text_fields": self.not_text_fields,
            "id_candidates": self.id_candidates,
            "notes": self.notes,
        }


# --- feature types from JSON values -------------------------------------------------------------------


def _kind(v: Any) -> str:
    if isinstance(v, bool):
        return "bool"
    if isinstance(v, int | float):
        return "number"
    if isinstance(v, str):
        return "string"
    if isinstance(v, list | tuple):
        return "list"
    if isinstance(v, dict):
        return "struct"
    return type(v).__name__


def _arrow_type(values: list[Any]) -> str:
    """The Arrow type pyarrow infers for these values (their union of keys for structs)."""
    import pyarrow as pa

    try:
        return str(pa.array(values).type)
    except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError, OverflowError):
        return f"{_kind(values[0])} (mixed element types)"


def infer_features(
    rows: list[Any], columns: list[str], notes: list[str], split: str
) -> dict[str, dict[str, Any]]:
    """JSONL has no schema: each column's type as the sampled values show it, mixed types called out."""
    dicts = [r for r in rows if isinstance(r, dict)]
    out: dict[str, dict[str, Any]] = {}
    for col in columns:
        present = [r[col] for r in dicts if col in r]
        values = [v for v in present if v is not None]
        feature: dict[str, Any] = {"inferred_from_rows": len(dicts)}
        if len(present) < len(dicts):
            feature["missing"] = len(dicts) - len(present)
        if len(values) < len(present):
            feature["nulls"] = len(present) - len(values)
        by_kind: dict[str, list[Any]] = {}
        for v in values:
            by_kind.setdefault(_kind(v), []).append(v)
        if not values:
            feature["type"] = "null" if present else "unknown (not in the sample)"
        elif len(by_kind) == 1:
            feature["type"] = _arrow_type(values)
        else:
            seen = {_arrow_type(vs): len(vs) for vs in by_kind.values()}
            feature["type"] = "mixed: " + ", ".join(
                f"{t} ({n})" for t, n in sorted(seen.items(), key=lambda x: -x[1])
            )
            feature["mixed"] = True
            feature["types_seen"] = seen
            notes.append(
                f"{split}: column {col!r} has mixed types in the sample: "
                + ", ".join(f"{t} in {plural(n, 'row')}" for t, n in seen.items())
            )
        out[col] = feature
    return out
