"""The ANN index against exact search: build time, recall@10 and single-query latency (p50/p99).

Vectors are real-ish, not uniform noise (on which no index beats a scan): a mixture of 2,000 topics on
the unit sphere in 384 dimensions (MiniLM's size), each vector its topic's centre plus noise, so a
query's neighbours sit in a few regions as text embeddings' do. Queries are held-out draws of the same
mixture. Ground truth is faiss' exact inner-product scan; each index is built through
chatspace.query.ann exactly as `chatspace index` builds it (default parameters).

    python benchmarks/bench.py --case search                  # 100k and 1M vectors
    python benchmarks/bench.py --case search --rows 20000     # one size only
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import numpy as np

from chatspace.query import ann

DIM = 384
TOPICS = 2000
QUERIES = 500  # recall is averaged over these
LATENCY_QUERIES = 300  # timed one at a time, as `chatspace search` asks
K = 10
#: (kind, quantize) built at each size; HNSW is left out at 1M on a small machine (its build dominates).
KINDS = {
    100_000: [("flat", "none"), ("ivf", "none"), ("hnsw", "none"), ("hnsw", "int8")],
    1_000_000: [("flat", "none"), ("ivf", "none"), ("ivf", "int8")],
}


def mixture(n: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centres = np.random.default_rng(0).standard_normal((TOPICS, DIM)).astype(np.float32)
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    out = np.empty((n, DIM), dtype=np.float32)
    for start in range(0, n, 100_000):
        m = min(100_000, n - start)
        topic = rng.integers(0, TOPICS, m)
        block = centres[topic] + 0.06 * rng.standard_normal((m, DIM)).astype(np.float32)
        out[start : start + m] = block / np.linalg.norm(block, axis=1, keepdims=True)
    return out


def blocks_of(vectors: np.ndarray, rows: int = 100_000):
    return lambda: ((None, vectors[s : s + rows]) for s in range(0, len(vectors), rows))


def measure(vectors: np.ndarray, queries: np.ndarray, truth: np.ndarray, kind: str, quantize: str) -> dict:
    import faiss

    params = ann.IndexParams(kind=kind, quantize=quantize).resolved(len(vectors))
    t0 = time.perf_counter()
    index = ann.build(faiss, params, DIM, len(vectors), blocks_of(vectors))
    build_s = time.perf_counter() - t0
    loaded = ann.LoadedIndex(index, {}, params)
    _, found = loaded.search(queries, K)
    recall = float(np.mean([len(set(f) & set(t)) / K for f, t in zip(found, truth, strict=True)]))
    times = []
    for q in queries[:LATENCY_QUERIES]:
        t = time.perf_counter()
        loaded.search(q[None, :], K)
        times.append(time.perf_counter() - t)
    size = len(ann.serialize(faiss, index, params))
    return {
        "kind": kind,
        "quantize": quantize,
        "params": {k: v for k, v in vars(params).items() if v is not None},
        "build_s": build_s,
        "recall_at_10": recall,
        "p50_ms": 1000 * float(np.percentile(times, 50)),
        "p99_ms": 1000 * float(np.percentile(times, 99)),
        "bytes": size,
    }


def exact_latency(vectors: np.ndarray, queries: np.ndarray) -> dict:
    """One query against every vector with numpy (what `chatspace search` does per shard, minus reading)."""
    times = []
    for q in queries[:50]:
        t = time.perf_counter()
        scores = vectors @ q
        np.argpartition(-scores, K)[:K]
        times.append(time.perf_counter() - t)
    return {
        "p50_ms": 1000 * float(np.percentile(times, 50)),
        "p99_ms": 1000 * float(np.percentile(times, 99)),
    }


def main(args) -> int:
    import faiss

    sizes = [args.rows] if args.rows else [100_000, 1_000_000]
    results = {
        "dim": DIM,
        "topics": TOPICS,
        "k": K,
        "faiss": faiss.__version__,
        "threads": faiss.omp_get_max_threads(),
        "cpus": os.cpu_count(),
        "sizes": [],
    }
    for n in sizes:
        vectors = mixture(n, seed=1)
        queries = mixture(QUERIES, seed=2)
        exact = faiss.IndexFlatIP(DIM)
        exact.add(vectors)
        t0 = time.perf_counter()
        _, truth = exact.search(queries, K)
        truth_s = time.perf_counter() - t0
        entry = {"rows": n, "exact_numpy": exact_latency(vectors, queries), "truth_s": truth_s, "indexes": []}
        del exact
        for kind, quantize in KINDS.get(n, KINDS[100_000]):
            row = measure(vectors, queries, truth, kind, quantize)
            entry["indexes"].append(row)
            print(
                f"{n:>9,} {kind:>5}/{quantize:<5} build {row['build_s']:7.1f}s  recall@10 {row['recall_at_10']:.3f}  "
                f"p50 {row['p50_ms']:7.2f} ms  p99 {row['p99_ms']:7.2f} ms  {row['bytes'] / 1e6:8.1f} MB",
                flush=True,
            )
        print(
            f"{n:>9,} exact numpy scan: p50 {entry['exact_numpy']['p50_ms']:.2f} ms, p99 {entry['exact_numpy']['p99_ms']:.2f} ms",
            flush=True,
        )
        results["sizes"].append(entry)
    out = args.out or Path(__file__).resolve().parents[1] / ".cache" / "search.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=1) + "\n")
    print(f"results written to {out}")
    return 0
