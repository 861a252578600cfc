"""Quality through the whole pipeline: per-row cosine of every case to plain float32, and the STS
Benchmark test split's Spearman x 100 (plain float32, chatspace in each dtype)."""

from __future__ import annotations

from harness import compare, log, read_chatspace_vectors, read_plain_vectors
from quality import sts_dataset, sts_score


def cosine_to_plain(bench, ctx) -> None:
    ref = bench.cases["plain-f32"]
    pool_rows = ctx.results.get("pool", {}).get("rows")
    quality = {}
    for key, case in bench.cases.items():
        if key == "plain-f32" or (key.startswith("pool") and pool_rows != ctx.rows):
            continue
        quality[key] = compare(ref, case)
    ctx.results["cosine_to_plain_f32"] = quality


def run(bench, ctx) -> None:
    cosine_to_plain(bench, ctx)
    args = ctx.args
    if args.skip_sts:
        return
    if not args.sts.is_file():
        log(f"STS skipped: {args.sts} not found")
        return
    sts_data, pairs = sts_dataset(args.sts, ctx.work)
    sts = {}
    c = bench.plain(
        "sts-plain-f32",
        sts_data,
        ctx.model_path,
        device=ctx.device,
        dtype="float32",
        threads=ctx.plain_threads,
    )
    sts["plain-f32"] = sts_score(read_plain_vectors(c["out"]), pairs)
    for dtype_name in ["float32", "bfloat16"] + (["float16"] if ctx.cuda else []):
        c = bench.chatspace(
            f"sts-chatspace-{dtype_name}",
            sts_data,
            ctx.model,
            devices=ctx.device,
            extra=["--dtype", dtype_name],
            rows_per_shard=10_000,
        )
        sts[f"chatspace-{dtype_name}"] = sts_score(read_chatspace_vectors(c["out"]), pairs)
    ctx.results["sts_spearman_x100"] = {k: round(v, 2) for k, v in sts.items()}
    log("STS: " + ", ".join(f"{k} {v:.2f}" for k, v in sts.items()))
