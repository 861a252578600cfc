"""Model FLOPs per row and the device's matmul peak, so throughput can be read as a share of the peak.

Model FLOPs are counted per row from its real (truncated) token count: 2 x matmul parameters per token
plus 4 x n^2 x attention width per layer (padding is not useful work, so it does not count). The device
peak is measured with a large torch.matmul in the same dtype and thread count.
"""

from __future__ import annotations

import json
import time
from pathlib import Path


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
