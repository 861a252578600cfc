"""`make gpu-check`: what only a GPU can show, in one command that ends within its budget and always
brings its figures home.

Every step runs in its own process group under a hard limit (killed, with everything it started, when
the limit or the check's budget runs out). A step appends each measurement to one JSON-lines file the
moment it exists (flushed and fsynced), so a step that is killed keeps its finished half, and
RESULTS-gpu.md is rewritten from that file before and after every step. Steps, in order:

1. versions       - Python, torch/CUDA, transformers, sentence-transformers, the GPU, driver, flash-attn,
                    and whether each module chatspace needs imports
2. cli            - `chatspace embed-hf --gpus 0` end to end (spawned worker pinned by CUDA_VISIBLE_DEVICES,
                    NVML in the worker, Parquet, manifest), then `chatspace verify`
3. headline       - SentenceTransformer's own `encode` in fp16 against `chatspace embed-hf --dtype float16`
                    on the same rows, each as a whole process: rows/s and their ratio, per-row cosine
4. minilm-quality - all-MiniLM-L6-v2 through the encoder against `SentenceTransformer.encode` (fp32)
5. qwen3-ref      - a Qwen3-Embedding-0.6B-shaped model (random weights) against its model card's reference
6. oom            - a real out-of-memory under a reduced memory fraction: the batch splits, rows stay finite
7. qwen3-eager    - throughput of the Qwen3 shape, bf16 eager at 131,072 tokens per batch
8. qwen3-compiled - the same compiled (graphs, graph breaks, recompiles), then MiniLM compiled vs fp32

Output (few files, so a sealed machine's output folder brings them all back): DIR/RESULTS-gpu.md and
DIR/gpu-check/{measurements.jsonl,steps.log}, where DIR is --out, else $OUT, else benchmarks/gpu-check/.

    python benchmarks/gpu_check.py [--budget-s 480] [--out DIR] [--only STEP ...] [--rehearse]

--rehearse runs every step on the CPU at toy scale (a check of this script, minutes on two cores).
--step-limit-s SECONDS caps every step's own limit, --step-limit-s STEP=SECONDS one step's (repeatable).
CHATSPACE_GPU_CHECK_HANG=STEP makes that step hang (to test that the check still ends and reports).
Without CUDA (and without --rehearse) it prints one line and exits 1 at once.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(REPO))

from gpu_record import Recorder, read_records, render_results  # noqa: E402

# name -> the step's own hard limit in seconds (the check's budget may cut it shorter)
STEPS = {
    "versions": 60,
    "cli": 120,
    "headline": 150,
    "minilm-quality": 90,
    "qwen3-ref": 120,
    "oom": 90,
    "qwen3-eager": 120,
    "qwen3-compiled": 200,
}
DEFAULT_BUDGET_S = 480
END_RESERVE_S = 8  # kept back from the budget to kill a step and write the results
MIN_STEP_S = 10  # a step with less time than this left is recorded as skipped
KILL_GRACE_S = 3


def output_dir(args) -> Path:
    if args.out:
        return Path(args.out)
    if os.environ.get("OUT"):
        return Path(os.environ["OUT"])
    return HERE / ("gpu-check-rehearsal" if args.rehearse else "gpu-check")


def step_limit(text: str) -> tuple[str | None, float]:
    """`--step-limit-s` value: SECONDS caps every step, STEP=SECONDS that step alone."""
    step, _, seconds = text.rpartition("=")
    if step and step not in STEPS:
        raise argparse.ArgumentTypeError(f"no step {step!r} (steps: {', '.join(STEPS)})")
    try:
        value = float(seconds)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{seconds!r} is not a number of seconds") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"{seconds!r}: a limit is over 0 seconds")
    return step or None, value


def parse_args(argv):
    ap = argparse.ArgumentParser(description="GPU checks (see the module docstring)")
    ap.add_argument(
        "--budget-s", type=float, default=DEFAULT_BUDGET_S, help="the whole check ends within this"
    )
    ap.add_argument("--out", help="output folder (default: $OUT, else benchmarks/gpu-check/)")
    ap.add_argument("--minilm", help="all-MiniLM-L6-v2 folder (default: the packaged model)")
    ap.add_argument("--only", nargs="*", choices=list(STEPS), help="run only these steps")
    ap.add_argument("--rehearse", action="store_true", help="every step on the CPU at toy scale")
    ap.add_argument(
        "--step-limit-s",
        type=step_limit,
        action="append",
        default=[],
        metavar="[STEP=]SECONDS",
        help="cap every step's own limit at SECONDS, or with STEP= that step's alone (repeatable)",
    )
    ap.add_argument("--step", help=argparse.SUPPRESS)
    ap.add_argument("--record", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.budget_s <= END_RESERVE_S + MIN_STEP_S:
        ap.error(f"--budget-s must be over {END_RESERVE_S + MIN_STEP_S}")
    return args


# --- killing a step with everything it started ----------------------------------------------------------


def _children_map() -> dict[int, list[int]]:
    kids: dict[int, list[int]] = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/stat", "rb") as fh:
                stat = fh.read()
        except OSError:
            continue
        ppid = int(stat[stat.rindex(b")") + 2 :].split()[1])  # the name may hold spaces and parentheses
        kids.setdefault(ppid, []).append(int(entry.name))
    return kids


def descendants(pid: int) -> list[int]:
    """Every live process below pid (Linux /proc; empty elsewhere)."""
    if not os.path.isdir("/proc"):
        return []
    kids, out, todo = _children_map(), [], [pid]
    while todo:
        for child in kids.get(todo.pop(), []):
            out.append(child)
            todo.append(child)
    return out


def _become_subreaper() -> None:
    """Orphans of a step (a worker whose parent was killed) are re-parented to this process, not to init,
    so they are found and killed below."""
    try:
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(36, 1, 0, 0, 0)  # PR_SET_CHILD_SUBREAPER
    except (OSError, AttributeError):
        pass


def kill_tree(proc: subprocess.Popen) -> None:
    """SIGTERM the step's process group and every descendant (also those in groups of their own), then
    SIGKILL whatever is left after a short grace, and reap."""
    targets = set(descendants(proc.pid))
    for sig in (signal.SIGTERM, signal.SIGKILL):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, sig)
        for pid in targets | set(descendants(os.getpid())):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, sig)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=KILL_GRACE_S)
        if sig == signal.SIGTERM:
            if not _anything_left(proc, targets):
                break  # a step that ended and started nothing that lives on: no grace, no SIGKILL
            time.sleep(0.5)
        targets |= set(descendants(os.getpid()))
    _reap()


def _anything_left(proc: subprocess.Popen, targets: set[int]) -> bool:
    """Whether the step's process group, or any process it started, still exists (zombies count until
    reaped: only this process's own children are reaped here)."""
    _reap()
    try:
        os.killpg(proc.pid, 0)
        return True
    except PermissionError:
        return True
    except ProcessLookupError:
        pass
    return any(os.path.exists(f"/proc/{pid}") for pid in targets) or bool(descendants(os.getpid()))


def _reap() -> None:
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return


# --- the runner -------------------------------------------------------------------------------------------


def run_step(name: str, timeout: float, args, out: Path, rec: Recorder) -> dict:
    log_path = out / "gpu-check" / "steps.log"
    cmd = [sys.executable, __file__, "--step", name, "--record", str(rec.path)]
    if args.minilm:
        cmd += ["--minilm", args.minilm]
    if args.rehearse:
        cmd.append("--rehearse")
    with open(log_path, "ab") as log:
        log.write(f"\n===== {name} (limit {timeout:.0f}s) =====\n".encode())
        log.flush()
        log_offset = log.tell()
        t = time.monotonic()
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}  # a killed step's output is in the log up to its end
        proc = subprocess.Popen(
            cmd, stdout=log, stderr=subprocess.STDOUT, cwd=REPO, env=env, start_new_session=True
        )
        try:
            code = proc.wait(timeout=timeout)
            status = "ok" if code == 0 else "failed"
        except subprocess.TimeoutExpired:
            code, status = None, "timed out"
        kill_tree(proc)  # also after a clean exit: nothing a step started outlives it
        seconds = time.monotonic() - t
    with open(log_path, "rb") as fh:
        fh.seek(log_offset)
        tail = fh.read().decode("utf-8", "replace").splitlines()[-15:]
    rec.ensure_line_end()  # a step killed mid-line leaves no half line before the runner's own
    return {
        "status": status,
        "exit": code,
        "seconds": round(seconds, 1),
        "limit_s": round(timeout),
        "log_tail": tail,
    }


def step_in_this_process(name: str, args, rec: Recorder) -> int:
    """Run one step in this process (pipeline steps in gpu_steps, model steps in gpu_model_steps);
    CHATSPACE_GPU_CHECK_HANG=<name> makes it hang instead (with a child in a session of its own, which
    the runner must kill too)."""
    if os.environ.get("CHATSPACE_GPU_CHECK_HANG") == name:
        child = subprocess.Popen(
            [sys.executable, "-c", "import time; time.sleep(3600)"], start_new_session=True
        )
        rec.write("before_hang", {"pid": os.getpid(), "child_pid": child.pid})
        while True:
            time.sleep(60)
    import gpu_model_steps
    import gpu_steps

    step = "step_" + name.replace("-", "_")
    result = getattr(gpu_steps, step, None) or getattr(gpu_model_steps, step)
    result = result(args, rec)
    ok = result.get("ok", True) is not False and not any(
        isinstance(v, dict) and v.get("ok") is False for v in result.values()
    )
    rec.write("verdict", {"ok": ok})
    return 0 if ok else 1


def has_torch(rehearse: bool) -> bool:
    """Whether this Python has torch. The rehearsal, whose steps import it each in their own process,
    only looks it up (an import here would cost seconds of CPU for nothing); a GPU run imports it."""
    if rehearse:
        import importlib.util

        return importlib.util.find_spec("torch") is not None
    try:
        import torch  # noqa: F401
    except ImportError:
        return False
    return True


def cuda_available() -> bool:
    import torch

    return torch.cuda.is_available()


def torch_version() -> str:
    import torch

    return torch.__version__


def main(argv=None) -> int:
    t0 = float(os.environ.get("CHATSPACE_GPU_CHECK_T0") or 0) or None  # set by gpu-check.sh: installs count
    started_mono = time.monotonic() - (max(0.0, time.time() - t0) if t0 else 0.0)
    args = parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    if args.rehearse:
        os.environ["CHATSPACE_GPU_CHECK_REHEARSE"] = "1"
    if args.step:  # inside a step's own process
        return step_in_this_process(args.step, args, Recorder(Path(args.record), args.step))
    if not has_torch(args.rehearse):
        print(
            f"gpu-check: {sys.executable} has no torch; run it with a Python that has torch", file=sys.stderr
        )
        return 1
    if not args.rehearse and not cuda_available():
        print(
            f"gpu-check: no CUDA device here (torch {torch_version()}: torch.cuda.is_available() is False)",
            file=sys.stderr,
        )
        return 1
    deadline = started_mono + args.budget_s - END_RESERVE_S
    out = output_dir(args)
    (out / "gpu-check").mkdir(parents=True, exist_ok=True)
    rec = Recorder(out / "gpu-check" / "measurements.jsonl", "check")
    rec.path.write_text("")
    (out / "gpu-check" / "steps.log").write_text("")
    results_md = out / "RESULTS-gpu.md"
    started = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime())
    mode = "rehearsal on the CPU (toy scale)" if args.rehearse else "GPU"
    rec.write(
        "check",
        {"started": started, "mode": mode, "budget_s": args.budget_s, "python": sys.executable},
        kind="check",
    )
    _become_subreaper()
    failed = []
    caps = dict(args.step_limit_s)  # None: every step; a name: that step (the last given of each wins)
    for name, limit in STEPS.items():
        if args.only and name not in args.only:
            continue
        left = deadline - time.monotonic()
        timeout = min(limit, caps.get(None, limit), caps.get(name, limit), left)
        if left < MIN_STEP_S:  # a limit asked for (--step-limit-s) is kept however short
            rec.write(
                "end",
                {"status": "skipped", "why": f"the check's budget of {args.budget_s:.0f}s was spent"},
                step=name,
                kind="end",
            )
            failed.append(name)
            continue
        rec.write("start", {"limit_s": round(timeout)}, step=name, kind="start")
        render_results(read_records(rec.path), results_md)
        end = run_step(name, timeout, args, out, rec)
        rec.write("end", end, step=name, kind="end")
        render_results(read_records(rec.path), results_md)
        if end["status"] != "ok":
            failed.append(name)
        print(f"{name}: {end['status']} ({end['seconds']}s)", flush=True)
    rec.write(
        "check", {"finished_s": round(time.monotonic() - started_mono, 1), "failed": failed}, kind="check"
    )
    render_results(read_records(rec.path), results_md)
    print(
        f"wrote {results_md} ({time.monotonic() - started_mono:.0f}s); failed: {', '.join(failed) or 'none'}"
    )
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
