"""What `--long-text chunk` and `mean` cost against `truncate`, measured in one run on the same rows.

300 rows of real prose (the bench's docstrings), 30 of them long (~1,500 tokens each, joined
docstrings); all-MiniLM-L6-v2 keeps 256. Each mode runs through the CLI on one CPU worker, twice,
alternating, and the faster of the two counts. The target: chunk's wall time within 1.3x of
truncate's scaled by the tokens each embedded (the extra tokens are the chunks' own work).

    .venv/bin/python benchmarks/long_text.py [--rows 300] [--long 30]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import orjson

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))


def corpus(rows: int, long: int, long_tokens: int = 1500) -> list[dict]:
    from sample_text import unique_docstrings
    from transformers import AutoTokenizer

    from chatspace.config import DEFAULT_MODEL
    from chatspace.encoders.locate import resolve_model_path

    tok = AutoTokenizer.from_pretrained(resolve_model_path(DEFAULT_MODEL))
    docs = [d for _, d in unique_docstrings(min_chars=20)]
    counts = [len(tok(d, add_special_tokens=False, verbose=False)["input_ids"]) for d in docs]
    short = [d for d, n in zip(docs, counts, strict=True) if n <= 200]
    out, pos = [], 0
    for i in range(rows):
        if i % (rows // long) == 0 and sum(1 for r in out if r["long"]) < long:
            parts, n = [], 0
            while n < long_tokens:
                parts.append(docs[pos % len(docs)])
                n += counts[pos % len(docs)]
                pos += 1
            out.append({"id": f"r{i}", "text": "\n\n".join(parts), "long": True})
        else:
            out.append({"id": f"r{i}", "text": short[i % len(short)], "long": False})
    return out


def run_mode(data: Path, root: Path, mode: str) -> dict:
    args = [sys.executable, "-m", "chatspace.cli", "embed-hf", "--dataset", str(data), "--id-field", "id"]
    args += ["--devices", "cpu", "--output-root", str(root), "--no-progress", "--long-text", mode]
    t0 = time.perf_counter()
    subprocess.run(args, check=True, capture_output=True, cwd=REPO)
    wall = time.perf_counter() - t0
    manifest = orjson.loads(next(root.glob("indexes/*/*/*/manifest.json")).read_bytes())
    stats = manifest["stats"]
    return {
        "wall_s": round(wall, 2),
        "encode_s": round(stats["busy_seconds"].get("encode", 0.0), 2),
        "tokens": manifest["totals"]["tokens"],
        "rows": manifest["totals"]["rows"],
        "expansion": manifest["totals"].get("expansion", {}),
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=300)
    ap.add_argument("--long", type=int, default=30)
    a = ap.parse_args()
    rows = corpus(a.rows, a.long)
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "corpus.jsonl"
        data.write_bytes(b"".join(orjson.dumps({"id": r["id"], "text": r["text"]}) + b"\n" for r in rows))
        best: dict[str, dict] = {}
        for attempt in range(2):
            for mode in ("truncate", "chunk", "mean"):
                r = run_mode(data, Path(tmp) / f"{mode}-{attempt}", mode)
                if mode not in best or r["wall_s"] < best[mode]["wall_s"]:
                    best[mode] = r
    t, c = best["truncate"], best["chunk"]
    token_share = c["tokens"] / t["tokens"]
    result = {
        "rows": a.rows,
        "long_rows": a.long,
        "modes": best,
        "chunk_tokens_over_truncate": round(token_share, 3),
        "chunk_wall_over_truncate": round(c["wall_s"] / t["wall_s"], 3),
        "chunk_wall_over_truncate_times_tokens": round(c["wall_s"] / (t["wall_s"] * token_share), 3),
        "target": "chunk_wall_over_truncate_times_tokens <= 1.3",
    }
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
