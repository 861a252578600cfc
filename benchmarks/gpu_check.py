"""`make gpu-check`: what only a GPU can show, in one command of a few minutes on one H100.

Each step runs in its own process (a CUDA error or a crash in one step cannot take the others with it),
its output is saved to benchmarks/gpu-check/<step>.log and .json as soon as it ends, and
benchmarks/RESULTS-gpu.md is rewritten after every step, so whatever ran is kept even when a later
step fails. Steps, in order:

1. versions     - Python, torch/CUDA, transformers, sentence-transformers, the GPU, NVML, flash-attn
2. minilm       - all-MiniLM-L6-v2: cosine to `SentenceTransformer.encode` (fp32) in fp32, bf16, fp16
                  and compiled bf16 (goals: >= 0.99999 fp32, >= 0.999 half precision)
3. qwen3-ref    - a Qwen3-Embedding-0.6B-shaped model (random weights) against its model card's plain
                  reference (tokenizer, model, last-token pooling, left padding); one length per text
4. oom          - a real out-of-memory under a reduced memory fraction: splits > 0, rows finite, the
                  next pass without running out of memory
5. minilm-speed, 6. qwen3-speed - eager vs compiled bf16 at 131,072 tokens per batch: rows/s, real and
                  padded tokens/s, padding efficiency, encode busy/idle, GPU busy fraction (CUDA
                  events), NVML utilisation, MFU; graphs, graph breaks and recompiles over two passes
7. cli          - `chatspace embed-hf --gpus 0` end to end, then `chatspace verify`

    python benchmarks/gpu_check.py [--minilm PATH] [--only STEP ...]

Without CUDA it prints one line and exits 1 at once.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(REPO))

OUT_DIR = HERE / "gpu-check"
RESULTS_MD = HERE / "RESULTS-gpu.md"
STEPS = {  # name -> time limit (seconds); together well inside 8 minutes on one H100
    "versions": 60,
    "minilm": 120,
    "qwen3-ref": 150,
    "oom": 90,
    "minilm-speed": 120,
    "qwen3-speed": 200,
    "cli": 90,
}
DEADLINE_SECONDS = 470  # steps that would start later are skipped (and say so)


# --- the runner ----------------------------------------------------------------------------------------


def write_results(results: dict, started: str, path: Path) -> None:
    lines = [
        "# GPU check",
        "",
        f"`make gpu-check`, started {started}. Each step's full output is in benchmarks/gpu-check/.",
        "",
    ]
    for name, res in results.items():
        lines += [f"## {name}", "", "```json", json.dumps(res, indent=2, default=str), "```", ""]
    path.write_text("\n".join(lines))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description="GPU checks (see the module docstring)")
    ap.add_argument("--minilm", help="all-MiniLM-L6-v2 folder (default: the packaged model)")
    ap.add_argument("--only", nargs="*", choices=list(STEPS), help="run only these steps")
    ap.add_argument("--smoke", action="store_true", help="run the steps on the CPU, small: tests this script")
    ap.add_argument("--step", help=argparse.SUPPRESS)
    ap.add_argument("--json", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    if args.smoke:
        os.environ["CHATSPACE_GPU_CHECK_SMOKE"] = "1"
    smoke = os.environ.get("CHATSPACE_GPU_CHECK_SMOKE") == "1"
    if args.step:  # inside a step's own process
        import gpu_steps

        result = getattr(gpu_steps, "step_" + args.step.replace("-", "_"))(args)
        Path(args.json).write_text(json.dumps(result, indent=2, default=str))
        return 0
    try:
        import torch

        cuda = torch.cuda.is_available() or smoke
        why = "torch.cuda.is_available() is False"
    except ImportError:
        cuda, why = False, "torch is not installed"
    if not cuda:
        print(f"gpu-check: no CUDA device here ({why}); run it on a machine with a GPU", file=sys.stderr)
        return 1
    out_dir = OUT_DIR.with_name("gpu-check-smoke") if smoke else OUT_DIR
    results_md = RESULTS_MD.with_name("RESULTS-gpu-smoke.md") if smoke else RESULTS_MD
    out_dir.mkdir(exist_ok=True)
    started = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime())
    t0 = time.monotonic()
    results: dict = {}
    failed = []
    for name, limit in STEPS.items():
        if args.only and name not in args.only:
            continue
        if time.monotonic() - t0 > DEADLINE_SECONDS and not smoke:
            results[name] = {"skipped": "the 8-minute budget was spent"}
            write_results(results, started, results_md)
            continue
        json_path = out_dir / f"{name}.json"
        json_path.unlink(missing_ok=True)
        cmd = [sys.executable, __file__, "--step", name, "--json", str(json_path)]
        if args.minilm:
            cmd += ["--minilm", args.minilm]
        if smoke:
            cmd.append("--smoke")
        t = time.monotonic()
        with open(out_dir / f"{name}.log", "w") as log:
            try:
                code = subprocess.run(
                    cmd, stdout=log, stderr=subprocess.STDOUT, timeout=limit, cwd=REPO
                ).returncode
            except subprocess.TimeoutExpired:
                code = "timeout"
        res = json.loads(json_path.read_text()) if json_path.is_file() else {}
        res = {**res, "exit": code, "seconds": round(time.monotonic() - t, 1)}
        if (
            code != 0
            or res.get("ok") is False
            or any(isinstance(v, dict) and v.get("ok") is False for v in res.values())
        ):
            failed.append(name)
        results[name] = res
        write_results(results, started, results_md)
        print(f"{name}: {'ok' if name not in failed else 'FAILED'} ({res['seconds']}s)", flush=True)
    print(f"wrote {results_md} ({round(time.monotonic() - t0)}s); failed: {', '.join(failed) or 'none'}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
