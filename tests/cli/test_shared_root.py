"""One output root shared by several runs, one of which failed, used the way a person would: the whole
CLI in a subprocess, on real files. A failed run blocks no reader, `verify` fails only for damage, runs
can be removed, `--resume` of a complete run changes nothing, and every row says which run it is from."""

from __future__ import annotations

import fcntl
import os
import re
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import orjson
import pytest

from tests.helpers import REPO, real_texts, run_cli, write_jsonl
from tests.helpers.faults import run_cli_alongside, wait_for_units, workers_here

pytestmark = pytest.mark.slow

DEMO = REPO / "chatspace" / "resources" / "demo.jsonl"
MODEL_DIR = "sentence-transformers__all-MiniLM-L6-v2"


def _embed(out: Path, dataset: Path, *extra: str, env: dict | None = None):
    args = ["embed-hf", "--dataset", str(dataset), "--devices", "cpu", "--output-root", str(out)]
    return run_cli(*args, "--no-progress", *extra, env=env)


def _demo_args(*extra: str) -> tuple[str, ...]:
    # The first rows (demo-0001 is one of them): more than the 15 a map samples from each run.
    return ("--max-rows", "20", "--id-field", "id", *extra)


@pytest.fixture(scope="module")
def shared(tmp_path_factory) -> Path:
    """A root with two complete runs of the demo dataset (its text; its first user turns) and a run of
    another dataset that failed after its first units (its worker killed, no restarts left)."""
    base = tmp_path_factory.mktemp("shared")
    out = base / "out"
    assert _embed(out, DEMO, *_demo_args()).returncode == 0
    proc = _embed(out, DEMO, *_demo_args("--text-field", "conversation", "--extract", "first-user"))
    assert proc.returncode == 0, proc.stderr
    rows = [{"id": f"doc-{i}", "text": t} for i, t in enumerate(real_texts(120))]
    docs = write_jsonl(base / "docs.jsonl", rows)

    def kill_the_worker(run) -> None:  # once its first unit is written: 11 of 12 are still to do
        wait_for_units(out, 1, run, pattern="indexes/*/docs/*/units/unit-*.json")
        (worker,) = workers_here()
        worker.send_signal(signal.SIGKILL)

    args = ["embed-hf", "--dataset", str(docs), "--devices", "cpu", "--output-root", str(out)]
    args += ["--no-progress", "--id-field", "id", "--rows-per-shard", "10", "--max-worker-restarts", "0"]
    proc, _ = run_cli_alongside(args, kill_the_worker)
    assert proc.returncode == 1 and "was killed by SIGKILL" in proc.stderr, proc.stderr
    return out


def _copy(shared: Path, tmp_path: Path) -> Path:
    copy = tmp_path / "out"
    shutil.copytree(shared, copy)
    return copy


def _manifest_path(out: Path, dataset: str, folder: str) -> Path:
    return out / "indexes" / MODEL_DIR / dataset / folder / "manifest.json"


def test_the_root_lists_every_run_with_its_status(shared):
    proc = run_cli("runs", str(shared), check=True)
    lines = proc.stdout.splitlines()
    assert len(lines) == 4  # a header, three runs
    assert any("docs" in line and "failed (" in line for line in lines)
    assert sum("complete" in line for line in lines) == 2


def test_readers_take_the_complete_runs_and_say_which_they_left_out(shared):
    proc = run_cli(
        "sql", str(shared), "select run_name, count(*) as n from embeddings group by all order by 1"
    )
    assert proc.returncode == 0, proc.stderr
    assert "train__conversation__first-user" in proc.stdout and "│ train " in proc.stdout
    left_out = [line for line in proc.stderr.splitlines() if line.startswith("left out")]
    assert (
        len(left_out) == 1 and "docs/train (failed" in left_out[0] and "--include-incomplete" in left_out[0]
    )
    # the failed run's finished shards are there to read when asked for
    finished = orjson.loads(_manifest_path(shared, "docs", "train").read_bytes())["totals"]["rows"]
    assert finished > 0
    proc = run_cli(
        "sql", str(shared), "select count(*) from embeddings", "--dataset", "docs", "--include-incomplete"
    )
    assert proc.returncode == 0 and f" {finished} " in proc.stdout
    # one dataset with nothing complete: one line naming the flag of the command line
    proc = run_cli("sql", str(shared), "select 1", "--dataset", "docs")
    assert proc.returncode == 1 and "no complete run matches" in proc.stderr
    assert "--include-incomplete" in proc.stderr and "include_incomplete=True" not in proc.stderr


def test_verify_fails_only_for_damage_and_names_the_unfinished_run(shared, tmp_path):
    proc = run_cli("verify", str(shared))
    assert proc.returncode == 0, proc.stderr
    assert "ok: 3 run(s) verified (1 not complete)" in proc.stdout
    assert "docs/train: failed (" in proc.stderr and "/12 units" in proc.stderr
    out = _copy(shared, tmp_path)
    next(out.glob(f"embeddings/{MODEL_DIR}/demo/train/shard-*.parquet")).unlink()
    proc = run_cli("verify", str(out))
    assert proc.returncode == 1 and "missing" in proc.stderr


def test_resume_of_a_complete_run_changes_nothing(shared):
    manifest = _manifest_path(shared, "demo", "train")
    before = manifest.read_bytes()
    # the short name is the model SentenceTransformer("all-MiniLM-L6-v2") loads: the same run
    proc = _embed(shared, DEMO, *_demo_args("--resume", "--model", "all-MiniLM-L6-v2"))
    assert proc.returncode == 0, proc.stderr
    assert "already complete, nothing to do" in proc.stderr
    assert manifest.read_bytes() == before


def test_a_resumed_run_keeps_what_its_earlier_attempts_recorded(shared, tmp_path):
    out = _copy(shared, tmp_path)
    path = _manifest_path(out, "demo", "train")
    first = orjson.loads(path.read_bytes())
    path.write_bytes(orjson.dumps({**first, "status": "interrupted"}))  # killed before its last write
    proc = _embed(out, DEMO, *_demo_args("--resume"))
    assert proc.returncode == 0, proc.stderr
    m = orjson.loads(path.read_bytes())
    assert m["status"] == "complete" and m["created_at"] == first["created_at"]
    assert m["model"] == first["model"] and m["model"]["dimension"] == 384  # not only the name
    assert [a["status"] for a in m["attempts"]] == ["interrupted"]
    assert m["attempts"][0]["workers"] == first["workers"] and m["attempts"][0]["timings"] == first["timings"]
    assert "384" in run_cli("runs", str(out), check=True).stdout


def test_runs_rm_and_prune(shared, tmp_path):
    out = _copy(shared, tmp_path)
    runs = [
        orjson.loads(line) for line in run_cli("runs", str(out), "--json", check=True).stdout.splitlines()
    ]
    first_user = next(r for r in runs if r["extract"] == "first-user")
    # refused while a live run holds the run's lock
    lock = out / "indexes" / f".{MODEL_DIR}--demo--train__conversation__first-user.lock"
    with open(lock, "a") as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        proc = run_cli("runs", "rm", str(out), first_user["run_id"])
        assert proc.returncode == 2 and "being written by a running chatspace run" in proc.stderr
    assert _manifest_path(out, "demo", "train__conversation__first-user").exists()
    proc = run_cli("runs", "rm", str(out), first_user["run_id"])
    assert proc.returncode == 0, proc.stderr
    assert "removed" in proc.stdout and "first-user" in proc.stdout
    assert not (out / "embeddings" / MODEL_DIR / "demo" / "train__conversation__first-user").exists()
    assert not _manifest_path(out, "demo", "train__conversation__first-user").parent.exists()
    proc = run_cli("runs", "rm", str(out), "no-such-run")
    assert proc.returncode == 2 and "no run called 'no-such-run'" in proc.stderr
    proc = run_cli("runs", "prune", str(out), "--failed")
    assert proc.returncode == 0 and "docs/train (failed" in proc.stdout
    assert not (out / "embeddings" / MODEL_DIR / "docs").exists()
    proc = run_cli("sql", str(out), "select count(*) from embeddings")
    assert proc.returncode == 0 and "left out" not in proc.stderr
    assert run_cli("verify", str(out)).stdout.strip() == "ok: 1 run(s) verified"


def test_runs_of_a_file_is_one_line(shared, tmp_path):
    (tmp_path / "notes.txt").write_text("not a root")
    proc = run_cli("runs", str(tmp_path / "notes.txt"))
    assert proc.returncode == 2 and "is a file, not an output root" in proc.stderr


# --- the README's recipes, verbatim, on this root -------------------------------------------------------


def _readme_blocks(start: str, end: str) -> list[tuple[str, str]]:
    """(language, code) of each fenced block of README.md between two headings/lines."""
    text = (REPO / "README.md").read_text()
    section = text[text.index(start) : text.index(end, text.index(start))]
    return re.findall(r"```(\w*)\n(.*?)```", section, flags=re.S)


@pytest.fixture
def demo_output(shared, tmp_path) -> Path:
    """A folder where `demo-output` is the shared root and `chatspace` is this checkout's CLI."""
    (tmp_path / "demo-output").symlink_to(shared)
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    shim = bin_dir / "chatspace"
    shim.write_text(f'#!/bin/sh\nexec {sys.executable} -m chatspace.cli "$@"\n')
    shim.chmod(0o755)
    return tmp_path


def _run_block(language: str, code: str, where: Path) -> subprocess.CompletedProcess:
    env = {
        **os.environ,
        "PYTHONPATH": str(REPO),
        "HF_HUB_OFFLINE": "1",
        "PATH": f"{where / 'bin'}{os.pathsep}{os.environ['PATH']}",
    }
    command = [sys.executable, "-c", code] if language == "python" else ["bash", "-c", code]
    return subprocess.run(command, cwd=where, env=env, capture_output=True, text=True, timeout=300)


def test_the_readme_recipes_work_verbatim_on_a_root_with_several_runs(demo_output):
    blocks = _readme_blocks("## Reading results", "## Looking at a run")
    assert len(blocks) >= 7
    ran = []
    for language, code in blocks:
        proc = _run_block(language, code, demo_output)
        assert proc.returncode == 0, f"{code}\n{proc.stderr}"
        assert "Traceback" not in proc.stderr
        ran.append((code, proc))
    nearest = [proc for code, proc in ran if "demo-0001" in code]
    assert len(nearest) == 5 and all("demo-0001" in p.stdout for p in nearest)  # the id is its own nearest


def test_the_readme_recipes_say_when_an_id_is_missing_or_not_one_row(demo_output):
    blocks = [
        b for b in _readme_blocks("### Nearest neighbours", "## Looking at a run") if "demo-0001" in b[1]
    ]
    for language, code in blocks:
        proc = _run_block(language, code.replace("demo-0001", "demo-9999"), demo_output)
        assert proc.returncode != 0 and "demo-9999" in proc.stderr or "ValueError" in proc.stderr, proc.stderr
    sql = next(code for language, code in blocks if language == "")
    proc = _run_block("", sql.replace("--run-name train ", ""), demo_output)  # two runs hold the id
    assert proc.returncode == 2 and "id demo-0001 is in 2 rows" in proc.stderr and "--run-name" in proc.stderr


def test_maps_of_the_root_group_by_run_and_say_progress_in_plain_lines(shared, tmp_path):
    import pyarrow.parquet as pq

    coords = tmp_path / "coords.parquet"
    proc = run_cli(
        "reduce-embeddings", "--embedding-dirs", str(shared), "--method", "umap", "--max-samples", "15",
        "--output", str(coords),
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert "\r" not in proc.stderr and "epochs" not in proc.stderr and "progress: reading" in proc.stderr
    assert "left out 1 run" in proc.stderr  # the failed run, in one line
    groups = pq.read_table(coords).column("group").to_pylist()
    counts = {g: groups.count(g) for g in set(groups)}
    assert len(counts) == 2 and set(counts.values()) == {15}  # --max-samples counts per run
    assert all(g.endswith((" · train", " · train__conversation__first-user")) for g in counts)
    page = tmp_path / "map.html"
    assert run_cli("visualize-embeddings", "--input", str(coords), "--output", str(page)).returncode == 0
    assert "train__conversation__first-user" in page.read_text()  # its own legend entry
    proc = run_cli("visualize-embeddings", "--input", str(tmp_path), "--output", str(page))
    assert proc.returncode == 2 and "is a folder" in proc.stderr and "coords.parquet" in proc.stderr
