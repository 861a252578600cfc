"""--large: a random-weight model with Qwen3-Embedding-0.6B's architecture (benchmarks/qwen3_random.py),
plain against chatspace in each dtype; throughput only (random weights say nothing about quality)."""

from __future__ import annotations

import corpus as corpus_mod
import qwen3_random
from flops import model_flops, model_shape, token_lengths
from harness import compare, log
from report import summarise

PLAIN_KEYS = {"float32": "large-plain-f32", "float16": "large-plain-f16", "bfloat16": "large-plain-bf16"}


def run(bench, ctx) -> None:
    if ctx.args.large:
        ctx.results["large"] = bench_large(bench, ctx)


def bench_large(bench, ctx) -> dict:
    args, device, cuda = ctx.args, ctx.device, ctx.cuda
    layers = args.bench_large_layers or (qwen3_random.FULL_LAYERS if cuda else 4)
    n = args.large_rows or (1000 if cuda else 96)
    model_dir = bench.work / f"qwen3-random-{layers}l"
    log(f"large: building a random Qwen3-Embedding-0.6B-shaped model with {layers} layers ...")
    qwen3_random.build(model_dir, layers=layers, max_seq_length=512)
    data = corpus_mod.build_corpus(n)
    _, texts = corpus_mod.read_corpus(data)
    lengths, _, _ = token_lengths(str(model_dir), texts)
    shape = model_shape(str(model_dir))
    out = {
        "layers": layers,
        "rows": n,
        "tokens": int(sum(lengths)),
        "model_flops": model_flops(lengths, shape),
    }
    cases = {}
    half = "float16" if cuda else "bfloat16"  # the plain reference in half precision
    for dtype_name in ("float32", half):
        key = PLAIN_KEYS[dtype_name]
        cases[key] = bench.plain(
            key, data, str(model_dir), device=device, dtype=dtype_name, threads=ctx.plain_threads
        )
    for dtype_name in ["float32", "bfloat16"] + (["float16"] if cuda else []):
        key = f"large-chatspace-{dtype_name}"
        # one unit: the default shard size holds all the rows
        options = ["--dtype", dtype_name]
        cases[key] = bench.chatspace(
            key, data, str(model_dir), devices=device, extra=options, rows_per_shard=None
        )
    for key, c in cases.items():
        log(f"{key}: {c['wall_s']:.1f} s wall, encode {c['encode_s']:.1f} s")
        c["all_walls_s"] = [c["wall_s"]]
    out["cases"] = summarise(cases, {"peak_gflops": ctx.results["peak_gflops"]}, lengths, shape, device)
    ref = cases["large-plain-f32"]
    out["cosine_to_plain_f32"] = {k: compare(ref, c) for k, c in cases.items() if k != "large-plain-f32"}
    return out
