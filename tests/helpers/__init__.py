"""What the tests share: real text, small datasets, the real `chatspace` CLI run in a subprocess (in the
foreground or under faults), and readers of a run's shards and manifest."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import orjson

from benchmarks.quality import cosine_rows  # noqa: F401 - one definition, shared with the bench

REPO = Path(__file__).resolve().parents[2]
SHARED_DATA = REPO.parent / "shared" / "data"
CHATSPACE = [sys.executable, "-m", "chatspace.cli"]


def real_texts(limit: int | None = None) -> list[str]:
    """Real documentation prose of many lengths: standard-library docstrings, in a fixed order."""
    from benchmarks.sample_text import unique_docstrings

    texts = [doc for _, doc in unique_docstrings(min_chars=20)]
    return texts[:limit] if limit else texts


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    with open(path, "wb") as fh:
        for r in rows:
            fh.write(orjson.dumps(r) + b"\n")
    return path


# Environment a process reads once (at start, or when a library is imported): a call that changes one of
# these, or unsets anything, gets a fresh process. CHATSPACE_TEST_* drive tests/helpers/worker_hook,
# which is installed through PYTHONPATH at a process's start.
_READ_AT_START = (
    "PYTHONPATH",
    "PYTHONHASHSEED",
    "CHATSPACE_TEST_",
    "HF_",
    "HUGGINGFACE_",
    "TRANSFORMERS_",
    "SENTENCE_TRANSFORMERS_",
    "TORCH",
    "CUDA_",
    "OMP_",
    "MKL_",
    "RAY_",
    "NUMBA_",
    "TQDM_",
)


def run_cli(
    *args: str,
    env: dict | None = None,
    unset: tuple[str, ...] = (),
    timeout: float = 240,
    check: bool = False,
    cwd: Path | None = None,
    own_process: bool = False,
):
    """Run `chatspace ARGS` as a user would (from the repository's root unless `cwd`); returns a
    CompletedProcess.

    The command runs in this process through the CLI's own entry point (`chatspace.cli.main`), with its
    own stdout, stderr (file descriptors 1 and 2 included), environment and working directory, and with
    the logging set-up a fresh process has: its workers are real processes, forked from one fork server
    that this pytest process keeps (see pool/executors/local.py), so a run costs its work, not three
    seconds of imports. `own_process=True`, `unset`, or an `env` that a process reads only at its start
    (see _READ_AT_START) run `python -m chatspace.cli` in a subprocess instead: what depends on the
    process itself (its exit hook, signals, what it has imported) is tested there."""
    if own_process or unset or any(name.startswith(_READ_AT_START) for name in env or {}):
        return _run_in_subprocess(args, env, unset, timeout, cwd, check)
    from tests.helpers.in_process import run_in_this_process

    proc = run_in_this_process(
        [*CHATSPACE, *args], args, {"HF_HUB_OFFLINE": "1", **(env or {})}, cwd or REPO, timeout
    )
    if check and proc.returncode != 0:
        raise AssertionError(f"chatspace {' '.join(args)} failed ({proc.returncode}):\n{proc.stderr}")
    return proc


def _run_in_subprocess(args, env, unset, timeout, cwd, check):
    full_env = {**os.environ, "HF_HUB_OFFLINE": "1", **(env or {})}
    for name in unset:
        full_env.pop(name, None)
    proc = subprocess.run(
        [*CHATSPACE, *args], capture_output=True, text=True, timeout=timeout, env=full_env, cwd=cwd or REPO
    )
    if check and proc.returncode != 0:
        raise AssertionError(f"chatspace {' '.join(args)} failed ({proc.returncode}):\n{proc.stderr}")
    return proc


def run_embed_dataset(server, dataset: str | Path, out: Path, *args: str, key: str):
    """`chatspace embed-dataset` (OpenAI mode) of `dataset` into `out`, against the fake `server`."""
    return run_cli(
        "embed-dataset",
        "--dataset",
        str(dataset),
        "--output-root",
        str(out),
        "--no-progress",
        *args,
        env={"OPENAI_BASE_URL": server.base_url, "OPENAI_API_KEY": key},
    )


def run_table(out: Path):
    """Every shard of the (single) run under output root `out`, as one pyarrow Table."""
    import pyarrow.parquet as pq

    return pq.ParquetDataset(sorted(out.glob("embeddings/*/*/*/shard-*.parquet"))).read()


def run_manifest(out: Path) -> dict:
    return orjson.loads(next(out.glob("indexes/*/*/*/manifest.json")).read_bytes())


def run_vectors(out: Path) -> dict[str, np.ndarray]:
    """id -> embedding of the run under `out`."""
    table = run_table(out)
    return dict(
        zip(table.column("id").to_pylist(), np.asarray(table.column("embedding").to_pylist()), strict=True)
    )


def assert_same_vectors(a: Path, b: Path, min_cosine: float = 0.9999) -> None:
    """The runs under output roots `a` and `b` hold the same ids, each with the same vector."""
    va, vb = run_vectors(a), run_vectors(b)
    assert sorted(va) == sorted(vb)
    ids = sorted(va)
    assert cosine_rows(np.stack([va[i] for i in ids]), np.stack([vb[i] for i in ids])).min() >= min_cosine


def cut_or_whole(stored: list[str], expected: list[str]) -> bool:
    """Stored text is what was embedded: the whole text, or its start where the model's limit cut it."""
    return len(stored) == len(expected) and all(
        e.startswith(s) and s for s, e in zip(stored, expected, strict=True)
    )


def embed_args(path: Path, out: Path, *extra: str, devices: str | None = None) -> list[str]:
    """`embed-hf` over the JSONL corpus at `path` (ids in its `id` field) into `out`, quietly."""
    args = ["embed-hf", "--dataset", str(path), "--id-field", "id", "--output-root", str(out)]
    if devices is not None:
        args += ["--devices", devices, "--rows-per-shard", "16"]
    return [*args, "--no-progress", *extra]


def write_corpus(folder: Path, texts: list[str], count: int) -> tuple[Path, list[dict]]:
    """`count` rows `{"id": "doc-N", "text": ...}` of real text as `folder/corpus.jsonl`."""
    rows = [{"id": f"doc-{i}", "text": t} for i, t in enumerate(texts[:count])]
    return write_jsonl(folder / "corpus.jsonl", rows), rows
