"""Padding efficiency of the batch planner: real tokens / tokens computed, eager and compiled.

No model runs: the planner is fed the token counts a worker would see, in the worker's chunks and
units, for each `--rows-per-shard`, and the batches it makes are counted. Two length mixes:

* the bench corpus (benchmarks/corpus.py), tokenized by the packaged all-MiniLM-L6-v2 tokenizer,
  truncated at 256 tokens (MiniLM) and at 32,768 (a Qwen3-Embedding-shaped model);
* a long-text, fineweb-like mix: log-normal document lengths (median 600 tokens, sigma 1.0, so the
  90th percentile is ~2,200 and the tail reaches the 32,768-token limit), seeded.

Compiled models run with a dynamic batch and sequence dimension, so they pad exactly as eager does.

    python benchmarks/bench.py --case padding [--rows 20000]
"""

from __future__ import annotations

import json
import time

import numpy as np

from chatspace.encoders.batching import BatchPlanner, length_buckets, padding_efficiency, simulate

BUDGETS = (131072, 2048)  # the headline GPU budget; the CPU default
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


def measure(lengths: np.ndarray, max_tokens: int, budget: int, rows_per_shard: int) -> dict:
    lengths = np.minimum(lengths, max_tokens)
    units = [lengths[s : s + rows_per_shard] for s in range(0, len(lengths), rows_per_shard)]
    planner = BatchPlanner(length_buckets(8, max_tokens), budget=budget, batch_size=32)
    t = time.perf_counter()
    batches = simulate(units, planner, chunk_rows=min(CHUNK_ROWS, rows_per_shard))
    # Run as the worker does when its reader cannot keep up: flush the oldest bucket every chunk.
    starved = simulate(
        units,
        BatchPlanner(length_buckets(8, max_tokens), budget=budget, batch_size=32),
        chunk_rows=min(CHUNK_ROWS, rows_per_shard),
        starve_every=1,
    )
    eff = padding_efficiency(batches)
    return {
        "budget": budget,
        "rows_per_shard": rows_per_shard,
        "max_tokens": max_tokens,
        "eager": round(eff, 4),
        "compiled": round(eff, 4),  # dynamic shapes: the same batches, the same padding
        "starved_input": round(padding_efficiency(starved), 4),
        "batches": len(batches),
        "mean_rows_per_batch": round(float(np.mean([len(b) for b in batches])), 1),
        "mean_padded_tokens_per_batch": round(float(np.mean([len(b) * b.length for b in batches])), 0),
        "plan_seconds": round(time.perf_counter() - t, 3),
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
            measure(lengths, max_tokens, budget, rps) for budget in BUDGETS for rps in ROWS_PER_SHARD
        ]
    return out


def table(results: dict) -> str:
    lines = [
        "| length mix | tokens/batch | rows/shard | eager | compiled | input starved | batches | rows/batch |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for name, rows in results.items():
        for r in rows:
            lines.append(
                f"| {name} | {r['budget']} | {r['rows_per_shard']} | {r['eager']:.3f} | {r['compiled']:.3f} "
                f"| {r['starved_input']:.3f} | {r['batches']} | {r['mean_rows_per_batch']:.0f} |"
            )
    return "\n".join(lines)


def main(rows: int, out_path=None) -> int:
    results = run(rows)
    print(table(results))
    worst = min(r["eager"] for rows_ in results.values() for r in rows_ if r["budget"] == 131072)
    print(f"\nworst padding efficiency at 131072 tokens per batch: {worst:.3f}")
    if out_path:
        out_path.write_text(json.dumps(results, indent=2))
    return 0
