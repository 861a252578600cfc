"""`make bench`: chatspace's encoder against the plain library call, on the machine at hand.

Everything is timed in one run, on the same rows, each case as a whole process (a subprocess from
interpreter start to exit, as a user would run it):

* plain   - benchmarks/plain_encode.py: load the SentenceTransformer, read the rows, `encode(batch_size=32)`,
            write Parquet (float32; on a GPU also float16, and bfloat16 on CPU for reference);
* chatspace embed-hf end to end (read -> extract -> tokenize -> bucket -> encode -> Parquet + manifest),
  in float32 and bfloat16 (on a GPU also float16 and --compile-model);
* the CPU pool: `chatspace --devices cpu,cpu` (one thread each) against one worker with two threads and
  against SentenceTransformer's own `start_multi_process_pool(["cpu", "cpu"])`, all pinned to the same
  two cores;
* quality: per-row cosine of every chatspace run to plain float32, and STS Benchmark Spearman x 100
  (float32 and bfloat16) through the whole pipeline;
* --large: the same for a random-weight model with Qwen3-Embedding-0.6B's architecture
  (benchmarks/qwen3_random.py; throughput only).

The cases live in benchmarks/cases/ (throughput, pool, sts, large, padding, feeder, backends, search, scale); this file
parses the options and runs them. Model FLOPs are counted per row from its real (truncated) token count: 2 x matmul parameters per token
plus 4 x n^2 x attention width per layer (padding is not useful work, so it does not count). The device
peak is measured in the same run with a large torch.matmul in the same dtype and thread count; "% peak"
is model FLOPs / encode time / peak.

    .venv/bin/python benchmarks/bench.py                 # the full bench (~5 min on 2 CPU cores)
    .venv/bin/python benchmarks/bench.py --quick         # a smoke run: few rows, no history entry
    .venv/bin/python benchmarks/bench.py --large --bench-large-layers 4
    .venv/bin/python benchmarks/bench.py --case padding  # the batch planner's padding efficiency only
    .venv/bin/python benchmarks/bench.py --case feeder   # the worker pipeline without the model's forward
    .venv/bin/python benchmarks/bench.py --case feeder --threads 1  # the same at one thread only
    .venv/bin/python benchmarks/bench.py --case backends # torch against ONNX / OpenVINO on the CPU
    .venv/bin/python benchmarks/bench.py --case search   # the ANN index against exact search
    .venv/bin/python benchmarks/bench.py --case scale    # selection and plan at a billion rows
    .venv/bin/python benchmarks/bench.py --case scale --rows 3000000 --units 2000  # the same, a quick check

Results: a table on stdout, benchmarks/results/<host>-<date>.json, and one line appended to the history
table of benchmarks/RESULTS.md (not for --quick). The machine should be otherwise idle: the load average
before and after is recorded, and a warning is printed when something else was using the CPU.
"""

from __future__ import annotations

import argparse
import datetime as dt
import importlib
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(REPO))

import corpus as corpus_mod  # noqa: E402
from harness import Bench, Context, environment, loadavg, log  # noqa: E402
from report import append_history, render, summarise, targets  # noqa: E402

DEFAULT_STS = REPO.parent / "shared" / "data" / "stsbenchmark" / "sts-test.csv"
RESULTS_DIR = HERE / "results"
os.environ.update({"HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"})
# The full bench, in order; each module's run(bench, ctx) adds its cases and results.
FULL_BENCH = ("throughput", "pool", "sts", "large")
# Cases that run on their own: python benchmarks/bench.py --case NAME.
SINGLE_CASES = ("padding", "feeder", "backends", "search", "scale")


def parse_args(argv: list[str] | None):
    ap = argparse.ArgumentParser(description="chatspace encoder benchmark (see the module docstring)")
    ap.add_argument("--rows", type=int, default=None, help="corpus rows (default 3000; --quick: 400)")
    ap.add_argument("--quick", action="store_true", help="few rows, one repeat, no RESULTS.md entry")
    ap.add_argument("--large", action="store_true", help="also bench a Qwen3-Embedding-0.6B-shaped model")
    ap.add_argument(
        "--bench-large-layers",
        type=int,
        default=None,
        help="decoder layers of the large model (default: 28 on a GPU, 4 on CPU)",
    )
    ap.add_argument(
        "--large-rows", type=int, default=None, help="rows for --large (default 1000 GPU, 96 CPU)"
    )
    ap.add_argument("--skip-pool", action="store_true", help="skip the 2-worker CPU pool comparison")
    ap.add_argument("--skip-sts", action="store_true", help="skip the STS Benchmark quality check")
    ap.add_argument("--sts", type=Path, default=DEFAULT_STS, help="STS Benchmark sts-test.csv")
    ap.add_argument(
        "--repeats", type=int, default=1, help="run each timed case N times (interleaved); keep the fastest"
    )
    ap.add_argument("--model", default=None, help="model (default: the packaged all-MiniLM-L6-v2)")
    ap.add_argument(
        "--out", type=Path, default=None, help="results JSON (default results/<host>-<date>.json)"
    )
    ap.add_argument("--no-history", action="store_true", help="do not append to RESULTS.md")
    ap.add_argument("--keep", action="store_true", help="keep the temporary outputs")
    ap.add_argument(
        "--max-foreign",
        type=float,
        default=0.05,
        help="warn when other processes use more than this share of the CPU during a case",
    )
    ap.add_argument("--case-timeout", type=int, default=3600)
    ap.add_argument(
        "--threads",
        type=int,
        nargs="+",
        default=None,
        help="--case feeder: the thread counts to run at (default: 1 and all the cores)",
    )
    ap.add_argument(
        "--units",
        type=int,
        default=None,
        help="--case scale: work units for the scheduler, manifest-write and resume-scan measurements "
        "(default 100,000; fewer for a quick check)",
    )
    ap.add_argument(
        "--case",
        choices=["all", *SINGLE_CASES],
        default="all",
        help="padding: only the planner's padding efficiency (no model runs); feeder: the worker pipeline "
        "with a no-op forward against the tokenizer alone; backends: torch / ONNX Runtime / OpenVINO on the CPU; "
        "search: ANN index build time, recall@10 and latency at 100k and 1M vectors; scale: selection, plan and "
        "bookkeeping at a billion rows (seconds and peak memory, each in its own process)",
    )
    args = ap.parse_args(argv)
    if args.threads and min(args.threads) < 1:
        ap.error("--threads must be at least 1")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.case == "padding":
        from cases import padding

        return padding.main(args.rows, args.out)
    if args.case in SINGLE_CASES:
        return importlib.import_module(f"cases.{args.case}").main(args)

    import torch

    from chatspace.config import DEFAULT_MODEL
    from chatspace.encoders.locate import resolve_model_path

    cuda = torch.cuda.is_available()
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    env_info = environment(cores)
    log(
        f"{env_info['cpu']} x{cores} ({', '.join(env_info['cpu_flags'])})"
        f"{', ' + env_info['gpu'] if cuda else ''}; load {env_info['load_before']}"
    )
    work = Path(tempfile.mkdtemp(prefix="chatspace-bench-"))
    bench = Bench(args, work)
    results: dict = {
        "env": env_info,
        "args": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
    }
    model = args.model or DEFAULT_MODEL
    ctx = Context(
        args=args,
        device="cuda" if cuda else "cpu",
        cuda=cuda,
        cores=cores,
        model=model,
        model_path=resolve_model_path(model),
        work=work,
        results=results,
        rows=args.rows or (400 if args.quick else 3000),
    )
    try:
        for name in FULL_BENCH:
            importlib.import_module(f"cases.{name}").run(bench, ctx)
        shape = results["corpus"]["model"]
        results["cases"] = summarise(bench.cases, results, ctx.lengths, shape, ctx.device)
        results["targets"] = targets(results, cuda)
        results["load_after"] = loadavg()
        results["load_warnings"] = bench.load_warnings
        results["finished"] = dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        print(render(results))
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
        else:
            log(f"outputs kept in {work}")
    write_results(args, results, bench.load_warnings)
    return 0


def unused_results_path(stem: str) -> Path:
    """results/<host>-<date>.json, else -b, -c, ...: a later run the same day never replaces the file an
    earlier RESULTS.md entry links to."""
    for suffix in ("", *(f"-{chr(c)}" for c in range(ord("b"), ord("z") + 1))):
        path = RESULTS_DIR / f"{stem}{suffix}.json"
        if not path.exists():
            return path
    return RESULTS_DIR / f"{stem}-{int(time.time())}.json"


def write_results(args, results: dict, load_warnings: list[str]) -> None:
    env_info = results["env"]
    stem = f"{env_info['host']}-{env_info['date'][:10].replace('-', '')}"
    # A --quick smoke run never replaces the day's full results: it goes to the git-ignored cache.
    out = args.out or (
        corpus_mod.CACHE_DIR / f"{stem}-quick.json" if args.quick else unused_results_path(stem)
    )
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=1, default=float) + "\n")
    log(f"results written to {out}")
    if not args.quick and not args.no_history:
        append_history(results, out)
    if load_warnings:
        log("WARNING: other processes were using the CPU during the bench; figures are pessimistic:")
        for w in load_warnings:
            log("  " + w)


if __name__ == "__main__":
    sys.exit(main())
