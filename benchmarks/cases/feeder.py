"""`bench.py --case feeder`: can the host feed the model? The real worker pipeline (read -> sample ->
extract -> tokenize -> bucket -> batch -> write) runs as `chatspace embed-hf --devices cpu` with the
model's forward replaced by a no-op (benchmarks/noop_forward/, bench-only), against the tokenizer alone,
batched, on the same cores (benchmarks/tokenize_alone.py). Both count the same tokens: each row's,
after the model's truncation.

    feeder tok/s = tokens / the worker's pipeline time (its wall time less model load and warm-up)
    tokenizer tok/s = tokens / time spent in tokenizer(batch) calls alone

    host_us_per_row = (pipeline time - tokenizer time) / rows: the worker's own work per row outside
        the tokenizer (reading, extraction, metadata, batching, the collect loop, Parquet)

Goals at one thread: the feeder at >= 0.9x the tokenizer alone, and host_us_per_row <= 8. Each is run
--repeats times (interleaved), the best kept; at one thread and at all the cores, or at the counts
--threads names.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
from pathlib import Path

from harness import HERE, REPO, Bench, finish_standalone, log, standalone

NOOP_FORWARD = HERE / "noop_forward"
TOKENIZE_ALONE = [sys.executable, str(HERE / "tokenize_alone.py")]
GOAL = 0.9
HOST_US_GOAL = 8.0


def pipeline_seconds(case: dict) -> float:
    """The slowest worker's wall time, less its model load and warm-up: the feeding itself."""
    return max(
        w.get("wall_seconds", 0.0) - w.get("load_seconds", 0.0) - w.get("warmup_seconds", 0.0)
        for w in case["worker_stats"]
    )


def feeder(bench: Bench, data: Path, model: str, threads: int) -> dict:
    env = {
        "PYTHONPATH": os.pathsep.join([str(NOOP_FORWARD), str(REPO), os.environ.get("PYTHONPATH", "")]),
        "CHATSPACE_BENCH_NOOP_FORWARD": "1",
    }
    options = ["--dtype", "float32", "--threads-per-worker", str(threads)]
    key = f"feeder-{threads}t"
    log(f"{key} ...")  # this run's own figures: the best of the repeats is taken in best_runs
    c = bench.chatspace(key, data, model, devices="cpu", extra=options, rows_per_shard=None, env=env)
    seconds = pipeline_seconds(c)
    tokens = c["tokens"]
    return {
        "tokens": tokens,
        "rows": c["rows"],
        "seconds": seconds,
        "tok_s": tokens / seconds,
        "foreign_cpu": c["foreign_cpu"],
    }


def tokenizer_alone(bench: Bench, data: Path, model_path: str, threads: int) -> dict:
    cmd = [*TOKENIZE_ALONE, "--data", str(data), "--model", model_path, "--threads", str(threads)]
    _, stdout, _, foreign = bench._run(f"tokenizer-{threads}t", cmd)
    res = json.loads(
        next(x for x in stdout.splitlines() if x.startswith("TOKENIZE_RESULT ")).split(" ", 1)[1]
    )
    return {**res, "tok_s": res["tokens"] / res["seconds"], "foreign_cpu": foreign}


def main(args) -> int:
    rows = args.rows or (2000 if args.quick else 20000)
    env_info, bench, model, model_path, data = standalone(args, rows, "chatspace-feeder-")
    cores, work = env_info["cores"], bench.work
    results: dict = {"env": env_info, "rows": rows, "model": model, "runs": []}
    try:
        for _ in range(1 if args.quick else args.repeats):
            for threads in sorted(set(args.threads or (1, cores))):
                f = feeder(bench, data, model, threads)
                t = tokenizer_alone(bench, data, model_path, threads)
                run = {"threads": threads, "feeder": f, "tokenizer": t, "ratio": f["tok_s"] / t["tok_s"]}
                run["host_us_per_row"] = (f["seconds"] - t["seconds"]) / f["rows"] * 1e6
                results["runs"].append(run)
                log(f"{threads} thread(s): feeder {f['tok_s']:,.0f} tok/s, tokenizer {t['tok_s']:,.0f} tok/s")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    results["best"] = {str(k): v for k, v in best_runs(results).items()}
    finish_standalone(bench, results, render(results, cores), "feeder", args.out)
    return 0  # the goal is judged in the printed table, as the full bench does


def best_runs(results: dict) -> dict[int, dict]:
    """Per thread count, the run with the fastest feeder (with the tokenizer's best beside it)."""
    best: dict[int, dict] = {}
    for run in results["runs"]:
        k = run["threads"]
        f = max(run["feeder"]["tok_s"], best.get(k, {}).get("feeder_tok_s", 0.0))
        t = max(run["tokenizer"]["tok_s"], best.get(k, {}).get("tokenizer_tok_s", 0.0))
        f_s = min(run["feeder"]["seconds"], best.get(k, {}).get("feeder_s", float("inf")))
        t_s = min(run["tokenizer"]["seconds"], best.get(k, {}).get("tokenizer_s", float("inf")))
        rows = run["feeder"]["rows"]
        best[k] = {
            "feeder_tok_s": f,
            "tokenizer_tok_s": t,
            "ratio": f / t,
            "tokens": run["feeder"]["tokens"],
            "feeder_s": f_s,
            "tokenizer_s": t_s,
            "host_us_per_row": (f_s - t_s) / rows * 1e6 if rows else None,
        }
    return best


def render(results: dict, cores: int) -> str:
    env = results["env"]
    lines = [
        f"feeder bench - {env['date']} - {env['cpu']} ({', '.join(env['cpu_flags'])}), {cores} cores; "
        f"git {env['git']}; load before {env['load_before']}",
        f"{results['rows']} rows of the bench corpus, model {results['model']}",
    ]
    for threads, b in sorted(best_runs(results).items()):
        lines += [
            f"[{threads} thread{'s' if threads > 1 else ''}]",
            f"feeder: {b['feeder_tok_s']:,.0f} tok/s",
            f"tokenizer: {b['tokenizer_tok_s']:,.0f} tok/s",
            f"ratio: {b['ratio']:.2f}x (goal >= {GOAL}x){'' if b['ratio'] >= GOAL or threads > 1 else ' NOT MET'}",
            f"host work: {b['host_us_per_row']:.1f} us per row outside the tokenizer"
            + (
                f" (goal <= {HOST_US_GOAL}){'' if b['host_us_per_row'] <= HOST_US_GOAL else ' NOT MET'}"
                if threads == 1
                else ""
            ),
        ]
    return "\n".join(lines)
