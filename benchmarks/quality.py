"""Quality measures shared by the benchmarks and the tests: per-row cosine, Spearman, STS Benchmark."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np


def cosine_rows(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Cosine of each row of `a` with the same row of `b`, in float64."""
    a = a.astype(np.float64)
    b = b.astype(np.float64)
    return (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))


def cosine_summary(a: np.ndarray, b: np.ndarray) -> dict:
    cos = cosine_rows(a, b)
    return {"min": float(cos.min()), "mean": float(cos.mean()), "rows": len(cos)}


def spearman(x, y) -> float:
    """Spearman's rank correlation, ties sharing their average rank."""

    def ranks(a):
        a = np.asarray(a, dtype=np.float64)
        order = np.argsort(a, kind="mergesort")
        r = np.empty(len(a))
        r[order] = np.arange(len(a), dtype=np.float64)
        _, inv, counts = np.unique(a, return_inverse=True, return_counts=True)
        sums = np.bincount(inv, weights=r)
        return (sums / counts)[inv]

    rx, ry = ranks(x), ranks(y)
    rx -= rx.mean()
    ry -= ry.mean()
    return float((rx * ry).sum() / np.sqrt((rx * rx).sum() * (ry * ry).sum()))


def sts_dataset(path: Path, work: Path) -> tuple[Path, list[tuple[str, str, float]]]:
    """The test split's unique sentences as JSONL rows, and the (id1, id2, score) pairs."""
    sentences: dict[str, str] = {}
    pairs = []
    with open(path, encoding="utf-8") as fh:
        for line in fh:
            parts = line.rstrip("\n").split("\t")
            if len(parts) < 7:
                continue
            score, s1, s2 = float(parts[4]), parts[5], parts[6]
            ids = []
            for s in (s1, s2):
                if s not in sentences:
                    sentences[s] = f"s{len(sentences):05d}"
                ids.append(sentences[s])
            pairs.append((ids[0], ids[1], score))
    out = work / "sts-sentences.jsonl"
    with open(out, "w", encoding="utf-8") as fh:
        for text, sid in sentences.items():
            fh.write(json.dumps({"id": sid, "text": text}, ensure_ascii=False) + "\n")
    return out, pairs


def sts_score(vectors, pairs) -> float:
    """Spearman x 100 between the pairs' cosines and their gold scores."""
    ids, vec = vectors
    pos = {k: i for i, k in enumerate(ids)}
    a = vec[[pos[p[0]] for p in pairs]]
    b = vec[[pos[p[1]] for p in pairs]]
    return 100 * spearman(cosine_rows(a, b), np.array([p[2] for p in pairs]))
