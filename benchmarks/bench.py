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

Model FLOPs are counted per row from its real (truncated) token count: 2 x matmul parameters per token
plus 4 x n^2 x attention width per layer (padding is not useful work, so it does not count). The device
peak is measured in the same run with a large torch.matmul in the same dtype and thread count; "% peak"
is model FLOPs / encode time / peak.

    .venv/bin/python benchmarks/bench.py                 # the full bench (~5 min on 2 CPU cores)
    .venv/bin/python benchmarks/bench.py --quick         # a smoke run: few rows, no history entry
    .venv/bin/python benchmarks/bench.py --large --bench-large-layers 4
    .venv/bin/python benchmarks/bench.py --case padding  # the batch planner's padding efficiency only

Results: a table on stdout, benchmarks/results/<host>-<date>.json, and one line appended to the history
table of benchmarks/RESULTS.md (not for --quick). The machine should be otherwise idle: the load average
before and after is recorded, and a warning is printed when something else was using the CPU.
"""

from __future__ import annotations

import argparse
import datetime as dt
import glob
import json
import os
import platform
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(REPO))

import corpus as corpus_mod  # noqa: E402
import qwen3_random  # noqa: E402

DEFAULT_STS = REPO.parent / "shared" / "data" / "stsbenchmark" / "sts-test.csv"
RESULTS_DIR = HERE / "results"
RESULTS_MD = HERE / "RESULTS.md"
CHATSPACE = [sys.executable, "-m", "chatspace.cli"]
PLAIN = [sys.executable, str(HERE / "plain_encode.py")]

ENV = {
    **os.environ,
    "HF_HUB_OFFLINE": "1",
    "TOKENIZERS_PARALLELISM": "false",
    "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])),
}
os.environ.update({"HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"})


# --- small helpers ---------------------------------------------------------------------------------


def log(msg: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def cpu_model() -> str:
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, timeout=10).stdout
        for line in out.splitlines():
            if line.startswith("Model name:"):
                return line.split(":", 1)[1].strip()
    except (OSError, subprocess.SubprocessError):
        pass
    return platform.processor() or "unknown"


def cpu_flags() -> list[str]:
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return []
    for line in text.splitlines():
        if line.startswith("flags"):
            have = set(line.split(":", 1)[1].split())
            return [f for f in ("avx2", "avx512f", "avx512_bf16", "amx_bf16", "amx_tile") if f in have]
    return []


def git_sha() -> str | None:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=REPO, timeout=10
        )
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            cwd=REPO,
            timeout=10,
        ).stdout.strip()
        return out.stdout.strip() + ("+dirty" if dirty else "") if out.returncode == 0 else None
    except (OSError, subprocess.SubprocessError):
        return None


def cpu_busy_seconds() -> float | None:
    """CPU-seconds all processes have spent busy since boot (from /proc/stat; None elsewhere)."""
    try:
        fields = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
    except OSError:
        return None
    ticks = [int(x) for x in fields]
    idle = ticks[3] + (ticks[4] if len(ticks) > 4 else 0)
    return (sum(ticks[:8]) - idle) / os.sysconf("SC_CLK_TCK")


def own_cpu_seconds() -> float:
    """CPU-seconds used by this process and its finished children."""
    import resource

    s, c = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return s.ru_utime + s.ru_stime + c.ru_utime + c.ru_stime


def loadavg() -> float:
    try:
        return round(os.getloadavg()[0], 2)
    except OSError:
        return -1.0


def spearman(x, y) -> float:
    import numpy as np

    def ranks(a):
        a = np.asarray(a, dtype=np.float64)
        order = np.argsort(a, kind="mergesort")
        r = np.empty(len(a))
        r[order] = np.arange(len(a), dtype=np.float64)
        # average the ranks of ties
        _, inv, counts = np.unique(a, return_inverse=True, return_counts=True)
        sums = np.bincount(inv, weights=r)
        return (sums / counts)[inv]

    rx, ry = ranks(x), ranks(y)
    rx -= rx.mean()
    ry -= ry.mean()
    return float((rx * ry).sum() / np.sqrt((rx * rx).sum() * (ry * ry).sum()))


def cosine_rows(a, b):
    import numpy as np

    a = a.astype(np.float64)
    b = b.astype(np.float64)
    return (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))


# --- model FLOPs and device peak -----------------------------------------------------------------------


def model_shape(model_path: str) -> dict:
    """Matmul parameters per token, layers and attention width, from the model's HF config."""
    cfg = json.loads((Path(model_path) / "config.json").read_text())
    h, layers = cfg["hidden_size"], cfg["num_hidden_layers"]
    inter = cfg.get("intermediate_size", 4 * h)
    if cfg.get("model_type") in ("qwen3", "qwen2", "llama", "mistral"):
        hd = cfg.get("head_dim") or h // cfg["num_attention_heads"]
        q = cfg["num_attention_heads"] * hd
        kv = cfg.get("num_key_value_heads", cfg["num_attention_heads"]) * hd
        per_layer = h * q + 2 * h * kv + q * h + 3 * h * inter  # q, k, v, o; gate, up, down
        attn = q
    else:  # BERT-style encoder: q, k, v, o; up, down
        per_layer = 4 * h * h + 2 * h * inter
        attn = h
    return {
        "matmul_params": per_layer * layers,
        "layers": layers,
        "attn_width": attn,
        "type": cfg["model_type"],
    }


def model_flops(lengths, shape: dict) -> float:
    import numpy as np

    n = np.asarray(lengths, dtype=np.float64)
    return float((2 * shape["matmul_params"] * n + 4 * shape["layers"] * shape["attn_width"] * n * n).sum())


def token_lengths(model_path: str, texts: list[str]) -> tuple[list[int], int, int]:
    """Real token counts after the model's truncation, its max length, and the rows truncated."""
    from sentence_transformers import SentenceTransformer

    m = SentenceTransformer(model_path, device="cpu")
    max_len = int(m.max_seq_length)
    ids = m.tokenizer(texts, add_special_tokens=True, truncation=False)["input_ids"]
    return [min(len(x), max_len) for x in ids], max_len, sum(len(x) > max_len for x in ids)


def matmul_peak(dtype_name: str, device: str, threads: int | None) -> float:
    """Best FLOP/s of a large square torch.matmul in `dtype_name` (GFLOP/s)."""
    import torch

    if threads:
        torch.set_num_threads(threads)
    dtype = getattr(torch, dtype_name)
    best = 0.0
    sizes = (2048, 4096) if device == "cpu" else (4096, 8192)
    for n in sizes:
        a = torch.randn(n, n, device=device).to(dtype)
        b = torch.randn(n, n, device=device).to(dtype)
        c = torch.empty(n, n, device=device, dtype=dtype)
        target = 2e10 if device == "cpu" else 2e12
        k = max(1, int(target / (2 * n**3)))
        for _ in range(2):
            torch.matmul(a, b, out=c)
        for _ in range(4):
            if device != "cpu":
                torch.cuda.synchronize()
            t = time.perf_counter()
            for _ in range(k):
                torch.matmul(a, b, out=c)
            if device != "cpu":
                torch.cuda.synchronize()
            best = max(best, 2 * n**3 * k / (time.perf_counter() - t))
        del a, b, c
    if device != "cpu":
        torch.cuda.empty_cache()  # the cases run in subprocesses: leave them the memory
    return best / 1e9


# --- running cases -------------------------------------------------------------------------------------


class Bench:
    def __init__(self, args, work: Path):
        self.args = args
        self.work = work
        self.cases: dict[str, dict] = {}
        self.load_warnings: list[str] = []
        self.cpu_set = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else []

    def _run(self, name: str, cmd: list[str], *, pin: list[int] | None = None, env: dict | None = None):
        """Run one whole process; returns (wall seconds, stdout, stderr, foreign CPU share).

        The foreign CPU share is the CPU time other processes on the machine used during the run, as a
        fraction of all the cores' time: anything above a few percent makes the timing pessimistic.
        """
        preexec = None
        if pin:
            cpus = set(pin)

            def preexec():  # noqa: F811 - runs in the child before exec
                os.sched_setaffinity(0, cpus)

        busy0, own0 = cpu_busy_seconds(), own_cpu_seconds()
        t = time.perf_counter()
        proc = subprocess.run(
            cmd,
            capture_output=True,
            text=True,
            env={**ENV, **(env or {})},
            cwd=REPO,
            preexec_fn=preexec,
            timeout=self.args.case_timeout,
        )
        wall = time.perf_counter() - t
        busy1, own1 = cpu_busy_seconds(), own_cpu_seconds()
        if proc.returncode != 0:
            raise RuntimeError(f"{name} failed ({proc.returncode}):\n{proc.stderr[-4000:]}")
        foreign = None
        if busy0 is not None and busy1 is not None:
            n_cpus = os.cpu_count() or 1
            foreign = max(0.0, ((busy1 - busy0) - (own1 - own0)) / (wall * n_cpus))
            if foreign > self.args.max_foreign:
                self.load_warnings.append(f"{name}: other processes used {100 * foreign:.0f}% of the CPU")
        return wall, proc.stdout, proc.stderr, foreign

    def plain(
        self,
        name: str,
        data: Path,
        model: str,
        *,
        device: str,
        dtype: str,
        threads: int | None,
        pool: str | None = None,
        pin=None,
        env=None,
        max_seq_length: int = 0,
    ) -> dict:
        out = self.work / f"out-{name}"
        shutil.rmtree(out, ignore_errors=True)
        cmd = [*PLAIN, "--data", str(data), "--model", model, "--device", device, "--dtype", dtype]
        cmd += ["--out", str(out), "--threads", str(threads or 0)]
        if pool:
            cmd += ["--pool", pool]
        if max_seq_length:
            cmd += ["--max-seq-length", str(max_seq_length)]
        wall, stdout, _, load = self._run(name, cmd, pin=pin, env=env)
        line = next(x for x in stdout.splitlines() if x.startswith("PLAIN_RESULT "))
        res = json.loads(line.split(" ", 1)[1])
        return {
            "kind": "plain",
            "name": name,
            "dtype": dtype,
            "device": device,
            "pool": pool,
            "wall_s": wall,
            "foreign_cpu": load,
            "encode_s": res["seconds"]["encode"],
            "stages_s": res["seconds"],
            "rows": res["rows"],
            "out": str(out),
        }

    def chatspace(
        self,
        name: str,
        data: Path,
        model: str,
        *,
        devices: str,
        extra: list[str] = (),
        rows_per_shard: int | None,
        pin=None,
    ) -> dict:
        root = self.work / f"out-{name}"
        shutil.rmtree(root, ignore_errors=True)
        cmd = [*CHATSPACE, "embed-hf", "--dataset", str(data), "--id-field", "id", "--model", model]
        cmd += ["--devices", devices, "--output-root", str(root), "--no-progress"]
        if rows_per_shard:
            cmd += ["--rows-per-shard", str(rows_per_shard)]
        cmd += list(extra)
        wall, _, _, load = self._run(name, cmd, pin=pin)
        manifest_path = glob.glob(str(root / "indexes" / "**" / "manifest.json"), recursive=True)[0]
        m = json.loads(Path(manifest_path).read_text())
        workers = [w.get("stats", {}) for w in m.get("workers", [])]
        encode_s = max((w.get("busy_seconds", {}).get("encode", 0.0) for w in workers), default=0.0)
        stats = m.get("stats", {})
        return {
            "kind": "chatspace",
            "name": name,
            "devices": devices,
            "args": list(extra),
            "wall_s": wall,
            "foreign_cpu": load,
            "encode_s": encode_s,
            "rows": m["totals"]["rows"],
            "padding_efficiency": stats.get("padding_efficiency"),
            "tokens": stats.get("tokens"),
            "padded_tokens": stats.get("padded_tokens"),
            "batches": stats.get("batches"),
            "recompiles": stats.get("recompiles"),
            "oom_splits": stats.get("oom_splits"),
            "busy_s": stats.get("busy_seconds"),
            "idle_s": stats.get("idle_seconds"),
            "timings": m.get("timings"),
            "encoder": (m.get("workers") or [{}])[0].get("encoder"),
            "load_s": [w.get("load_seconds") for w in m.get("workers", [])],
            "warmup_s": [w.get("warmup_seconds") for w in m.get("workers", [])],
            "gpu": [w.get("gpu") for w in workers],
            "out": str(root),
        }

    def case(self, key: str, fn, *a, **kw) -> dict:
        """Run a case `--repeats` times (interleaving is up to the caller); keep the fastest."""
        log(f"{key} ...")
        res = fn(key, *a, **kw)
        prev = self.cases.get(key)
        if prev is not None:
            walls = prev.get("all_walls_s", [prev["wall_s"]]) + [res["wall_s"]]
            res = res if res["wall_s"] < prev["wall_s"] else prev
            res["all_walls_s"] = walls
        else:
            res["all_walls_s"] = [res["wall_s"]]
        self.cases[key] = res
        log(f"{key}: {res['all_walls_s'][-1]:.1f} s wall, encode {res['encode_s']:.1f} s")
        return res


def read_chatspace_vectors(root: str):
    import numpy as np
    import pyarrow.parquet as pq

    ids, vecs = [], []
    for f in sorted(glob.glob(os.path.join(root, "embeddings", "**", "*.parquet"), recursive=True)):
        t = pq.read_table(f, columns=["id", "embedding"])
        ids += t.column("id").to_pylist()
        emb = t.column("embedding").combine_chunks()
        vecs.append(emb.values.to_numpy(zero_copy_only=False).reshape(len(t), -1))
    return ids, np.concatenate(vecs).astype(np.float32)


def read_plain_vectors(out: str):
    import numpy as np

    ids = json.loads(Path(out, "ids.json").read_text())
    return ids, np.load(Path(out, "embeddings.npy"))


def aligned(ref, other):
    """`other`'s vectors in `ref`'s id order."""
    ids_r, _ = ref
    ids_o, vec_o = other
    pos = {k: i for i, k in enumerate(ids_o)}
    missing = [k for k in ids_r if k not in pos]
    if missing:
        raise RuntimeError(f"{len(missing)} ids missing from an output (e.g. {missing[0]!r})")
    return vec_o[[pos[k] for k in ids_r]]


def compare(ref_case: dict, case: dict) -> dict:
    ref = (
        read_plain_vectors(ref_case["out"])
        if ref_case["kind"] == "plain"
        else read_chatspace_vectors(ref_case["out"])
    )
    other = (
        read_plain_vectors(case["out"]) if case["kind"] == "plain" else read_chatspace_vectors(case["out"])
    )
    cos = cosine_rows(ref[1], aligned(ref, other))
    return {"min": float(cos.min()), "mean": float(cos.mean()), "rows": len(cos)}


# --- STS ---------------------------------------------------------------------------------------------


def sts_dataset(path: Path, work: Path) -> tuple[Path, list[tuple[str, str, float]]]:
    """The test split's unique sentences as JSONL rows, and the (id1, id2, score) pairs."""
    sentences: dict[str, str] = {}
    pairs = []
    with open(path, encoding="utf-8") as fh:
        for line in fh:
            parts = line.rstrip("\n").split("\t")
            if len(parts) < 7:
                continue
            score, s1, s2 = float(parts[4]), parts[5], parts[6]
            ids = []
            for s in (s1, s2):
                if s not in sentences:
                    sentences[s] = f"s{len(sentences):05d}"
                ids.append(sentences[s])
            pairs.append((ids[0], ids[1], score))
    out = work / "sts-sentences.jsonl"
    with open(out, "w", encoding="utf-8") as fh:
        for text, sid in sentences.items():
            fh.write(json.dumps({"id": sid, "text": text}, ensure_ascii=False) + "\n")
    return out, pairs


def sts_score(vectors, pairs) -> float:
    import numpy as np

    ids, vec = vectors
    pos = {k: i for i, k in enumerate(ids)}
    a = vec[[pos[p[0]] for p in pairs]]
    b = vec[[pos[p[1]] for p in pairs]]
    return 100 * spearman(cosine_rows(a, b), np.array([p[2] for p in pairs]))


# --- the bench ----------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
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
        "--case",
        choices=["all", "padding"],
        default="all",
        help="padding: only the planner's padding efficiency (benchmarks/padding.py; no model runs)",
    )
    args = ap.parse_args(argv)
    if args.case == "padding":
        import padding

        return padding.main(args.rows or 20000, args.out)

    import numpy as np
    import torch

    from chatspace.config import DEFAULT_MODEL
    from chatspace.encoders.sentence_transformer import resolve_model_path

    rows = args.rows or (400 if args.quick else 3000)
    cuda = torch.cuda.is_available()
    device = "cuda" if cuda else "cpu"
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    model = args.model or DEFAULT_MODEL
    model_path = resolve_model_path(model)
    started = dt.datetime.now(dt.UTC)
    env_info = {
        "host": socket.gethostname(),
        "date": started.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "cpu": cpu_model(),
        "cpu_flags": cpu_flags(),
        "cores": cores,
        "memory_gib": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1),
        "gpu": torch.cuda.get_device_name(0) if cuda else None,
        "torch": torch.__version__,
        "python": platform.python_version(),
        "git": git_sha(),
        "load_before": loadavg(),
    }
    try:
        import sentence_transformers
        import transformers

        env_info["sentence_transformers"] = sentence_transformers.__version__
        env_info["transformers"] = transformers.__version__
    except ImportError:
        pass
    log(f"{env_info['cpu']} x{cores}{', ' + env_info['gpu'] if cuda else ''}; load {env_info['load_before']}")

    work = Path(tempfile.mkdtemp(prefix="chatspace-bench-"))
    bench = Bench(args, work)
    results: dict = {
        "env": env_info,
        "args": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
    }
    try:
        # --- the corpus and its profile ----------------------------------------------------------------
        data = corpus_mod.build_corpus(rows)
        _, texts = corpus_mod.read_corpus(data)
        lengths, max_len, truncated = token_lengths(model_path, texts)
        shape = model_shape(model_path)
        flops = model_flops(lengths, shape)
        lens = np.array(lengths)
        results["corpus"] = {
            "path": str(data),
            "rows": len(texts),
            "tokens": int(lens.sum()),
            "max_tokens": max_len,
            "truncated_rows": int(truncated),
            "token_percentiles": {f"p{q}": int(np.percentile(lens, q)) for q in (10, 50, 90, 99)},
            "chars_max": max(len(t) for t in texts),
            "model_flops": flops,
            "model": {"name": model, **shape},
        }
        log(
            f"corpus: {len(texts)} rows, {lens.sum()} tokens (p50 {np.percentile(lens, 50):.0f}, "
            f"p99 {np.percentile(lens, 99):.0f}), {flops / 1e12:.2f} TFLOP"
        )

        # --- device peak --------------------------------------------------------------------------------
        peak_dtypes = ["float32", "bfloat16"] + (["float16"] if cuda else [])
        results["peak_gflops"] = {
            d: matmul_peak(d, device, cores if device == "cpu" else None) for d in peak_dtypes
        }
        log("peak: " + ", ".join(f"{k} {v:.0f} GFLOP/s" for k, v in results["peak_gflops"].items()))

        rps = None  # chatspace's default shard size, as a user would run it
        plain_threads = cores if device == "cpu" else None

        # --- throughput: plain vs chatspace -------------------------------------------------------------
        for _ in range(1 if args.quick else args.repeats):
            bench.case(
                "plain-f32",
                bench.plain,
                data,
                model_path,
                device=device,
                dtype="float32",
                threads=plain_threads,
            )
            bench.case(
                "chatspace-f32",
                bench.chatspace,
                data,
                model,
                devices=device,
                extra=["--dtype", "float32"],
                rows_per_shard=rps,
            )
            bench.case(
                "chatspace-bf16",
                bench.chatspace,
                data,
                model,
                devices=device,
                extra=["--dtype", "bfloat16"],
                rows_per_shard=rps,
            )
            if cuda:
                bench.case(
                    "plain-f16", bench.plain, data, model_path, device=device, dtype="float16", threads=None
                )
                bench.case(
                    "chatspace-f16",
                    bench.chatspace,
                    data,
                    model,
                    devices=device,
                    extra=["--dtype", "float16"],
                    rows_per_shard=rps,
                )
                bench.case(
                    "chatspace-bf16-compile",
                    bench.chatspace,
                    data,
                    model,
                    devices=device,
                    extra=["--dtype", "bfloat16", "--compile-model"],
                    rows_per_shard=rps,
                )
            else:
                bench.case(
                    "plain-bf16",
                    bench.plain,
                    data,
                    model_path,
                    device=device,
                    dtype="bfloat16",
                    threads=plain_threads,
                )

        # --- the CPU pool, pinned to two cores ---------------------------------------------------------
        if not args.skip_pool and cores >= 2:
            pin = bench.cpu_set[:2]
            pool_rows = rows if not cuda else min(rows, 1000)
            pool_data = data if pool_rows == rows else corpus_mod.build_corpus(pool_rows)
            prps = max(50, pool_rows // 8)  # several units, so two workers can share them
            for _ in range(1 if args.quick else args.repeats):
                # The same two cores: one worker with two threads, then two workers with one each.
                for name, devices, threads in (
                    ("pool-1x2-chatspace", "cpu", "2"),
                    ("pool-2x1-chatspace", "cpu,cpu", "1"),
                ):
                    bench.case(
                        name,
                        bench.chatspace,
                        pool_data,
                        model,
                        devices=devices,
                        extra=["--threads-per-worker", threads, "--dtype", "float32"],
                        rows_per_shard=prps,
                        pin=pin,
                    )
                # SentenceTransformer's own pool, as it comes and with one OpenMP thread per process.
                for name, env in (("pool-st-2x", None), ("pool-st-2x-omp1", {"OMP_NUM_THREADS": "1"})):
                    bench.case(
                        name,
                        bench.plain,
                        pool_data,
                        model_path,
                        device="cpu",
                        dtype="float32",
                        threads=None,
                        pool="cpu,cpu",
                        pin=pin,
                        env=env,
                    )
            results["pool"] = {"rows": pool_rows, "pinned_cpus": pin}

        # --- quality: per-row cosine to plain float32, STS ---------------------------------------------
        ref = bench.cases["plain-f32"]
        quality = {}
        for key, case in bench.cases.items():
            if key == "plain-f32" or (key.startswith("pool") and results.get("pool", {}).get("rows") != rows):
                continue
            quality[key] = compare(ref, case)
        results["cosine_to_plain_f32"] = quality

        if not args.skip_sts and args.sts.is_file():
            sts_data, pairs = sts_dataset(args.sts, work)
            sts = {}
            c = bench.plain(
                "sts-plain-f32", sts_data, model_path, device=device, dtype="float32", threads=plain_threads
            )
            sts["plain-f32"] = sts_score(read_plain_vectors(c["out"]), pairs)
            for dtype_name in ["float32", "bfloat16"] + (["float16"] if cuda else []):
                c = bench.chatspace(
                    f"sts-chatspace-{dtype_name}",
                    sts_data,
                    model,
                    devices=device,
                    extra=["--dtype", dtype_name],
                    rows_per_shard=10_000,
                )
                sts[f"chatspace-{dtype_name}"] = sts_score(read_chatspace_vectors(c["out"]), pairs)
            results["sts_spearman_x100"] = {k: round(v, 2) for k, v in sts.items()}
            log("STS: " + ", ".join(f"{k} {v:.2f}" for k, v in sts.items()))
        elif not args.skip_sts:
            log(f"STS skipped: {args.sts} not found")

        # --- the large model ---------------------------------------------------------------------------
        if args.large:
            results["large"] = bench_large(bench, args, device, cores, cuda, results["peak_gflops"])

        # --- the table and targets -----------------------------------------------------------------------
        results["cases"] = summarise(bench.cases, results, lengths, shape, device)
        results["targets"] = targets(results, cuda)
        results["load_after"] = loadavg()
        results["load_warnings"] = bench.load_warnings
        results["finished"] = dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        table = render(results)
        print(table)
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
        else:
            log(f"outputs kept in {work}")

    stem = f"{env_info['host']}-{started.strftime('%Y%m%d')}"
    # A --quick smoke run never replaces the day's full results: it goes to the git-ignored cache.
    out = args.out or (
        corpus_mod.CACHE_DIR / f"{stem}-quick.json" if args.quick else RESULTS_DIR / f"{stem}.json"
    )
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=1, default=float) + "\n")
    log(f"results written to {out}")
    if not args.quick and not args.no_history:
        append_history(results, out)
    if bench.load_warnings:
        log("WARNING: other processes were using the CPU during the bench; figures are pessimistic:")
        for w in bench.load_warnings:
            log("  " + w)
    return 0


def bench_large(bench: Bench, args, device: str, cores: int, cuda: bool, peaks: dict) -> dict:
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
    threads = cores if device == "cpu" else None
    rps = None  # one unit: the default shard size holds all the rows
    cases["large-plain-f32"] = bench.plain(
        "large-plain-f32", data, str(model_dir), device=device, dtype="float32", threads=threads
    )
    if cuda:
        cases["large-plain-f16"] = bench.plain(
            "large-plain-f16", data, str(model_dir), device=device, dtype="float16", threads=None
        )
    else:
        cases["large-plain-bf16"] = bench.plain(
            "large-plain-bf16", data, str(model_dir), device=device, dtype="bfloat16", threads=threads
        )
    for dtype_name in ["float32", "bfloat16"] + (["float16"] if cuda else []):
        key = f"large-chatspace-{dtype_name}"
        cases[key] = bench.chatspace(
            key, data, str(model_dir), devices=device, extra=["--dtype", dtype_name], rows_per_shard=rps
        )
    for key, c in cases.items():
        log(f"{key}: {c['wall_s']:.1f} s wall, encode {c['encode_s']:.1f} s")
        c["all_walls_s"] = [c["wall_s"]]
    out["cases"] = summarise(cases, {"peak_gflops": peaks}, lengths, shape, device)
    ref = cases["large-plain-f32"]
    out["cosine_to_plain_f32"] = {k: compare(ref, c) for k, c in cases.items() if k != "large-plain-f32"}
    return out


def _dtype_of(case: dict) -> str:
    if case["kind"] == "plain":
        return case["dtype"]
    args = case.get("args") or []
    if "--dtype" in args:
        return args[args.index("--dtype") + 1]
    return "bfloat16" if case.get("devices", "").startswith("cuda") else "float32"


def summarise(cases: dict, results: dict, lengths, shape, device) -> dict:
    flops = model_flops(lengths, shape)
    tokens = int(sum(lengths))
    peaks = results.get("peak_gflops", {})
    base = next((c for k, c in cases.items() if k.endswith("plain-f32")), None)
    out = {}
    for key, c in cases.items():
        pool_rows = results.get("pool", {}).get("rows")
        n_rows = c["rows"]  # the pool may run on the corpus's first rows only (GPU hosts)
        f = flops if n_rows == len(lengths) else model_flops(lengths[:n_rows], shape)
        tok = tokens if n_rows == len(lengths) else int(sum(lengths[:n_rows]))
        dtype = _dtype_of(c)
        peak = peaks.get(dtype)
        row = {
            "kind": c["kind"],
            "dtype": dtype,
            "wall_s": round(c["wall_s"], 2),
            "all_walls_s": [round(w, 2) for w in c.get("all_walls_s", [])],
            "encode_s": round(c["encode_s"], 2),
            "rows": n_rows,
            "rows_per_s": n_rows / c["wall_s"],
            "tokens_per_s": tok / c["wall_s"],
            "encode_rows_per_s": n_rows / c["encode_s"] if c["encode_s"] else None,
            "encode_tokens_per_s": tok / c["encode_s"] if c["encode_s"] else None,
            "pct_peak_encode": 100 * f / c["encode_s"] / (peak * 1e9) if peak and c["encode_s"] else None,
            "pct_peak_wall": 100 * f / c["wall_s"] / (peak * 1e9) if peak else None,
            "foreign_cpu": c.get("foreign_cpu"),
        }
        ref = (
            cases.get("pool-1x2-chatspace") if key.startswith("pool") and pool_rows != len(lengths) else base
        )
        if ref is not None and ref["rows"] == n_rows:
            row["x_plain_wall"] = ref["wall_s"] / c["wall_s"]
            row["x_plain_encode"] = ref["encode_s"] / c["encode_s"] if c["encode_s"] else None
        for k in (
            "padding_efficiency",
            "batches",
            "recompiles",
            "oom_splits",
            "busy_s",
            "idle_s",
            "timings",
            "load_s",
            "warmup_s",
            "gpu",
            "encoder",
            "stages_s",
            "devices",
            "args",
            "pool",
        ):
            if c.get(k) is not None:
                row[k] = c[k]
        out[key] = row
    return out


def targets(results: dict, cuda: bool) -> list[dict]:
    c = results["cases"]
    q = results.get("cosine_to_plain_f32", {})
    sts = results.get("sts_spearman_x100", {})
    out = []

    def add(name, value, goal, ok, note=""):
        out.append({"target": name, "value": value, "goal": goal, "met": bool(ok), "note": note})

    def ratio(a, b, field="wall_s"):
        return c[b][field] / c[a][field] if a in c and b in c and c[a][field] else None

    if not cuda:
        r = ratio("chatspace-f32", "plain-f32")
        add("CPU float32 end to end vs plain encode (whole process)", r, ">= 1.0", r is not None and r >= 1.0)
        r = ratio("chatspace-bf16", "plain-f32")
        re_ = ratio("chatspace-bf16", "plain-f32", "encode_s")
        add(
            "CPU bfloat16 vs plain float32 (whole process)",
            r,
            ">= 1.5",
            r is not None and r >= 1.5,
            f"encode-only {re_:.2f}x" if re_ else "",
        )
    else:
        r = ratio("chatspace-bf16", "plain-f16")
        add("GPU chatspace bf16 vs plain float16 (whole process)", r, "> 1.0", r is not None and r > 1.0)
    if "chatspace-f32" in q:
        v = q["chatspace-f32"]["min"]
        add("float32 per-row cosine to plain encode (min)", v, ">= 0.99999", v >= 0.99999)
    if "chatspace-bf16" in q:
        v = q["chatspace-bf16"]["min"]
        add("bfloat16 per-row cosine to float32 (min)", v, ">= 0.999", v >= 0.999)
    if "chatspace-bfloat16" in sts:
        v = sts["chatspace-bfloat16"]
        add("STS-B Spearman x100, bfloat16", v, ">= 81.9", v >= 81.9)
    if "chatspace-float32" in sts:
        v = sts["chatspace-float32"]
        add("STS-B Spearman x100, float32", v, "== plain (82.03)", abs(v - sts.get("plain-f32", v)) < 0.01)
    if "pool-2x1-chatspace" in c and "pool-1x2-chatspace" in c:
        r = ratio("pool-2x1-chatspace", "pool-1x2-chatspace")
        add("2 workers x 1 thread vs 1 worker x 2 threads", r, ">= 0.9", r is not None and r >= 0.9)
        st_best = min(c[k]["wall_s"] for k in ("pool-st-2x", "pool-st-2x-omp1") if k in c)
        r = st_best / c["pool-2x1-chatspace"]["wall_s"]
        add("2-worker pool vs SentenceTransformer's pool (its best)", r, "> 1.0 (clearly)", r > 1.05)
    return out


def _fmt(v, spec="{:.2f}"):
    return "-" if v is None else spec.format(v)


def render(results: dict) -> str:
    env = results["env"]
    lines = [
        "",
        f"chatspace bench - {env['date']} - {env['host']}: {env['cpu']}, {env['cores']} cores"
        + (f", {env['gpu']}" if env.get("gpu") else "")
        + f"; torch {env['torch']}; git {env.get('git')}",
        f"corpus: {results['corpus']['rows']} rows, {results['corpus']['tokens']} tokens "
        f"(p50 {results['corpus']['token_percentiles']['p50']}, p90 {results['corpus']['token_percentiles']['p90']}, "
        f"p99 {results['corpus']['token_percentiles']['p99']}); model {results['corpus']['model']['name']}",
        "matmul peak: " + ", ".join(f"{k} {v:.0f} GFLOP/s" for k, v in results["peak_gflops"].items()),
        "",
    ]
    lines += _table(results["cases"])
    if results.get("large"):
        lg = results["large"]
        lines += [
            "",
            f"large: Qwen3-Embedding-0.6B architecture, random weights, {lg['layers']} layers, "
            f"{lg['rows']} rows, {lg['tokens']} tokens (throughput only)",
        ]
        lines += _table(lg["cases"])
        lines += [
            "  cosine to plain f32: "
            + ", ".join(f"{k} min {v['min']:.5f}" for k, v in lg["cosine_to_plain_f32"].items())
        ]
    q = results.get("cosine_to_plain_f32", {})
    if q:
        lines += [
            "",
            "per-row cosine to plain float32: " + ", ".join(f"{k} min {v['min']:.6f}" for k, v in q.items()),
        ]
    if results.get("sts_spearman_x100"):
        lines += [
            "STS Benchmark Spearman x100: "
            + ", ".join(f"{k} {v:.2f}" for k, v in results["sts_spearman_x100"].items())
        ]
    lines += [
        "",
        "targets:"
        + (
            " (a --quick run: fixed process costs dominate; judge on the full bench)"
            if results["args"].get("quick")
            else ""
        ),
    ]
    for t in results["targets"]:
        val = t["value"]
        val_s = f"{val:.6f}" if isinstance(val, float) and val < 1.0 and val > 0.99 else _fmt(val)
        lines.append(
            f"  [{'met' if t['met'] else 'NOT MET'}] {t['target']}: {val_s} (goal {t['goal']}){' - ' + t['note'] if t['note'] else ''}"
        )
    return "\n".join(lines)


def _table(cases: dict) -> list[str]:
    lines = [
        "| case | dtype | wall s | rows/s | tokens/s | x plain (process) | encode s | x plain (encode) "
        "| % peak (encode) | pad eff | other CPU % |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for k, r in cases.items():
        foreign = r.get("foreign_cpu")
        lines.append(
            f"| {k} | {r['dtype']} | {r['wall_s']:.1f} | {r['rows_per_s']:.1f} | {r['tokens_per_s']:.0f} | "
            f"{_fmt(r.get('x_plain_wall'))} | {r['encode_s']:.1f} | {_fmt(r.get('x_plain_encode'))} | "
            f"{_fmt(r.get('pct_peak_encode'), '{:.1f}')} | {_fmt(r.get('padding_efficiency'), '{:.3f}')} | "
            f"{_fmt(None if foreign is None else 100 * foreign, '{:.0f}')} |"
        )
    return lines


def append_history(results: dict, out: Path) -> None:
    """One line per full bench run in RESULTS.md's history table."""
    c = results["cases"]
    env = results["env"]

    def x(key, field="x_plain_wall"):
        return _fmt(c.get(key, {}).get(field))

    sts = results.get("sts_spearman_x100", {})
    pool = (
        _fmt(c["pool-1x2-chatspace"]["wall_s"] / c["pool-2x1-chatspace"]["wall_s"])
        if "pool-2x1-chatspace" in c and "pool-1x2-chatspace" in c
        else "-"
    )
    line = (
        f"| {env['date'][:10]} | {env['host']} | {env.get('gpu') or env['cpu']} x{env['cores']} | {env.get('git')} | "
        f"{results['corpus']['rows']} | {_fmt(c.get('plain-f32', {}).get('rows_per_s'), '{:.1f}')} | "
        f"{x('chatspace-f32')} | {x('chatspace-bf16')} | {pool} | {_fmt(sts.get('chatspace-bfloat16'))} | "
        f"{os.path.relpath(out, HERE)} |"
    )
    header = (
        "| date | host | device | git | rows | plain f32 rows/s | f32 x plain | bf16 x plain | 2x1 / 1x2 pool | "
        "STS bf16 | results |\n|---|---|---|---|---:|---:|---:|---:|---:|---:|---|\n"
    )
    text = RESULTS_MD.read_text() if RESULTS_MD.is_file() else "# Benchmark results\n"
    marker = "## History"
    if marker not in text:
        text = (
            text.rstrip("\n")
            + f"\n\n{marker}\n\nOne line per full `make bench` run (appended by bench.py).\n\n{header}"
        )
    text = text.rstrip("\n") + "\n" + line + "\n"
    RESULTS_MD.write_text(text)
    log(f"history line appended to {RESULTS_MD}")


if __name__ == "__main__":
    sys.exit(main())
