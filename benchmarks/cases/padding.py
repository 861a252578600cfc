"""Padding efficiency and batch fill of the batch planner, eager and compiled.

No model runs: the planner a worker builds (`worker_planner`, the same call, so the same pending bound,
buckets, forced and starved-input batches) is fed the token counts a worker would see, in the worker's
chunks and units, for each `--rows-per-shard`, and the batches it makes are counted:

* padding efficiency: real tokens / tokens computed;
* batch_fill: mean padded tokens per batch / the budget (small batches leave a GPU waiting on the host).

The budgets are 131,072 (the headline GPU budget) and 16,384 (the CUDA default), planned as a CUDA
worker plans, and 2,048 (the CPU default) as a CPU worker does. Two length mixes:

* the bench corpus (benchmarks/corpus.py), tokenized by the packaged all-MiniLM-L6-v2 tokenizer,
  truncated at 256 tokens (MiniLM) and at 32,768 (a Qwen3-Embedding-shaped model);
* a long-text, fineweb-like mix: log-normal document lengths (median 600 tokens, sigma 1.0, so the
  90th percentile is ~2,200 and the tail reaches the 32,768-token limit), seeded.

Compiled models run with a dynamic batch and sequence dimension, so they pad exactly as eager does.

The default 200,000 rows (the corpus repeats its ~20,000 unique texts) make the bench corpus ~100
batches at 131,072 tokens, so the figures are the planner's steady state, not the last batches' tail.

    python benchmarks/bench.py --case padding [--rows 200000] [--out FILE]
"""

from __future__ import annotations

import json
import time

import numpy as np

from chatspace.config import SentenceTransformerConfig
from chatspace.encoders.batching import length_buckets, padding_efficiency, simulate, worker_planner
from chatspace.encoders.sentence_transformer import CPU_AUTO_TOKENS_PER_BATCH, CUDA_AUTO_TOKENS_PER_BATCH

# (budget, planned as on CUDA?): the headline GPU budget, the CUDA default, the CPU default.
BUDGETS = ((131072, True), (CUDA_AUTO_TOKENS_PER_BATCH, True), (CPU_AUTO_TOKENS_PER_BATCH, False))
DEFAULT_ROWS = 200_000
FILL_GOAL, PADDING_GOAL = 0.75, 0.9  # at the CUDA budgets, rows per shard 1000 and 100000
ROWS_PER_SHARD = (50, 1000, 100000)
CHUNK_ROWS = 1024  # the worker's tokenization chunk


def fineweb_like_lengths(n: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.clip(np.round(rng.lognormal(np.log(600), 1.0, n)), 8, None).astype(np.int64)


def corpus_lengths(rows: int) -> np.ndarray:
    import corpus as corpus_mod
    from transformers import AutoTokenizer

    from chatspace.config import DEFAULT_MODEL
    from chatspace.encoders.locate import resolve_model_path

    _, texts = corpus_mod.read_corpus(corpus_mod.build_corpus(rows))
    tok = AutoTokenizer.from_pretrained(resolve_model_path(DEFAULT_MODEL))
    tok.model_max_length = 1 << 30  # count every token; the cases below truncate
    return np.array([len(x) for x in tok(texts, truncation=False)["input_ids"]], dtype=np.int64)


def _planner(max_tokens: int, budget: int, cuda: bool):
    buckets = length_buckets(SentenceTransformerConfig.bucket_min_tokens, max_tokens)
    return worker_planner(buckets, budget=budget, batch_size=32, cuda=cuda)


def _fill(batches, budget: int) -> float:
    return float(np.mean([len(b) * b.length for b in batches])) / budget if batches else 0.0


def measure(lengths: np.ndarray, max_tokens: int, budget: int, rows_per_shard: int, cuda: bool) -> dict:
    lengths = np.minimum(lengths, max_tokens)
    units = [lengths[s : s + rows_per_shard] for s in range(0, len(lengths), rows_per_shard)]
    chunk_rows = min(CHUNK_ROWS, rows_per_shard)
    t = time.perf_counter()
    batches = simulate(units, _planner(max_tokens, budget, cuda), chunk_rows=chunk_rows)
    plan_seconds = time.perf_counter() - t
    # Run as the worker does when its reader cannot keep up: flush the oldest bucket every chunk.
    starved = simulate(units, _planner(max_tokens, budget, cuda), chunk_rows=chunk_rows, starve_every=1)
    eff = padding_efficiency(batches)
    return {
        "budget": budget,
        "planned_as": "cuda" if cuda else "cpu",
        "rows_per_shard": rows_per_shard,
        "max_tokens": max_tokens,
        "eager": round(eff, 4),
        "compiled": round(eff, 4),  # dynamic shapes: the same batches, the same padding
        "batch_fill": round(_fill(batches, budget), 4),
        "starved_input": round(padding_efficiency(starved), 4),
        "starved_batch_fill": round(_fill(starved, budget), 4),
        "batches": len(batches),
        "mean_rows_per_batch": round(float(np.mean([len(b) for b in batches])), 1),
        "mean_padded_tokens_per_batch": round(float(np.mean([len(b) * b.length for b in batches])), 0),
        "plan_seconds": round(plan_seconds, 3),
    }


def run(rows: int) -> dict:
    mixes = {
        "bench corpus, MiniLM (256)": (corpus_lengths(rows), 256),
        "bench corpus, Qwen3 shape (32768)": (None, 32768),
        "fineweb-like (32768)": (fineweb_like_lengths(rows), 32768),
    }
    mixes["bench corpus, Qwen3 shape (32768)"] = (mixes["bench corpus, MiniLM (256)"][0], 32768)
    out = {}
    for name, (lengths, max_tokens) in mixes.items():
        out[name] = [
            measure(lengths, max_tokens, budget, rps, cuda)
            for budget, cuda in BUDGETS
            for rps in ROWS_PER_SHARD
        ]
    return out


def table(results: dict) -> str:
    lines = [
        "| length mix | tokens/batch | rows/shard | padding | batch fill | input starved: padding, fill "
        "| batches | rows/batch |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for name, rows in results.items():
        for r in rows:
            lines.append(
                f"| {name} | {r['budget']} | {r['rows_per_shard']} | {r['eager']:.3f} | {r['batch_fill']:.3f} "
                f"| {r['starved_input']:.3f}, {r['starved_batch_fill']:.3f} | {r['batches']} "
                f"| {r['mean_rows_per_batch']:.0f} |"
            )
    return "\n".join(lines)


def goals_met(results: dict) -> list[str]:
    """The cases that miss the goal: fill and padding at the CUDA budgets, rows per shard 1000 and 100000."""
    misses = []
    for name, rows in results.items():
        for r in rows:
            if r["planned_as"] != "cuda" or r["rows_per_shard"] not in (1000, 100000):
                continue
            if r["batch_fill"] < FILL_GOAL or r["eager"] < PADDING_GOAL:
                misses.append(f"{name} at {r['budget']}, {r['rows_per_shard']} rows/shard")
    return misses


def main(rows: int | None, out_path=None) -> int:
    results = run(rows or DEFAULT_ROWS)
    print(table(results))
    worst = min(r["eager"] for rows_ in results.values() for r in rows_ if r["budget"] == 131072)
    print(f"\nworst padding efficiency at 131072 tokens per batch: {worst:.3f}")
    misses = goals_met(results)
    print(
        f"batch fill >= {FILL_GOAL} and padding >= {PADDING_GOAL} at the CUDA budgets: "
        + ("met" if not misses else "missed for " + "; ".join(misses))
    )
    if out_path:
        out_path.write_text(json.dumps(results, indent=2))
    return 0
