"""The model steps of `make gpu-check` (Qwen3 shape against its reference, out-of-memory, eager and
compiled throughput); benchmarks/gpu_steps.py holds the pipeline steps and the helpers both share."""

from __future__ import annotations

import time

from gpu_steps import (
    BUDGET,
    DEVICE,
    MAX_TOKENS,
    REHEARSE,
    cosines,
    encoder,
    minilm_path,
    qwen3_model,
    rows_for,
    stream,
    sync,
    texts,
)


def step_qwen3_ref(args, rec) -> dict:
    import numpy as np
    import torch
    import torch.nn.functional as F
    from transformers import AutoModel, AutoTokenizer

    from chatspace.stats import WorkerStats

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
        last = mask.sum(1) - 1
        pooled = hidden[:, -1] if bool((mask[:, -1] == 1).all()) else hidden[torch.arange(len(mask)), last]
        ref.append(F.normalize(pooled.float(), p=2, dim=1).cpu().numpy())
        counts.extend(mask.sum(1).tolist())
    ref = np.concatenate(ref)
    del model
    torch.cuda.empty_cache()
    ok = True
    for name, options, goal in [
        ("float32", {"dtype": "float32"}, 0.9999),
        ("bfloat16", {"dtype": "bfloat16"}, 0.99),
    ]:
        enc, _ = encoder(path, tokens_per_batch=BUDGET, **options)
        prepared = enc.prepare(rows, WorkerStats())
        ragged_ok = len(prepared.token_counts) == len(rows) and prepared.token_counts.tolist() == counts
        emb, _, _, _ = stream(enc, rows)
        c = cosines(emb, ref)
        good = c["min"] >= goal and ragged_ok
        rec.write(name, {**c, "goal": goal, "ok": good, "one_length_per_text": ragged_ok})
        ok = ok and good
        del enc
        torch.cuda.empty_cache()
    try:  # the unpadded path, where flash attention is installed
        enc, _ = encoder(
            path, tokens_per_batch=BUDGET, dtype="bfloat16", attn_implementation="flash_attention_2"
        )
        emb, stats, _, _ = stream(enc, rows)
        value = {
            **cosines(emb, ref),
            "unpadded": enc.describe()["unpadded_batches"],
            "padding_efficiency": stats.padding_efficiency,
        }
    except Exception as e:  # noqa: BLE001 - not installed here: say so
        value = {"unavailable": f"{type(e).__name__}: {str(e)[:200]}"}
    rec.write("bfloat16 flash_attention_2", value)
    return {"ok": ok}


def step_oom(args, rec) -> dict:
    import numpy as np
    import torch

    path = qwen3_model(args)
    long_rows = [" ".join(texts(40)[i::7]) for i in range(7)] * (2 if REHEARSE else 60)  # thousands of tokens
    fraction = 0.12
    if DEVICE == "cuda":
        torch.cuda.set_per_process_memory_fraction(fraction)
    enc, load = encoder(path, tokens_per_batch=1 << 20, dtype="bfloat16")
    rec.write("load", {"memory_fraction": fraction, "warm_up_splits": load.oom_splits})
    passes = []
    for k in range(2):
        emb, stats, wall, _ = stream(enc, long_rows)
        passes.append(stats.oom_splits)
        rec.write(
            f"pass {k + 1}",
            {"splits": stats.oom_splits, "rows_finite": bool(np.isfinite(emb).all()), "wall_s": wall},
        )
    rec.write("lowered_budgets", {str(k): v for k, v in list(enc._planner.bucket_budgets.items())[:5]})
    if REHEARSE:  # no memory fraction on the CPU: this rehearses the step, it cannot run out of memory
        return {"ok": True}
    return {"ok": (load.oom_splits + passes[0]) > 0 and passes[1] == 0}


def speed(rec, model: str, rows: list[str], flops_per_token: int, compile_model: bool) -> dict:
    import torch

    from chatspace.hardware.telemetry import GpuTelemetry, cuda_device_uuid

    peak = bf16_peak()
    rec.write("peak_bf16_tflops", peak / 1e12)
    with strict_recompiles():
        enc, load = encoder(model, tokens_per_batch=BUDGET, dtype="bfloat16", compile_model=compile_model)
        rec.write("load", {"load_seconds": load.load_seconds, "warmup_seconds": load.warmup_seconds})
        tel = GpuTelemetry(uuid=cuda_device_uuid(), interval=0.2) if DEVICE == "cuda" else None
        if tel:
            tel.start()
        recompiles = 0
        for k in range(2):
            emb, stats, wall, gpu_busy = stream(enc, rows)
            recompiles += stats.recompiles
            rec.write(
                f"pass {k + 1}",
                {
                    "rows_per_s": len(rows) / wall,
                    "real_tokens_per_s": stats.tokens / wall,
                    "padded_tokens_per_s": stats.padded_tokens / wall,
                    "padding_efficiency": stats.padding_efficiency,
                    "batches": stats.batches,
                    "encode_busy_s": stats.busy_seconds.get("encode", 0.0),
                    "wall_s": wall,
                    "gpu_busy_fraction": gpu_busy / wall if wall else None,
                    "matmul_mfu": 2 * flops_per_token * stats.tokens / wall / peak if peak else None,
                    "recompiles": stats.recompiles,
                    "peak_allocated_gib": torch.cuda.max_memory_allocated() / 2**30
                    if DEVICE == "cuda"
                    else None,
                },
            )
        nvml = tel.stop() if tel else {}
    summary = {"nvml_util_mean_pct": nvml.get("util_mean_pct"), "recompiles": recompiles}
    if compile_model:
        summary.update(graphs=enc.compile_counters.graphs, graph_breaks=enc.compile_counters.graph_breaks)
    rec.write("summary", summary)
    return {"ok": not compile_model or recompiles == 0}


def strict_recompiles():
    """Make dynamo fail outright when a recompile limit is hit (not fall back to eager in silence)."""
    import contextlib

    import torch

    config = torch._dynamo.config
    for name in ("fail_on_recompile_limit_hit", "fail_on_cache_limit_hit"):  # newer, older torch
        if hasattr(config, name):
            return config.patch(**{name: True})
    return contextlib.nullcontext()


def bf16_peak() -> float:
    import torch

    n = 512 if REHEARSE else 8192
    a = torch.randn(n, n, device=DEVICE, dtype=torch.bfloat16)
    for _ in range(3):
        a @ a
    sync()
    t = time.perf_counter()
    for _ in range(10):
        a @ a
    sync()
    return 10 * 2 * n**3 / (time.perf_counter() - t)


def qwen3_rows() -> list[str]:
    import corpus as corpus_mod

    # The rehearsal's fewest rows that still make a pass of several batches (16 buckets' worth)
    return corpus_mod.read_corpus(corpus_mod.build_corpus(16 if REHEARSE else 3000))[1]


def step_qwen3_eager(args, rec) -> dict:
    """Model FLOPs count 2 x the matrix multiplies' parameters per real token (attention's own products
    are left out, so the MFU is a lower bound)."""
    import qwen3_random

    return speed(rec, qwen3_model(args), qwen3_rows(), qwen3_random.linear_params(), compile_model=False)


def step_qwen3_compiled(args, rec) -> dict:
    import qwen3_random
    import torch
    from sentence_transformers import SentenceTransformer

    if REHEARSE:  # Dynamo's graph capture and recompile counts, without Inductor's C++ build
        import functools

        torch.compile = functools.partial(torch.compile, backend="eager")
        rec.write("rehearsal", "torch.compile(backend='eager')")

    result = speed(rec, qwen3_model(args), qwen3_rows(), qwen3_random.linear_params(), compile_model=True)
    # then MiniLM compiled, against SentenceTransformer.encode in fp32
    rows = texts(rows_for(1000) // (2 if REHEARSE else 1))
    path = minilm_path(args)
    ref = SentenceTransformer(path, device=DEVICE).encode(rows, batch_size=64, convert_to_numpy=True)
    enc, _ = encoder(path, tokens_per_batch=BUDGET, dtype="bfloat16", compile_model=True)
    emb, stats, _, _ = stream(enc, rows)
    c = cosines(emb, ref)
    rec.write(
        "minilm bfloat16 compiled",
        {**c, "goal": 0.999, "ok": c["min"] >= 0.999, "recompiles": stats.recompiles},
    )
    return {"ok": result["ok"] and c["min"] >= 0.999}
