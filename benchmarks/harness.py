"""Running benchmark cases as whole processes, and reading back what they wrote.

Each case is a subprocess from interpreter start to exit, as a user would run it; the CPU time other
processes used meanwhile is measured, so a figure taken on a busy machine says so.
"""

from __future__ import annotations

import contextlib
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
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from quality import cosine_summary

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
CHATSPACE = [sys.executable, "-m", "chatspace.cli"]
PLAIN = [sys.executable, str(HERE / "plain_encode.py")]
ENV = {
    **os.environ,
    "HF_HUB_OFFLINE": "1",
    "TOKENIZERS_PARALLELISM": "false",
    "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])),
}


def log(msg: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


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


def environment(cores: int) -> dict:
    """The machine and the library versions, recorded beside every figure."""
    import torch

    from chatspace.hardware.cpu import cpu_features
    from chatspace.store.manifest import git_sha

    cpu = cpu_features()
    cuda = torch.cuda.is_available()
    info = {
        "host": socket.gethostname(),
        "date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "cpu": cpu.model,
        "cpu_flags": cpu.notable,
        "native_bf16": cpu.native_bf16,
        "cores": cores,
        "memory_gib": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1),
        "gpu": torch.cuda.get_device_name(0) if cuda else None,
        "torch": torch.__version__,
        "python": platform.python_version(),
        "git": short_sha(git_sha()),
        "load_before": loadavg(),
    }
    # Their installed versions, read without importing them (sentence-transformers' import alone takes
    # seconds, and a standalone case's own process uses neither).
    from importlib.metadata import PackageNotFoundError, version

    for key, dist in (("sentence_transformers", "sentence-transformers"), ("transformers", "transformers")):
        with contextlib.suppress(PackageNotFoundError):
            info[key] = version(dist)
    return info


def short_sha(sha: str | None) -> str | None:
    """abcdef123456 or abcdef123456-dirty: enough to find the commit, short enough for a table."""
    return None if not sha else sha[:12] + ("-dirty" if sha.endswith("-dirty") else "")


def standalone(args, rows: int, prefix: str):
    """What a case run on its own starts from: (the environment, a Bench in a fresh work folder, the
    model as named and its path, the corpus of `rows` rows)."""
    import corpus as corpus_mod

    from chatspace.config import DEFAULT_MODEL
    from chatspace.encoders.locate import resolve_model_path

    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    model = args.model or DEFAULT_MODEL
    bench = Bench(args, Path(tempfile.mkdtemp(prefix=prefix)))
    return environment(cores), bench, model, resolve_model_path(model), corpus_mod.build_corpus(rows)


def finish_standalone(bench, results: dict, table: str, name: str, out: Path | None) -> None:
    """Print a standalone case's table, save its results (default: benchmarks/.cache/<name>-<host>.json)
    and say which of its runs shared the CPU with other processes."""
    import corpus as corpus_mod

    print(table)
    out = out or corpus_mod.CACHE_DIR / f"{name}-{results['env']['host']}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=1, default=float) + "\n")
    log(f"results written to {out}")
    for w in bench.load_warnings:
        log("WARNING: " + w + " (figures are pessimistic)")


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
        env: dict | None = None,
        seed_cache: Path | None = None,
    ) -> dict:
        root = self.work / f"out-{name}"
        shutil.rmtree(root, ignore_errors=True)
        if seed_cache is not None:  # e.g. an ONNX export made beforehand, as a user's second run has it
            shutil.copytree(seed_cache, root / "cache")
        cmd = [*CHATSPACE, "embed-hf", "--dataset", str(data), "--id-field", "id", "--model", model]
        cmd += ["--devices", devices, "--output-root", str(root), "--no-progress"]
        if rows_per_shard:
            cmd += ["--rows-per-shard", str(rows_per_shard)]
        cmd += list(extra)
        wall, _, _, load = self._run(name, cmd, pin=pin, env=env)
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
            "worker_stats": workers,
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


def read_vectors(case: dict):
    """(ids, vectors) a case wrote, whichever kind it was."""
    return read_plain_vectors(case["out"]) if case["kind"] == "plain" else read_chatspace_vectors(case["out"])


def compare(ref_case: dict, case: dict) -> dict:
    """Per-row cosine of `case`'s vectors to `ref_case`'s, joined by id."""
    ref, other = read_vectors(ref_case), read_vectors(case)
    return cosine_summary(ref[1], aligned(ref, other))


@dataclass
class Context:
    """What every case of one bench run shares: options, the device, the model and the corpus."""

    args: Any
    device: str
    cuda: bool
    cores: int
    model: str  # as a user names it
    model_path: str  # where it loads from
    work: Path
    results: dict
    rows: int = 0
    data: Path | None = None
    lengths: list[int] = field(default_factory=list)

    @property
    def plain_threads(self) -> int | None:
        return self.cores if self.device == "cpu" else None

    @property
    def repeats(self) -> int:
        return 1 if self.args.quick else self.args.repeats
