"""The baseline the bench compares chatspace against: the plain library call, as a whole process.

It does what a user without chatspace would write: load the SentenceTransformer, read the same JSONL
rows, `model.encode(texts, batch_size=32)` (or the library's own multi-process pool), and write the
vectors to Parquet (id + embedding). It prints one JSON line with its stage timings, and saves the
vectors as .npy (not timed) so the bench can compare them row by row with chatspace's output.

    python benchmarks/plain_encode.py --data rows.jsonl --model PATH --device cpu --dtype float32 \
        --threads 2 --out /tmp/plain [--pool cpu,cpu]
"""

from __future__ import annotations

import argparse
import json
import os
import time

T_START = time.perf_counter()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", required=True)
    ap.add_argument("--model", required=True)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--dtype", default="float32", choices=["float32", "float16", "bfloat16"])
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    ap.add_argument("--pool", help="comma-separated devices for start_multi_process_pool, e.g. cpu,cpu")
    ap.add_argument("--max-seq-length", type=int, default=0)
    ap.add_argument("--out", required=True)
    args = ap.parse_args()

    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq
    import torch
    from sentence_transformers import SentenceTransformer

    if args.threads:
        torch.set_num_threads(args.threads)
    t = {"import": time.perf_counter() - T_START}

    t0 = time.perf_counter()
    model = SentenceTransformer(args.model, device="cpu" if args.pool else args.device)
    if args.max_seq_length:
        model.max_seq_length = args.max_seq_length
    if args.dtype != "float32":
        model.to(getattr(torch, args.dtype))
    t["load"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    ids, texts = [], []
    with open(args.data, encoding="utf-8") as fh:
        for line in fh:
            row = json.loads(line)
            ids.append(str(row["id"]))
            texts.append(row["text"])
    t["read"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    if args.pool:
        pool = model.start_multi_process_pool(args.pool.split(","))
        t["pool_start"] = time.perf_counter() - t0
        try:
            emb = model.encode(texts, pool=pool, batch_size=args.batch_size)
        finally:
            model.stop_multi_process_pool(pool)
    else:
        emb = model.encode(texts, batch_size=args.batch_size, device=args.device)
    emb = np.asarray(emb, dtype=np.float32)
    if args.device.startswith("cuda"):
        torch.cuda.synchronize()
    t["encode"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    os.makedirs(args.out, exist_ok=True)
    table = pa.table(
        {
            "id": pa.array(ids, pa.string()),
            "embedding": pa.FixedSizeListArray.from_arrays(pa.array(emb.reshape(-1)), emb.shape[1]),
        }
    )
    pq.write_table(table, os.path.join(args.out, "embeddings.parquet"))
    t["write"] = time.perf_counter() - t0
    t["total_in_process"] = time.perf_counter() - T_START
    np.save(os.path.join(args.out, "embeddings.npy"), emb)
    with open(os.path.join(args.out, "ids.json"), "w") as fh:
        json.dump(ids, fh)
    print("PLAIN_RESULT " + json.dumps({"rows": len(texts), "dim": int(emb.shape[1]), "seconds": t}))


if __name__ == "__main__":
    main()
