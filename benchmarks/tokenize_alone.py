"""The tokenizer's own ceiling, as a whole process: the model's fast tokenizer, batched, on N threads.

Reads the same JSONL rows as a bench case, then times only `tokenizer(batch, truncation=True,
max_length=<the model's limit>)` over batches of `--batch-rows` (the worker's chunk), with the Rust
thread pool on `--threads` threads. Prints one JSON line: TOKENIZE_RESULT {"tokens", "seconds", ...}.

    python benchmarks/tokenize_alone.py --data rows.jsonl --model PATH --threads 2
"""

from __future__ import annotations

import argparse
import json
import os
import time


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", required=True)
    ap.add_argument("--model", required=True)
    ap.add_argument("--threads", type=int, required=True)
    ap.add_argument("--batch-rows", type=int, default=1024)
    args = ap.parse_args()
    # Before the tokenizers library starts its thread pool.
    os.environ["RAYON_NUM_THREADS"] = str(args.threads)
    os.environ["TOKENIZERS_PARALLELISM"] = "true" if args.threads > 1 else "false"

    from sentence_transformers import SentenceTransformer

    model = SentenceTransformer(args.model, device="cpu")
    tokenizer, max_length = model.tokenizer, int(model.max_seq_length)
    with open(args.data, encoding="utf-8") as fh:
        texts = [json.loads(line)["text"] for line in fh]
    tokenizer(texts[:64], truncation=True, max_length=max_length)  # the pool starts here, untimed
    tokens = 0
    t = time.perf_counter()
    for s in range(0, len(texts), args.batch_rows):
        ids = tokenizer(texts[s : s + args.batch_rows], truncation=True, max_length=max_length)["input_ids"]
        tokens += sum(map(len, ids))
    seconds = time.perf_counter() - t
    result = {"tokens": tokens, "seconds": seconds, "rows": len(texts), "threads": args.threads}
    print("TOKENIZE_RESULT " + json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
