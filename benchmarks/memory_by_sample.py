"""Peak RSS of a 4,000-row and a 16,000-row run with the same shard size: memory should follow the
unit, not the sample (the ratio stays near 1).

Each run is `chatspace embed-dataset` against the local fake OpenAI server (so the figure is the
pipeline's own memory: reading, bookkeeping, writing), under `/usr/bin/time -v`, whose "Maximum
resident set size" is that of the run's largest process. Rows are ~1.7 kB of real prose.

    PYTHONPATH=$PWD .venv/bin/python benchmarks/memory_by_sample.py [WORK_DIR]
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.helpers import CHATSPACE, real_texts, write_jsonl  # noqa: E402
from tests.helpers.openai_fake_server import FakeEmbeddingServer  # noqa: E402

SIZES = (4000, 16000)
ROW_CHARS = 1500


def peak_rss_kib(work: Path, rows: int, env: dict[str, str]) -> int:
    texts = real_texts(1000)
    data = work / f"rows-{rows}.jsonl"
    long_texts = [(t + " ") * (ROW_CHARS // len(t) + 1) for t in texts]
    write_jsonl(data, [{"id": f"r{i}", "text": long_texts[i % len(long_texts)]} for i in range(rows)])
    out = work / f"out-{rows}"
    shutil.rmtree(out, ignore_errors=True)
    proc = subprocess.run(
        ["/usr/bin/time", "-v", *CHATSPACE, "embed-dataset", "--dataset", str(data), "--id-field", "id",
         "--rows-per-shard", "1000", "--output-root", str(out), "--no-progress"],
        env=env, capture_output=True, text=True, cwd=REPO,
    )  # fmt: skip
    if proc.returncode != 0:
        raise SystemExit(proc.stderr[-3000:])
    return int(re.search(r"Maximum resident set size \(kbytes\): (\d+)", proc.stderr).group(1))


def main() -> None:
    work = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(tempfile.mkdtemp(prefix="chatspace-mem-"))
    work.mkdir(parents=True, exist_ok=True)
    with FakeEmbeddingServer(dimension=384) as server:
        env = {**os.environ, "OPENAI_BASE_URL": server.base_url, "OPENAI_API_KEY": "k", "HF_HUB_OFFLINE": "1"}
        peaks = {rows: peak_rss_kib(work, rows, env) for rows in SIZES}
    for rows, kib in peaks.items():
        print(f"{rows:>6,} rows: peak RSS {kib:,} KiB")
    print(f"ratio {SIZES[1]:,} / {SIZES[0]:,} rows: {peaks[SIZES[1]] / peaks[SIZES[0]]:.3f}")


if __name__ == "__main__":
    main()
