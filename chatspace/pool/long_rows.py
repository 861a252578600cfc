"""`--long-text chunk|mean` inside a worker: a unit's texts over the model's limit become chunk rows
before tokenizing, and under `mean` the chunk vectors fold back into one row per text when the unit
is written. Everything happens within one unit, so a text's chunks land in one shard, all or none.

Chunk rows: id `{id}#{k}`, text exactly the chunk's text, `metadata.chunk = {index, count, char_start,
char_end}`. Mean rows: the source id and full text, the token-weighted mean of the chunk vectors
(unit length when the model normalizes or --normalize is set), `metadata.chunks` = the count.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from chatspace.encoders.chunking import chunker_for, model_normalizes
from chatspace.store.row_kinds import weighted_mean


@dataclass
class MeanGroup:
    """Rows [start, end) of the embedded rows that make one output row."""

    rid: str
    start: int
    end: int
    text: str | None  # the full text when the rows are chunks of it; None: one row, kept as it is


class LongRows:
    """One worker's chunking: its encoder's tokenizer and limit, the run's mode and overlap."""

    def __init__(self, mode: str, overlap: int, encoder: Any):
        self.mode = mode
        self.chunker = chunker_for(encoder, overlap)
        self.normalize = model_normalizes(encoder)

    def expand(self, unit: Any) -> None:
        """Replace the unit's ids/texts/meta by the rows to embed; count what was cut in unit.expansion."""
        windows = self.chunker.windows(unit.texts)
        ids, texts, meta, groups = [], [], [], []
        counts = unit.expansion
        for rid, text, m, cuts in zip(unit.ids, unit.texts, unit.meta, windows, strict=True):
            start = len(ids)
            if cuts is None:
                ids.append(rid)
                texts.append(text)
                meta.append(m)
                groups.append(MeanGroup(rid, start, start + 1, None))
                continue
            counts["texts_chunked"] = counts.get("texts_chunked", 0) + 1
            counts["chunk_rows"] = counts.get("chunk_rows", 0) + len(cuts)
            counts["most_chunks"] = max(counts.get("most_chunks", 0), len(cuts))
            for k, w in enumerate(cuts):
                ids.append(f"{rid}#{k}")
                texts.append(text[w.char_start : w.char_end])
                chunk = {"index": k, "count": len(cuts), "char_start": w.char_start, "char_end": w.char_end}
                meta.append({**m, "chunk": chunk})
            groups.append(MeanGroup(rid, start, len(ids), text))
        counts["source_texts"] = counts.get("source_texts", 0) + len(unit.texts)
        unit.ids, unit.texts, unit.meta = ids, texts, meta
        unit.groups = groups if self.mode == "mean" else None

    def fold(self, unit: Any, emb: np.ndarray) -> np.ndarray:
        """Under `mean`: one row per source text (its chunks' token-weighted mean); else `emb` as is."""
        if unit.groups is None:
            return emb
        ids, texts, meta, rows = [], [], [], []
        for g in unit.groups:
            first = unit.meta[g.start]
            if g.text is None:
                ids.append(unit.ids[g.start])
                texts.append(unit.texts[g.start])
                meta.append(first)
                rows.append(emb[g.start])
                continue
            parts = unit.meta[g.start : g.end]
            m = {k: v for k, v in first.items() if k != "chunk"}
            m["chunks"] = g.end - g.start
            m["tokens"] = int(sum(p.get("tokens", 0) for p in parts))
            m["truncated"] = False
            skip = next((p["skip"] for p in parts if "skip" in p), None)
            if skip is not None:
                m["skip"] = skip
            vector = weighted_mean(emb[g.start : g.end], [p.get("tokens", 1) for p in parts], self.normalize)
            ids.append(g.rid)
            texts.append(g.text)
            meta.append(m)
            rows.append(vector.astype(np.float32))
        unit.ids, unit.texts, unit.meta = ids, texts, meta
        return np.stack(rows) if rows else emb[:0]


def row_ends(meta: list[dict]) -> list[bool] | None:
    """Per row to embed: whether it is the last of its source row (progress counts source rows);
    None when every source row is one row."""
    ends = [i + 1 == len(meta) or meta[i + 1]["row"] != m["row"] for i, m in enumerate(meta)]
    return None if all(ends) else ends
