"""The steps of `make gpu-check` (benchmarks/gpu_check.py runs each in its own process), and the
helpers they share. With CHATSPACE_GPU_CHECK_SMOKE=1 every step runs on the CPU with small sizes.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

from quality import cosine_summary

HERE = Path(__file__).resolve().parent
REPO = HERE.parent

QWEN_DIR = Path(os.environ.get("CHATSPACE_GPU_CHECK_CACHE", "/tmp/chatspace-gpu-check")) / "qwen3-0.6b-random"
BUDGET = 131072
# --smoke runs every step on the CPU with small sizes: a check of this script itself, not of a GPU.
SMOKE = os.environ.get("CHATSPACE_GPU_CHECK_SMOKE") == "1"
DEVICE = "cpu" if SMOKE else "cuda"
MAX_TOKENS = 512 if SMOKE else 32768  # the Qwen3 shape's truncation length (its real maximum on a GPU)
SMALL_QWEN = {"hidden_size": 64, "intermediate_size": 128, "num_attention_heads": 4, "num_key_value_heads": 2}


def rows_for(n: int) -> int:
    return max(16, n // 50) if SMOKE else n


def sync() -> None:
    import torch

    if DEVICE == "cuda":
        torch.cuda.synchronize()


# --- shared helpers (run inside a step's process) -------------------------------------------------------


def texts(n: int) -> list[str]:
    from sample_text import unique_docstrings

    docs = [doc for _, doc in unique_docstrings(min_chars=20)]
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

    if SMOKE:
        small = QWEN_DIR.with_name("qwen3-small-smoke")
        return str(
            qwen3_random.build(
                small, layers=2, max_seq_length=512, tokenizer=minilm_path(args), overrides=SMALL_QWEN
            )
        )
    return str(qwen3_random.build(QWEN_DIR, max_seq_length=32768, tokenizer=minilm_path(args)))


# --- steps ---------------------------------------------------------------------------------------------


def step_versions(args) -> dict:
    import platform

    import sentence_transformers
    import torch
    import transformers

    if SMOKE:
        return {"python": platform.python_version(), "torch": torch.__version__, "smoke": True}
    out = {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "transformers": transformers.__version__,
        "sentence_transformers": sentence_transformers.__version__,
        "gpu": torch.cuda.get_device_name(0),
        "capability": ".".join(map(str, torch.cuda.get_device_capability(0))),
        "memory_gib": round(torch.cuda.get_device_properties(0).total_memory / 2**30, 1),
        "uuid": str(torch.cuda.get_device_properties(0).uuid),
    }
    for name in ("flash_attn", "kernels", "pynvml", "orjson", "datasets", "openai"):
        try:
            mod = __import__(name)
            out[name] = getattr(mod, "__version__", "yes")
        except ImportError:
            out[name] = None
    try:
        out["driver"] = subprocess.run(
            ["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
            capture_output=True,
            text=True,
            timeout=20,
        ).stdout.strip()
    except (OSError, subprocess.TimeoutExpired):
        out["driver"] = None
    from chatspace.hardware.devices import visible_gpus

    out["visible_gpus"] = visible_gpus()
    return out


def step_minilm(args) -> dict:
    import torch
    from sentence_transformers import SentenceTransformer

    rows = texts(rows_for(2000))
    path = minilm_path(args)
    ref_model = SentenceTransformer(path, device=DEVICE, model_kwargs={"dtype": torch.float32})
    ref = ref_model.encode(rows, batch_size=64, convert_to_numpy=True)
    del ref_model
    out = {}
    for name, options, goal in [
        ("float32", {"dtype": "float32"}, 0.99999),
        ("bfloat16", {"dtype": "bfloat16"}, 0.999),
        ("float16", {"dtype": "float16"}, 0.999),
        ("bfloat16 compiled", {"dtype": "bfloat16", "compile_model": True}, 0.999),
    ]:
        enc, load = encoder(path, tokens_per_batch=BUDGET, **options)
        emb, stats, wall, _ = stream(enc, rows)
        c = cosines(emb, ref)
        out[name] = {
            **c,
            "goal": goal,
            "ok": c["min"] >= goal,
            "padding_efficiency": stats.padding_efficiency,
        }
        del enc
        torch.cuda.empty_cache()
    return out


def step_qwen3_ref(args) -> dict:
    import numpy as np
    import torch
    import torch.nn.functional as F
    from transformers import AutoModel, AutoTokenizer

    path = qwen3_model(args)
    rows = texts(rows_for(256))
    tok = AutoTokenizer.from_pretrained(path, padding_side="left")
    model = AutoModel.from_pretrained(path, dtype=torch.float32).to(DEVICE).eval()
    ref, counts = [], []
    for s in range(0, len(rows), 32):
        batch = tok(
            rows[s : s + 32], padding=True, truncation=True, max_length=MAX_TOKENS, return_tensors="pt"
        )
        batch = {k: v.to(DEVICE) for k, v in batch.items()}
        with torch.inference_mode():
            hidden = model(**batch).last_hidden_state
        mask = batch["attention_mask"]
        pooled = (
            hidden[:, -1]
            if bool((mask[:, -1] == 1).all())
            else hidden[torch.arange(len(mask)), mask.sum(1) - 1]
        )
        ref.append(F.normalize(pooled.float(), p=2, dim=1).cpu().numpy())
        counts.extend(mask.sum(1).tolist())
    ref = np.concatenate(ref)
    del model
    torch.cuda.empty_cache()
    out = {}
    for name, options, goal in [
        ("float32", {"dtype": "float32"}, 0.9999),
        ("bfloat16", {"dtype": "bfloat16"}, 0.99),
    ]:
        enc, _ = encoder(path, tokens_per_batch=BUDGET, **options)
        from chatspace.stats import WorkerStats

        prepared = enc.prepare(rows, WorkerStats())
        ragged_ok = len(prepared.token_counts) == len(rows) and prepared.token_counts.tolist() == counts
        emb, stats, _, _ = stream(enc, rows)
        c = cosines(emb, ref)
        out[name] = {
            **c,
            "goal": goal,
            "ok": c["min"] >= goal and ragged_ok,
            "one_length_per_text": ragged_ok,
        }
        del enc
        torch.cuda.empty_cache()
    try:  # the unpadded path, where flash attention is installed
        enc, _ = encoder(
            path, tokens_per_batch=BUDGET, dtype="bfloat16", attn_implementation="flash_attention_2"
        )
        emb, stats, _, _ = stream(enc, rows)
        out["bfloat16 flash_attention_2"] = {
            **cosines(emb, ref),
            "unpadded": enc.describe()["unpadded_batches"],
            "padding_efficiency": stats.padding_efficiency,
        }
    except Exception as e:  # noqa: BLE001 - not installed here: say so
        out["bfloat16 flash_attention_2"] = {"unavailable": f"{type(e).__name__}: {str(e)[:200]}"}
    return out


def step_oom(args) -> dict:
    import numpy as np
    import torch

    path = qwen3_model(args)
    long_rows = [" ".join(texts(40)[i::7]) for i in range(7)] * (2 if SMOKE else 60)  # thousands of tokens
    fraction = 0.12
    if DEVICE == "cuda":
        torch.cuda.set_per_process_memory_fraction(fraction)
    enc, load = encoder(path, tokens_per_batch=1 << 20, dtype="bfloat16")
    first = stream(enc, long_rows)
    second = stream(enc, long_rows)
    return {
        "memory_fraction": fraction,
        "warm_up_splits": load.oom_splits,
        "first_pass_splits": first[1].oom_splits,
        "second_pass_splits": second[1].oom_splits,
        "rows_finite": bool(np.isfinite(first[0]).all() and np.isfinite(second[0]).all()),
        "lowered_budgets": {str(k): v for k, v in list(enc._planner.bucket_budgets.items())[:5]},
        "ok": (load.oom_splits + first[1].oom_splits) > 0 and second[1].oom_splits == 0,
    }


def _speed(model: str, rows: list[str], flops_per_token) -> dict:
    import torch

    from chatspace.hardware.telemetry import GpuTelemetry, cuda_device_uuid

    peak = _bf16_peak()
    out = {"peak_bf16_tflops": peak / 1e12}
    for name, compile_model in [("eager", False), ("compiled", True)]:
        with strict_recompiles():
            enc, load = encoder(model, tokens_per_batch=BUDGET, dtype="bfloat16", compile_model=compile_model)
            tel = GpuTelemetry(uuid=cuda_device_uuid(), interval=0.2)
            tel.start()
            passes = [stream(enc, rows) for _ in range(2)]
            nvml = tel.stop()
        emb, stats, wall, gpu_busy = passes[1]
        flops = flops_per_token(stats)
        out[name] = {
            "warmup_seconds": load.warmup_seconds,
            "rows_per_s": len(rows) / wall,
            "real_tokens_per_s": stats.tokens / wall,
            "padded_tokens_per_s": stats.padded_tokens / wall,
            "padding_efficiency": stats.padding_efficiency,
            "batches": stats.batches,
            "encode_busy_s": stats.busy_seconds.get("encode", 0.0),
            "wall_s": wall,
            "gpu_busy_fraction": gpu_busy / wall if wall else None,
            "nvml_util_mean_pct": nvml.get("util_mean_pct"),
            "matmul_mfu": flops / wall / peak if peak else None,
            "graphs": enc.compile_counters.graphs if compile_model else None,
            "graph_breaks": enc.compile_counters.graph_breaks if compile_model else None,
            "recompiles": sum(p[1].recompiles for p in passes) if compile_model else None,
            "peak_allocated_gib": torch.cuda.max_memory_allocated() / 2**30 if DEVICE == "cuda" else None,
        }
        del enc
        torch.cuda.empty_cache()
    return out


def strict_recompiles():
    """Make dynamo fail outright when a recompile limit is hit (not fall back to eager in silence)."""
    import contextlib

    import torch

    config = torch._dynamo.config
    for name in ("fail_on_recompile_limit_hit", "fail_on_cache_limit_hit"):  # newer, older torch
        if hasattr(config, name):
            return config.patch(**{name: True})
    return contextlib.nullcontext()


def _bf16_peak() -> float:
    import torch

    n = 1024 if SMOKE else 8192
    a = torch.randn(n, n, device=DEVICE, dtype=torch.bfloat16)
    for _ in range(3):
        a @ a
    sync()
    t = time.perf_counter()
    for _ in range(10):
        a @ a
    sync()
    return 10 * 2 * n**3 / (time.perf_counter() - t)


def _flops(params: int):
    """Model FLOPs of the matrix multiplies: 2 x their parameters per real token (attention's own
    products are not counted, so the MFU reported is a lower bound)."""

    def count(stats) -> float:
        return 2 * params * stats.tokens

    return count


def step_minilm_speed(args) -> dict:
    import corpus as corpus_mod

    _, rows = corpus_mod.read_corpus(corpus_mod.build_corpus(rows_for(20000)))
    return _speed(minilm_path(args), rows, _flops(6 * 12 * 384 * 384))


def step_qwen3_speed(args) -> dict:
    import corpus as corpus_mod
    import qwen3_random

    _, rows = corpus_mod.read_corpus(corpus_mod.build_corpus(rows_for(3000)))
    return _speed(qwen3_model(args), rows, _flops(qwen3_random.linear_params()))


def step_cli(args) -> dict:
    import tempfile

    out = tempfile.mkdtemp(prefix="chatspace-gpu-cli-")
    base = [sys.executable, "-m", "chatspace.cli"]
    where = ["--gpus", "0"] if DEVICE == "cuda" else ["--devices", "cpu"]
    common = ["--dataset", "chatspace/resources/demo.jsonl", "--id-field", "id", *where]
    embed = subprocess.run(
        [*base, "embed-hf", *common, "--model", minilm_path(args), "--output-root", out, "--no-progress"],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=150,
    )
    verify = subprocess.run([*base, "verify", out], capture_output=True, text=True, cwd=REPO, timeout=60)
    manifest = next(Path(out, "indexes").rglob("manifest.json"), None)
    m = json.loads(manifest.read_text()) if manifest else {}
    workers = m.get("workers", [])
    return {
        "embed_exit": embed.returncode,
        "verify_exit": verify.returncode,
        "rows": m.get("totals", {}).get("rows"),
        "status": m.get("status"),
        "gpu_telemetry": workers[0].get("stats", {}).get("gpu") if workers else None,
        "stderr_tail": embed.stderr[-800:],
        "ok": embed.returncode == 0 and verify.returncode == 0,
    }
