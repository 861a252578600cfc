"""The steps of `make gpu-check` (benchmarks/gpu_check.py runs each in its own process), and the
helpers they share. Each step writes every measurement through `rec.write(key, value)` the moment it
exists. With CHATSPACE_GPU_CHECK_REHEARSE=1 every step runs on the CPU at toy scale.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from quality import cosine_summary

HERE = Path(__file__).resolve().parent
REPO = HERE.parent

QWEN_DIR = Path(os.environ.get("CHATSPACE_GPU_CHECK_CACHE", "/tmp/chatspace-gpu-check")) / "qwen3-0.6b-random"
REHEARSE = os.environ.get("CHATSPACE_GPU_CHECK_REHEARSE") == "1"
# tokens per batch; the rehearsal's is small so a compiled warm-up's largest batch stays cheap on the CPU
BUDGET = 4096 if REHEARSE else 131072
DEVICE = "cpu" if REHEARSE else "cuda"
MAX_TOKENS = 512 if REHEARSE else 32768  # the Qwen3 shape's truncation length (its real maximum on a GPU)
SMALL_QWEN = {"hidden_size": 64, "intermediate_size": 128, "num_attention_heads": 4, "num_key_value_heads": 2}
HEADLINE_ROWS = 100_000
REHEARSAL_CHARS = 300  # a rehearsal row's text is cut to this (about 60 tokens)
CHATSPACE = [sys.executable, "-m", "chatspace.cli"]
# What chatspace imports on a worker; a sealed image lacking one is named in the versions step.
NEEDED = ("numpy", "pyarrow", "pandas", "orjson", "datasets", "psutil", "pynvml", "tokenizers", "safetensors")


def rows_for(n: int) -> int:
    return max(16, n // 100) if REHEARSE else n


def sync() -> None:
    import torch

    if DEVICE == "cuda":
        torch.cuda.synchronize()


# --- shared helpers (run inside a step's process) -------------------------------------------------------


def texts(n: int) -> list[str]:
    from sample_text import unique_docstrings

    docs = [doc for _, doc in unique_docstrings(min_chars=20)]
    if REHEARSE:  # short rows: bfloat16/float16 matmuls are slow on a CPU, and the length proves nothing here
        docs = [doc[:REHEARSAL_CHARS] for doc in docs]
    return [docs[i % len(docs)] for i in range(n)]


def encoder(model: str, **options):
    from chatspace.config import RunConfig
    from chatspace.encoders.sentence_transformer import SentenceTransformerEncoder
    from chatspace.hardware.devices import Device
    from chatspace.stats import WorkerStats

    cfg = RunConfig.from_options(dataset="unused", output_root="/tmp/unused", model=model, **options)
    device = Device("cuda", "cuda:0", "0") if DEVICE == "cuda" else Device("cpu", "cpu:0")
    enc = SentenceTransformerEncoder(cfg.encoder, device, None)
    stats = WorkerStats()
    enc.load(stats)
    return enc, stats


def stream(enc, rows: list[str], chunk: int = 1024):
    """Tokenize first, then time the encoder alone as a worker drives it (chunks in, chunks out)."""
    import numpy as np

    from chatspace.stats import WorkerStats

    stats = WorkerStats()
    prepared = [enc.prepare(rows[s : s + chunk], stats) for s in range(0, len(rows), chunk)]
    sync()
    gpu_before = enc.gpu_busy_seconds
    t = time.perf_counter()
    got = {}
    for key, p in enumerate(prepared):
        enc.submit(key, p, stats)
        got.update(enc.poll("full"))
    got.update(enc.poll("all"))
    wall = time.perf_counter() - t
    emb = np.concatenate([got[k] for k in range(len(prepared))])
    return emb, stats, wall, enc.gpu_busy_seconds - gpu_before


def cosines(a, b) -> dict:
    c = cosine_summary(a, b)
    return {"min": c["min"], "mean": c["mean"]}


def minilm_path(args) -> str:
    if args.minilm:
        return args.minilm
    from chatspace.config import DEFAULT_MODEL
    from chatspace.encoders.locate import resolve_model_path

    return resolve_model_path(DEFAULT_MODEL)


def qwen3_model(args) -> str:
    import qwen3_random

    if REHEARSE:
        small = QWEN_DIR.with_name("qwen3-small-rehearsal")
        return str(
            qwen3_random.build(
                small, layers=2, max_seq_length=512, tokenizer=minilm_path(args), overrides=SMALL_QWEN
            )
        )
    return str(qwen3_random.build(QWEN_DIR, max_seq_length=32768, tokenizer=minilm_path(args)))


def where() -> list[str]:
    return ["--gpus", "0"] if DEVICE == "cuda" else ["--devices", "cpu"]


def timed_run(cmd: list[str], timeout: float) -> tuple[subprocess.CompletedProcess, float]:
    t = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO, timeout=timeout)
    return proc, time.perf_counter() - t


def read_manifest(root: str) -> dict:
    manifest = next(Path(root, "indexes").rglob("manifest.json"), None)
    return json.loads(manifest.read_text()) if manifest else {}


def read_vectors(root: str):
    """(ids, vectors) of every shard a run wrote, in shard order."""
    import numpy as np
    import pyarrow.parquet as pq

    ids, vecs = [], []
    for shard in sorted(Path(root, "embeddings").rglob("*.parquet")):
        table = pq.read_table(shard, columns=["id", "embedding"])
        ids += table.column("id").to_pylist()
        emb = table.column("embedding").combine_chunks()
        vecs.append(emb.values.to_numpy(zero_copy_only=False).reshape(len(emb), -1))
    return ids, np.concatenate(vecs) if vecs else np.zeros((0, 0), np.float32)


# --- steps: the pipeline -------------------------------------------------------------------------------


def step_versions(args, rec) -> dict:
    import importlib
    import platform

    import torch

    out = {"python": platform.python_version(), "executable": sys.executable, "torch": torch.__version__}
    for name in ("transformers", "sentence_transformers", "flash_attn", "kernels", *NEEDED):
        try:
            out[name] = getattr(importlib.import_module(name), "__version__", "yes")
        except Exception as e:  # noqa: BLE001 - a missing or broken module is what this step reports
            out[name] = f"missing ({type(e).__name__})"
    rec.write("packages", out)
    if DEVICE == "cuda":
        props = torch.cuda.get_device_properties(0)
        gpu = {
            "cuda": torch.version.cuda,
            "gpu": torch.cuda.get_device_name(0),
            "capability": ".".join(map(str, torch.cuda.get_device_capability(0))),
            "memory_gib": round(props.total_memory / 2**30, 1),
            "uuid": str(props.uuid),
            "cuda_visible_devices": os.environ.get("CUDA_VISIBLE_DEVICES"),
        }
        try:
            gpu["driver"] = subprocess.run(
                ["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
                capture_output=True,
                text=True,
                timeout=20,
            ).stdout.strip()
        except (OSError, subprocess.TimeoutExpired):
            gpu["driver"] = None
        rec.write("gpu", gpu)
    from chatspace.hardware.devices import visible_gpus

    rec.write("visible_gpus", visible_gpus())
    return {
        "ok": not any(str(out[n]).startswith("missing") for n in ("transformers", "sentence_transformers"))
    }


def in_scratch(step):
    """Run a step in a scratch folder of its own under the system's temporary folder, removed after."""
    import functools
    import shutil

    @functools.wraps(step)
    def run_in(args, rec):
        scratch = tempfile.mkdtemp(prefix=f"chatspace-gpu-{step.__name__}-")
        try:
            return step(args, rec, scratch)
        finally:
            shutil.rmtree(scratch, ignore_errors=True)

    return run_in


@in_scratch
def step_cli(args, rec, out: str) -> dict:
    """`chatspace embed-hf` end to end on the demo rows, then `chatspace verify`."""
    common = ["--dataset", "chatspace/resources/demo.jsonl", "--id-field", "id", *where()]
    if REHEARSE:
        common += ["--max-rows", "16"]
    cmd = [
        *CHATSPACE,
        "embed-hf",
        *common,
        "--model",
        minilm_path(args),
        "--output-root",
        out,
        "--no-progress",
    ]
    embed, wall = timed_run(cmd, 300)
    m = read_manifest(out)
    worker = (m.get("workers") or [{}])[0]
    rec.write(
        "embed",
        {
            "exit": embed.returncode,
            "wall_s": wall,
            "status": m.get("status"),
            "rows": m.get("totals", {}).get("rows"),
            "worker_device": worker.get("device"),
            "encoder_device": worker.get("encoder", {}).get("device"),
            "dtype": worker.get("encoder", {}).get("dtype"),
            "gpu_telemetry_in_worker": worker.get("stats", {}).get("gpu"),
            "stderr_tail": embed.stderr[-800:],
        },
    )
    ids, vectors = read_vectors(out)
    rec.write("parquet", {"rows": len(ids), "dimension": int(vectors.shape[1]) if len(ids) else 0})
    verify, _ = timed_run([*CHATSPACE, "verify", out], 120)
    rec.write("verify", {"exit": verify.returncode, "stdout_tail": verify.stdout[-400:]})
    nvml_ok = DEVICE != "cuda" or bool(worker.get("stats", {}).get("gpu"))
    return {
        "ok": embed.returncode == 0 and verify.returncode == 0 and m.get("status") == "complete" and nvml_ok,
    }


@in_scratch
def step_headline(args, rec, work: str) -> dict:
    """SentenceTransformer's own encode against `chatspace embed-hf`, the same rows, whole processes."""
    import corpus as corpus_mod

    n = 16 if REHEARSE else HEADLINE_ROWS
    dtype = "float32" if REHEARSE else "float16"
    data = corpus_mod.build_corpus(n)
    model = minilm_path(args)
    plain_cmd = [sys.executable, str(HERE / "plain_encode.py"), "--data", str(data), "--model", model]
    plain_cmd += ["--device", DEVICE, "--dtype", dtype, "--out", f"{work}/plain"]
    plain, plain_wall = timed_run(plain_cmd, 400)
    line = next((x for x in plain.stdout.splitlines() if x.startswith("PLAIN_RESULT ")), None)
    plain_res = json.loads(line.split(" ", 1)[1]) if line else {"stderr_tail": plain.stderr[-800:]}
    rec.write(
        "plain", {"exit": plain.returncode, "wall_s": plain_wall, "rows_per_s": n / plain_wall, **plain_res}
    )
    cs_cmd = [*CHATSPACE, "embed-hf", "--dataset", str(data), "--id-field", "id", "--model", model, *where()]
    cs_cmd += ["--dtype", dtype, "--output-root", f"{work}/chatspace", "--no-progress"]
    if not REHEARSE:
        cs_cmd += ["--tokens-per-batch", str(BUDGET)]
    cs, cs_wall = timed_run(cs_cmd, 400)
    m = read_manifest(f"{work}/chatspace")
    stats = m.get("stats", {})
    workers = [w.get("stats", {}) for w in m.get("workers", [])]
    encode_s = max((w.get("busy_seconds", {}).get("encode", 0.0) for w in workers), default=0.0)
    rec.write(
        "chatspace",
        {
            "exit": cs.returncode,
            "wall_s": cs_wall,
            "rows_per_s": n / cs_wall,
            "rows": m.get("totals", {}).get("rows"),
            "encode_s": encode_s,
            "batches": stats.get("batches"),
            "padding_efficiency": stats.get("padding_efficiency"),
            "busy_seconds": stats.get("busy_seconds"),
            "idle_seconds": stats.get("idle_seconds"),
            "load_s": [w.get("load_seconds") for w in m.get("workers", [])],
            "warmup_s": [w.get("warmup_seconds") for w in m.get("workers", [])],
            "gpu": [w.get("gpu") for w in workers],
            "stderr_tail": cs.stderr[-800:] if cs.returncode else "",
        },
    )
    both = plain.returncode == 0 and cs.returncode == 0
    if both:
        plain_encode_s = plain_res["seconds"]["encode"]
        rec.write(
            "ratio",
            {
                "rows": n,
                "dtype": dtype,
                "plain_rows_per_s": n / plain_wall,
                "chatspace_rows_per_s": n / cs_wall,
                "ratio": plain_wall / cs_wall,
                "encode_ratio": plain_encode_s / encode_s if encode_s else None,
            },
        )
        import numpy as np

        ids, vectors = read_vectors(f"{work}/chatspace")
        plain_ids = json.loads(Path(work, "plain", "ids.json").read_text())
        plain_vecs = np.load(Path(work, "plain", "embeddings.npy"))
        order = {i: k for k, i in enumerate(ids)}
        same = [order[i] for i in plain_ids if i in order]
        goal = 0.99999 if dtype == "float32" else 0.999
        if len(same) == len(plain_ids):
            c = cosines(vectors[same], plain_vecs)
            rec.write("cosine_to_plain", {**c, "goal": goal, "ok": c["min"] >= goal})
            both = c["min"] >= goal
        else:
            rec.write("cosine_to_plain", {"ok": False, "missing_ids": len(plain_ids) - len(same)})
            both = False
    return {"ok": both}


# --- steps: the models ---------------------------------------------------------------------------------


def step_minilm_quality(args, rec) -> dict:
    import torch
    from sentence_transformers import SentenceTransformer

    rows = texts(rows_for(2000))
    path = minilm_path(args)
    ref_model = SentenceTransformer(path, device=DEVICE, model_kwargs={"dtype": torch.float32})
    ref = ref_model.encode(rows, batch_size=64, convert_to_numpy=True)
    del ref_model
    ok = True
    for name, options, goal in [
        ("float32", {"dtype": "float32"}, 0.99999),
        ("bfloat16", {"dtype": "bfloat16"}, 0.999),
        ("float16", {"dtype": "float16"}, 0.999),
    ]:
        enc, _ = encoder(path, tokens_per_batch=BUDGET, **options)
        emb, stats, _, _ = stream(enc, rows)
        c = cosines(emb, ref)
        rec.write(
            name, {**c, "goal": goal, "ok": c["min"] >= goal, "padding_efficiency": stats.padding_efficiency}
        )
        ok = ok and c["min"] >= goal
        del enc
        torch.cuda.empty_cache()
    return {"ok": ok}
