"""Throughput: plain `SentenceTransformer.encode` against chatspace embed-hf, whole processes, same rows.

Also profiles the corpus (real token counts, model FLOPs) and measures the device's matmul peak, which
the summary uses for "% peak".
"""

from __future__ import annotations

import corpus as corpus_mod
import numpy as np
from flops import matmul_peak, model_flops, model_shape, token_lengths
from harness import log


def profile_corpus(ctx) -> None:
    """Build the corpus, count its real tokens and FLOPs (into ctx.results["corpus"])."""
    ctx.data = corpus_mod.build_corpus(ctx.rows)
    _, texts = corpus_mod.read_corpus(ctx.data)
    lengths, max_len, truncated = token_lengths(ctx.model_path, texts)
    ctx.lengths = lengths
    shape = model_shape(ctx.model_path)
    flops = model_flops(lengths, shape)
    lens = np.array(lengths)
    ctx.results["corpus"] = {
        "path": str(ctx.data),
        "rows": len(texts),
        "tokens": int(lens.sum()),
        "max_tokens": max_len,
        "truncated_rows": int(truncated),
        "token_percentiles": {f"p{q}": int(np.percentile(lens, q)) for q in (10, 50, 90, 99)},
        "chars_max": max(len(t) for t in texts),
        "model_flops": flops,
        "model": {"name": ctx.model, **shape},
    }
    log(
        f"corpus: {len(texts)} rows, {lens.sum()} tokens (p50 {np.percentile(lens, 50):.0f}, "
        f"p99 {np.percentile(lens, 99):.0f}), {flops / 1e12:.2f} TFLOP"
    )


def measure_peaks(ctx) -> None:
    peak_dtypes = ["float32", "bfloat16"] + (["float16"] if ctx.cuda else [])
    threads = ctx.cores if ctx.device == "cpu" else None
    ctx.results["peak_gflops"] = {d: matmul_peak(d, ctx.device, threads) for d in peak_dtypes}
    log("peak: " + ", ".join(f"{k} {v:.0f} GFLOP/s" for k, v in ctx.results["peak_gflops"].items()))


def specs(cuda: bool) -> list[tuple[str, str, str, list[str]]]:
    """(case, kind, dtype, extra chatspace options) in the order they run."""
    out = [
        ("plain-f32", "plain", "float32", []),
        ("chatspace-f32", "chatspace", "float32", []),
        ("chatspace-bf16", "chatspace", "bfloat16", []),
    ]
    if cuda:
        out += [
            ("plain-f16", "plain", "float16", []),
            ("chatspace-f16", "chatspace", "float16", []),
            ("chatspace-bf16-compile", "chatspace", "bfloat16", ["--compile-model"]),
        ]
    else:
        out.append(("plain-bf16", "plain", "bfloat16", []))
    return out


def run(bench, ctx) -> None:
    profile_corpus(ctx)
    measure_peaks(ctx)
    for _ in range(ctx.repeats):
        for key, kind, dtype, extra in specs(ctx.cuda):
            if kind == "plain":
                fn, model, options = (
                    bench.plain,
                    ctx.model_path,
                    {"threads": ctx.plain_threads, "dtype": dtype},
                )
            else:  # chatspace's default shard size, as a user would run it
                fn, model = bench.chatspace, ctx.model
                options = {"extra": ["--dtype", dtype, *extra], "rows_per_shard": None}
            device = {"device" if kind == "plain" else "devices": ctx.device}
            bench.case(key, fn, ctx.data, model, **device, **options)
