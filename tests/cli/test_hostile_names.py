"""Every name that becomes a path (run id, dataset, subset, split, model) lands inside the output root,
or is refused with one line on stderr: never a file outside it, never a traceback."""

from __future__ import annotations

import os
from pathlib import Path

import orjson
import pytest

from chatspace.store.layout import RunLayout
from tests.helpers import run_cli, run_embed_dataset, write_jsonl
from tests.helpers.openai_fake_server import FakeEmbeddingServer

HOSTILE = ["..", "../../escape", "/abs/escape", "a/b", "a\\b", ".", "~", "x/../../y", "", "-x", "x" * 400]


def _inside(path: Path, root: Path) -> bool:
    """Lexically inside `root` (no `..` left after normalising, and under it)."""
    norm = os.path.normpath(path)
    return norm.startswith(str(root) + os.sep) and ".." not in Path(norm).relative_to(root).parts


def _files_outside(base: Path, root: Path, allowed: set[Path]) -> list[Path]:
    return [p for p in base.rglob("*") if p.is_file() and root not in p.parents and p not in allowed]


def _one_line_error(proc) -> str:
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert "Traceback" not in proc.stderr, proc.stderr
    assert lines and lines[-1].startswith("chatspace: error:"), proc.stderr
    return lines[-1]


@pytest.mark.parametrize("field", ["model", "dataset", "subset", "split"])
@pytest.mark.parametrize("value", HOSTILE)
def test_layout_keeps_every_name_inside_the_root(tmp_path, field, value):
    names = {"model": "m", "dataset": "d", "subset": None, "split": "train", field: value}
    layout = RunLayout.for_run(tmp_path, names["model"], names["dataset"], names["subset"], names["split"])
    root = layout.root
    for path in (
        layout.embeddings_dir,
        layout.index_dir,
        layout.manifest_path,
        layout.shard_path(3),
        layout.unit_record_path(3),
    ):
        assert _inside(path, root), (field, value, path)
        # One component per name: embeddings|indexes / model / dataset / split.
        assert len(path.relative_to(root).parts) >= 4, path


@pytest.mark.parametrize("run_id", ["../../escape", "/abs/escape", "a/b", "", "..", "a..b", "-x", "x" * 129])
def test_unsafe_run_id_is_refused_with_one_line(tmp_path, run_id):
    data = write_jsonl(tmp_path / "d.jsonl", [{"text": "hello"}])
    out = tmp_path / "deep" / "er" / "out"
    proc = run_cli(
        "embed-hf", "--dataset", str(data), "--output-root", str(out), "--run-id", run_id, "--no-progress"
    )
    assert proc.returncode == 2, proc.stderr
    assert "--run-id" in _one_line_error(proc)
    assert _files_outside(tmp_path, out, {data}) == []
    assert not out.exists()  # refused before anything is written


@pytest.fixture(scope="module")
def server():
    with FakeEmbeddingServer(dimension=8) as srv:
        yield srv


def _embed(server, dataset: str, out: Path, *extra: str):
    args = ("--dimensions", "8", "--execute", *extra)
    return run_embed_dataset(server, dataset, out, *args, key="sk-test-names-0123456789")


@pytest.mark.slow
@pytest.mark.parametrize("value", ["..", "../../escape", "/abs/escape", "a/b"])
def test_a_real_run_with_hostile_names_stays_inside_the_root(server, tmp_path, value):
    # A folder of plain files names no splits, so any --split is its one split (a single file has one
    # split, `train`, and would refuse these).
    (tmp_path / "data").mkdir()
    data = write_jsonl(tmp_path / "data" / "d.jsonl", [{"text": f"row {i}"} for i in range(5)])
    out = tmp_path / "deep" / "er" / "out"
    proc = _embed(server, str(data.parent), out, "--model", value, "--subset", value, "--split", value)
    assert proc.returncode == 0, proc.stderr
    assert _files_outside(tmp_path, out, {data}) == []
    manifests = list(out.glob("indexes/*/*/*/manifest.json"))
    assert len(manifests) == 1, manifests
    manifest = orjson.loads(manifests[0].read_bytes())
    assert manifest["status"] == "complete" and manifest["totals"]["rows"] == 5
    assert manifest["shards"] and all(
        _inside(out.resolve() / shard["path"], out.resolve()) for shard in manifest["shards"]
    )


@pytest.mark.parametrize("option", ["--split", "--model"])
def test_an_empty_split_or_model_is_refused_with_one_line(tmp_path, option):
    data = write_jsonl(tmp_path / "d.jsonl", [{"text": "hello"}])
    out = tmp_path / "out"
    proc = run_cli("embed-hf", "--dataset", str(data), "--output-root", str(out), option, "", "--no-progress")
    assert proc.returncode == 2, proc.stderr
    assert option in _one_line_error(proc)
    assert not out.exists()


@pytest.mark.slow
def test_a_local_dataset_path_with_dotdot_lands_under_its_own_name(server, tmp_path):
    (tmp_path / "sub").mkdir()
    data = write_jsonl(tmp_path / "data.jsonl", [{"text": f"row {i}"} for i in range(5)])
    out = tmp_path / "out"
    proc = _embed(server, str(tmp_path / "sub" / ".." / "data.jsonl"), out, "--model", "m")
    assert proc.returncode == 0, proc.stderr
    assert [p.relative_to(out).as_posix() for p in out.glob("indexes/*/*/*/manifest.json")] == [
        "indexes/m/data/train/manifest.json"
    ]
    assert _files_outside(tmp_path, out, {data}) == []


@pytest.mark.parametrize("dataset", ["../../escape", "/abs/escape"])
def test_a_hub_dataset_id_that_is_a_path_is_one_line(tmp_path, dataset):
    out = tmp_path / "out"
    proc = run_cli(
        "embed-hf",
        "--dataset",
        dataset,
        "--source",
        "huggingface",
        "--output-root",
        str(out),
        "--no-progress",
    )
    assert proc.returncode != 0
    _one_line_error(proc)
    assert _files_outside(tmp_path, out, set()) == []


@pytest.mark.slow
def test_resume_refuses_a_manifest_whose_run_id_is_a_path(server, tmp_path):
    data = write_jsonl(tmp_path / "d.jsonl", [{"text": f"row {i}"} for i in range(5)])
    out = tmp_path / "deep" / "out"
    assert _embed(server, str(data), out, "--model", "m").returncode == 0
    manifest_path = next(out.glob("indexes/*/*/*/manifest.json"))
    manifest = orjson.loads(manifest_path.read_bytes())
    manifest.update(run_id="../../../escape", status="interrupted")
    manifest_path.write_bytes(orjson.dumps(manifest))
    proc = _embed(server, str(data), out, "--model", "m", "--resume")
    assert proc.returncode == 2, proc.stderr
    assert "run id" in _one_line_error(proc)
    assert _files_outside(tmp_path, out, {data}) == []


@pytest.mark.parametrize("listed", ["datasets/org/name@main/../../../../escape.jsonl", "/abs/escape.jsonl"])
def test_a_hub_file_name_cannot_leave_the_download_cache(tmp_path, listed):
    from chatspace.data.hub import download_hub_file
    from chatspace.errors import ChatspaceError

    with pytest.raises(ChatspaceError, match="leaves"):
        download_hub_file("hf://" + listed, tmp_path / "datasets")
    assert list(tmp_path.rglob("*")) == []


@pytest.mark.parametrize("value", ["..", "../../escape", "/abs/escape", "a/b"])
def test_download_dataset_with_hostile_names_stays_inside_the_root(tmp_path, value):
    data = write_jsonl(tmp_path / "d.jsonl", [{"text": "hello"}])
    out = tmp_path / "deep" / "er" / "out"
    proc = run_cli(
        "download-dataset",
        "--name",
        str(data),
        "--subset",
        value,
        "--split",
        value,
        "--output-root",
        str(out),
    )
    assert proc.returncode == 0, proc.stderr
    assert len(list(out.glob("datasets/raw/local/*/*/info.json"))) == 1
    assert _files_outside(tmp_path, out, {data}) == []
