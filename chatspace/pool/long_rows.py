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
        """Replace the unit's rows to embed (ids, texts, source rows, extra metadata) by their chunks;
        count what was cut in unit.expansion. Runs before the rows are located in their files."""
        windows = self.chunker.windows(unit.texts)
        ids, texts, src, extra, groups = [], [], [], [], []
        counts = unit.expansion
        for i, (rid, text, cuts) in enumerate(zip(unit.ids, unit.texts, windows, strict=True)):
            m = unit.extra[i] if unit.extra is not None else None
            start = len(ids)
            if cuts is None:
                ids.append(rid)
                texts.append(text)
                src.append(i)
                extra.append(m)
                groups.append(MeanGroup(rid, start, start + 1, None))
                continue
            counts["texts_chunked"] = counts.get("texts_chunked", 0) + 1
            counts["chunk_rows"] = counts.get("chunk_rows", 0) + len(cuts)
            counts["most_chunks"] = max(counts.get("most_chunks", 0), len(cuts))
            for k, w in enumerate(cuts):
                ids.append(f"{rid}#{k}")
                texts.append(text[w.char_start : w.char_end])
                src.append(i)
                chunk = {"index": k, "count": len(cuts), "char_start": w.char_start, "char_end": w.char_end}
                extra.append({**(m or {}), "chunk": chunk})
            groups.append(MeanGroup(rid, start, len(ids), text))
        counts["source_texts"] = counts.get("source_texts", 0) + len(unit.texts)
        unit.ids, unit.texts = ids, texts
        unit.rows = unit.rows[np.asarray(src, dtype=np.int64)]
        unit.extra = extra if any(extra) else None
        unit.groups = groups if self.mode == "mean" else None

    def fold(self, unit: Any, emb: np.ndarray) -> np.ndarray:
        """Under `mean`: one row per source text (its chunks' token-weighted mean); else `emb` as is."""
        if unit.groups is None:
            return emb
        first = np.asarray([g.start for g in unit.groups], dtype=np.int64)
        ids, texts, extra, rows, skip = [], [], [], [], {}
        tokens, truncated, text_chars = unit.tokens[first], unit.truncated[first], unit.text_chars[first]
        for j, g in enumerate(unit.groups):
            m = unit.extra[g.start] if unit.extra is not None else None
            reason = next((unit.skip[p] for p in range(g.start, g.end) if p in unit.skip), None)
            if reason is not None:
                skip[j] = reason
            if g.text is None:
                ids.append(unit.ids[g.start])
                texts.append(unit.texts[g.start])
                extra.append(m)
                rows.append(emb[g.start])
                continue
            weights = unit.tokens[g.start : g.end]
            tokens[j], truncated[j], text_chars[j] = int(weights.sum()), False, -1
            ids.append(g.rid)
            texts.append(g.text)
            extra.append({**{k: v for k, v in (m or {}).items() if k != "chunk"}, "chunks": g.end - g.start})
            rows.append(weighted_mean(emb[g.start : g.end], weights, self.normalize).astype(np.float32))
        unit.ids, unit.texts, unit.skip = ids, texts, skip
        unit.rows, unit.file_no, unit.file_row = unit.rows[first], unit.file_no[first], unit.file_row[first]
        unit.tokens, unit.truncated, unit.text_chars = tokens, truncated, text_chars
        unit.extra = extra if any(extra) else None
        return np.stack(rows) if rows else emb[:0]


def row_ends(rows: np.ndarray) -> np.ndarray | None:
    """Per row to embed: whether it is the last of its source row (progress counts source rows);
    None when every source row is one row."""
    ends = np.ones(len(rows), bool)
    ends[:-1] = rows[1:] != rows[:-1]
    return None if ends.all() else ends
