"""Nothing lost, nothing mixed: --overwrite killed mid-way, --resume onto a changed dataset, stale or
hand-written unit records, an unreadable manifest, a supervisor killed outright, and runs that embed
nothing. Real processes, real signals, real files."""

from __future__ import annotations

import os
import shutil
import signal
from pathlib import Path

import orjson
import pandas as pd
import pytest

import chatspace
from chatspace.errors import ChatspaceError
from chatspace.store.reader import list_runs
from tests.helpers import embed_args, run_cli, run_manifest, run_table, write_corpus, write_jsonl
from tests.helpers.faults import assert_all_gone, shard_state, start_cli, wait_for_units, worker_processes

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def corpus(tmp_path_factory, texts):
    return write_corpus(tmp_path_factory.mktemp("integrity"), texts, 240)


@pytest.fixture(scope="module")
def stopped_run(tmp_path_factory, corpus) -> tuple[Path, Path, bytes, int]:
    """The corpus's first 100 rows as their own dataset, and a run over it stopped by SIGTERM once 2 of
    its 7 units are recorded, made once: (dataset, output root, the dataset's bytes, its mtime_ns).
    Each test that resumes or replaces an interrupted run takes its own copy (`interrupted_docs`)."""
    _, rows = corpus
    base = tmp_path_factory.mktemp("stopped")
    dataset, out = write_jsonl(base / "docs.jsonl", rows[:100]), base / "out"
    _interrupted_run(dataset, out)
    return dataset, out, dataset.read_bytes(), dataset.stat().st_mtime_ns


@pytest.fixture
def interrupted_docs(stopped_run, tmp_path) -> tuple[Path, list[str], Path]:
    """A copy of `stopped_run`'s output root in this test's folder: (output root, args, dataset).

    The run recorded its dataset's path, size, fingerprint and mtime, so the dataset stays at that path;
    a test may rewrite it, and it is put back (bytes and mtime) before the next test."""
    dataset, shared_out, content, mtime_ns = stopped_run
    dataset.write_bytes(content)
    os.utime(dataset, ns=(mtime_ns, mtime_ns))
    out = tmp_path / "out"
    shutil.copytree(shared_out, out)
    return out, _args(dataset, out), dataset


def _args(path, out, *extra):
    return embed_args(path, out, *extra, devices="cpu")


def _interrupted_run(path: Path, out: Path, units: int = 2, *extra: str) -> list[str]:
    """A run stopped by SIGTERM after `units` units; returns its args."""
    args = _args(path, out, *extra)
    proc = start_cli(args)
    wait_for_units(out, units, proc)
    proc.send_signal(signal.SIGTERM)
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 143, stderr
    return args


def _ids(out: Path) -> list[str]:
    return run_table(out).column("id").to_pylist()


def _units_dir(out: Path) -> Path:
    return next(out.glob("indexes/*/*/*/units"))


# --- point 1: --overwrite builds aside ----------------------------------------------------------------


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL])
def test_a_killed_overwrite_loses_nothing_and_a_rerun_finishes_it(corpus, tmp_path, sig):
    path, rows = corpus
    out = tmp_path / "out"
    old_args = _args(path, out, "--n", "32", "--seed", "1")  # any complete run
    assert run_cli(*old_args).returncode == 0
    old = shard_state(out)
    old_ids = sorted(_ids(out))

    new_args = _args(path, out, "--n", "96", "--seed", "7")
    proc = start_cli([*new_args, "--overwrite"])
    # The new run is being written (two of its units are done) ...
    wait_for_units(out, 2, proc, pattern=".staging/*/index/units/unit-*.json")
    # ... and every reader still sees the old run, whole.
    assert shard_state(out) == old
    assert sorted(chatspace.load_embeddings(out, columns=["id"]).column("id").to_pylist()) == old_ids
    assert sorted(pd.read_parquet(out / "embeddings")["id"]) == old_ids
    assert run_cli("verify", str(out)).returncode == 0
    workers = worker_processes(proc)
    proc.send_signal(sig)
    proc.communicate(timeout=60)
    assert_all_gone(workers)
    # The old run survived the kill, complete and verifiable.
    assert shard_state(out) == old
    assert run_manifest(out)["config"]["seed"] == 1
    assert run_cli("verify", str(out)).returncode == 0
    assert sorted(pd.read_parquet(out / "embeddings")["id"]) == old_ids
    # A plain rerun says what happened; --resume finishes the replacement and switches to it.
    again = run_cli(*new_args)
    assert again.returncode == 2 and "--overwrite of this output was interrupted" in again.stderr
    finished = run_cli(*new_args, "--resume")
    assert finished.returncode == 0, finished.stderr
    m = run_manifest(out)
    assert m["status"] == "complete" and m["config"]["seed"] == 7 and m["totals"]["rows"] == 96
    assert len(set(_ids(out))) == 96 and len(pd.read_parquet(out / "embeddings")) == 96
    assert run_cli("verify", str(out)).returncode == 0
    assert not (out / ".staging").exists()


# --- point 2: a dataset that changed --------------------------------------------------------------------


def test_resume_refuses_a_dataset_that_changed(corpus, interrupted_docs, texts):
    _, rows = corpus
    out, args, dataset = interrupted_docs
    before = shard_state(out)
    # 50 rows prepended: the same row indices now hold other rows.
    write_jsonl(
        dataset,
        [{"id": f"new-{i}", "text": t} for i, t in enumerate(texts[300:350])] + rows[:100],
    )
    proc = run_cli(*args, "--resume")
    assert proc.returncode == 2, proc.stderr
    lines = [line for line in proc.stderr.splitlines() if "error" in line]
    assert len(lines) == 1 and "the dataset changed since the run being resumed" in lines[0]
    assert "100 rows -> 150" in lines[0] and "--overwrite" in lines[0]
    assert "Traceback" not in proc.stderr
    assert shard_state(out) == before  # nothing touched
    m = run_manifest(out)
    identity = m["dataset"]["identity"]["files"][0]
    assert identity["rows"] == 100 and len(identity["fingerprint"]) == 64 and identity["bytes"] > 0


def test_resume_refuses_a_rewrite_of_the_same_size(corpus, interrupted_docs):
    _, rows = corpus
    out, args, dataset = interrupted_docs
    swapped = rows[:100]
    swapped[0], swapped[1] = swapped[1], swapped[0]  # same bytes, other order
    write_jsonl(dataset, swapped)
    proc = run_cli(*args, "--resume")
    assert proc.returncode == 2 and "docs.jsonl: content changed" in proc.stderr


# --- point 3: unit records are checked against the plan ---------------------------------------------------


def test_a_hand_written_unit_record_is_redone_not_trusted(corpus, interrupted_docs):
    _, rows = corpus
    out, args, _ = interrupted_docs
    done = {int(p.stem.split("-")[1]) for p in _units_dir(out).glob("unit-*.json")}
    missing = min(set(range(7)) - done)
    run_id = run_manifest(out)["run_id"]
    (_units_dir(out) / f"unit-{missing:05d}.json").write_bytes(
        orjson.dumps({"unit": missing, "shard": None, "rows": 0, "run_id": run_id})
    )
    (_units_dir(out) / "unit-00099.json").write_bytes(orjson.dumps({"unit": 99, "shard": None, "rows": 0}))
    proc = run_cli(*args, "--resume")
    assert proc.returncode == 0, proc.stderr
    assert f"unit {missing}: records None selected rows" in proc.stderr
    assert "unit 99: not a unit of this plan" in proc.stderr
    got = _ids(out)
    assert sorted(got) == sorted(r["id"] for r in rows[:100])  # exactly the planned rows
    assert run_manifest(out)["totals"]["rows"] == 100
    assert run_cli("verify", str(out)).returncode == 0


# --- point 4: an unreadable manifest ----------------------------------------------------------------------


def test_an_unreadable_manifest_resume_rebuilds_from_unit_records(corpus, interrupted_docs):
    _, rows = corpus
    out, args, _ = interrupted_docs
    listed = {Path(s["path"]).name for s in run_manifest(out)["shards"]}
    kept = {k: v for k, v in shard_state(out).items() if k in listed}
    manifest = next(out.glob("indexes/*/*/*/manifest.json"))
    manifest.write_bytes(b'{"format": "chatspace.manifest/1", "status": "runn')  # torn
    plain = run_cli(*args)
    assert plain.returncode == 2 and "--resume rebuilds the run from its" in plain.stderr
    proc = run_cli(*args, "--resume")
    assert proc.returncode == 0, proc.stderr
    after = shard_state(out)
    assert {k: after[k] for k in kept} == kept  # the finished units were not redone
    assert sorted(_ids(out)) == sorted(r["id"] for r in rows[:100])
    assert run_cli("verify", str(out)).returncode == 0


def test_an_unreadable_manifest_does_not_block_overwrite(corpus, interrupted_docs):
    _, rows = corpus
    out, args, _ = interrupted_docs
    next(out.glob("indexes/*/*/*/manifest.json")).write_text("not json at all")
    proc = run_cli(*args, "--overwrite")
    assert proc.returncode == 0, proc.stderr
    assert sorted(_ids(out)) == sorted(r["id"] for r in rows[:100])
    assert run_cli("verify", str(out)).returncode == 0


# --- point 11: a supervisor killed outright ------------------------------------------------------------


def test_a_supervisor_killed_outright_is_reported_interrupted_with_what_is_on_disk(corpus, tmp_path):
    _, rows = corpus
    rows = rows[:160]  # 10 units: two workers hold 2 each from their start, so 2 recorded is mid-run
    path, out = write_jsonl(tmp_path / "docs.jsonl", rows), tmp_path / "out"
    args = _args(path, out, "--devices", "cpu,cpu")
    proc = start_cli(args)
    wait_for_units(out, 2, proc)
    workers = worker_processes(proc)
    proc.kill()
    proc.communicate(timeout=30)
    assert_all_gone(workers)
    assert run_manifest(out)["status"] == "running"  # what the killed supervisor left
    on_disk = [orjson.loads(p.read_bytes()) for p in _units_dir(out).glob("unit-*.json")]
    (run,) = list_runs(out)
    assert run["status"] == "interrupted"
    assert run["units_done"] == len(on_disk) >= 2 and run["rows"] == sum(r["rows"] for r in on_disk)
    listing = run_cli("runs", str(out))
    assert f"interrupted ({len(on_disk)}/10 units)" in listing.stdout
    table = chatspace.load_embeddings(out, include_incomplete=True, columns=["id"])
    assert table.num_rows == run["rows"]
    with pytest.raises(ChatspaceError, match="interrupted"):
        chatspace.load_embeddings(out)
    resumed = run_cli(*args, "--resume")
    assert resumed.returncode == 0, resumed.stderr
    assert sorted(_ids(out)) == sorted(r["id"] for r in rows)


# --- point 12: nothing embedded is not "complete" --------------------------------------------------------


def test_every_row_skipped_is_a_failure_naming_the_field_and_reasons(tmp_path):
    data = write_jsonl(
        tmp_path / "empty.jsonl", [{"id": f"r{i}", "text": None if i % 3 else ""} for i in range(30)]
    )
    proc = run_cli(*_args(data, tmp_path / "out"))
    assert proc.returncode == 1, proc.stderr
    lines = [line for line in proc.stderr.splitlines() if "error" in line]
    assert len(lines) == 1
    assert "all 30 selected rows were skipped (null: 20, empty: 10)" in lines[0]
    assert "--text-field 'text'" in lines[0] and "Traceback" not in proc.stderr
    assert run_manifest(tmp_path / "out")["status"] == "failed"


def test_an_empty_sample_is_a_warning_not_an_error(tmp_path, texts):
    data = write_jsonl(tmp_path / "few.jsonl", [{"id": f"r{i}", "text": t} for i, t in enumerate(texts[:5])])
    proc = run_cli(*_args(data, tmp_path / "out", "--p", "0.0001"))
    assert proc.returncode == 0, proc.stderr
    assert "the sample is empty" in proc.stderr
    assert run_manifest(tmp_path / "out")["totals"]["rows"] == 0
