"""The CPU pool on the same two pinned cores: `--devices cpu,cpu` (one thread each) against one worker with
two threads, and against SentenceTransformer's own `start_multi_process_pool(["cpu", "cpu"])`."""

from __future__ import annotations

import corpus as corpus_mod

# (case, --devices, --threads-per-worker): the same two cores, one worker x two threads then two x one.
CHATSPACE_POOLS = (("pool-1x2-chatspace", "cpu", "2"), ("pool-2x1-chatspace", "cpu,cpu", "1"))
# SentenceTransformer's pool as it comes, and with one OpenMP thread per process.
ST_POOLS = (("pool-st-2x", None), ("pool-st-2x-omp1", {"OMP_NUM_THREADS": "1"}))


def run(bench, ctx) -> None:
    if ctx.args.skip_pool or ctx.cores < 2:
        return
    pin = bench.cpu_set[:2]
    pool_rows = ctx.rows if not ctx.cuda else min(ctx.rows, 1000)
    pool_data = ctx.data if pool_rows == ctx.rows else corpus_mod.build_corpus(pool_rows)
    rows_per_shard = max(50, pool_rows // 8)  # several units, so two workers can share them
    for _ in range(ctx.repeats):
        for name, devices, threads in CHATSPACE_POOLS:
            options = ["--threads-per-worker", threads, "--dtype", "float32"]
            bench.case(
                name,
                bench.chatspace,
                pool_data,
                ctx.model,
                devices=devices,
                extra=options,
                rows_per_shard=rows_per_shard,
                pin=pin,
            )
        for name, env in ST_POOLS:
            bench.case(
                name,
                bench.plain,
                pool_data,
                ctx.model_path,
                device="cpu",
                dtype="float32",
                threads=None,
                pool="cpu,cpu",
                pin=pin,
                env=env,
            )
    ctx.results["pool"] = {"rows": pool_rows, "pinned_cpus": pin}
