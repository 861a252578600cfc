"""Full, read-only and misshapen output roots, on real mounts: one clear line, an honest manifest, no
temporary or orphan files left behind.

The mounts need root (CI runs as root); elsewhere these tests skip and say why."""

from __future__ import annotations

import contextlib
import os
import subprocess
from pathlib import Path

import orjson
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from chatspace.store.layout import RunLayout
from tests.helpers import run_cli, run_embed_dataset, write_jsonl
from tests.helpers.openai_fake_server import FakeEmbeddingServer

DIM = 1536  # 6 kB a row: a few dozen rows fill a small disk


@contextlib.contextmanager
def _mount(target: Path, options: str):
    target.mkdir(parents=True, exist_ok=True)
    proc = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(target)], capture_output=True, text=True
    )
    if proc.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here (needs root): {proc.stderr.strip()}")
    try:
        yield target
    finally:
        subprocess.run(["umount", "-l", str(target)], capture_output=True, check=False)


def _fill(directory: Path, leave: int = 0) -> Path:
    """Fill the file system of `directory`, then give back `leave` bytes."""
    filler = directory / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT)
    try:
        while True:
            os.write(fd, b"\0" * 65536)
    except OSError:
        pass
    finally:
        os.close(fd)
    with contextlib.suppress(OSError):
        os.truncate(filler, max(0, filler.stat().st_size - leave))
    return filler


def _stray_files(root: Path) -> list[str]:
    """Temporaries (`.x.tmp-PID`) and shards without a completion record."""
    out = [p.name for p in root.rglob("*") if ".tmp" in p.name]
    for shard in root.glob("embeddings/*/*/*/shard-*.parquet"):
        unit = shard.stem.split("-")[1]
        rel = shard.parent.relative_to(root / "embeddings")
        if not (root / "indexes" / rel / "units" / f"unit-{unit}.json").exists():
            out.append(f"orphan {shard.name}")
    return out


def _last_line(proc) -> str:
    assert "Traceback" not in proc.stderr, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert lines and lines[-1].startswith("chatspace: error:"), proc.stderr
    return lines[-1]


@pytest.fixture(scope="module")
def server():
    with FakeEmbeddingServer(dimension=DIM) as srv:
        yield srv


def _embed(server, dataset: Path, out: Path, *extra: str):
    return run_embed_dataset(server, dataset, out, "--model", "m", *extra, key="sk-test-disk-0123456789")


# --- a full disk --------------------------------------------------------------------------------------


def test_manifest_on_a_full_disk_is_rewritten_in_place_or_one_error(tmp_path):
    from chatspace.store.manifest import ManifestBuilder, ManifestWriteError

    with _mount(tmp_path / "mnt", "size=256k") as mnt:
        layout = RunLayout.for_run(mnt / "out", "m", "d", None, "train")
        base = {"run_id": "r1", "plan": {"units": 2}, "sampling": {"selected_rows": 10}, "pad": "x" * 3000}
        builder = ManifestBuilder(layout, base)
        builder.write({}, "running")
        _fill(mnt)
        # A status change must not be lost for want of room for a second copy.
        builder.write({}, "failed", {"message": "worker 0 failed"})
        manifest = orjson.loads(layout.manifest_path.read_bytes())
        assert manifest["status"] == "failed" and manifest["error"]["message"] == "worker 0 failed"
        # A manifest that no longer fits in its old place is one clear error, and the old one stays.
        builder.base["pad"] = "x" * 20000
        with pytest.raises(ManifestWriteError, match="No space left on device"):
            builder.write({}, "failed")
        assert orjson.loads(layout.manifest_path.read_bytes())["status"] == "failed"
        assert _stray_files(mnt / "out") == []


@pytest.mark.slow
def test_no_room_for_the_first_manifest_is_one_line(server, tmp_path):
    # Hundreds of input files make a manifest of tens of kB; the disk keeps 16 kB.
    data = tmp_path / "many"
    data.mkdir()
    for i in range(300):
        pq.write_table(pa.table({"text": [f"row {i}"]}), data / f"part-{i:04d}.parquet")
    with _mount(tmp_path / "mnt", "size=512k") as mnt:
        _fill(mnt, leave=16384)
        proc = _embed(server, data, mnt / "out", "--dimensions", "8", "--execute")
        assert proc.returncode == 1, proc.stderr
        last = _last_line(proc)
        assert "cannot write the run's manifest" in last and "No space left on device" in last
        assert "--resume" in last
        assert _stray_files(mnt / "out") == []
        assert server.requests == []  # stopped before any work


@pytest.mark.slow
def test_a_disk_filling_up_mid_run_ends_in_one_line_and_resume_finishes(server, tmp_path):
    data = write_jsonl(tmp_path / "d.jsonl", [{"text": f"row number {i}"} for i in range(240)])
    with _mount(tmp_path / "mnt", "size=640k") as mnt:
        out = mnt / "out"
        args = ("--execute", "--rows-per-shard", "20", "--concurrency", "1")
        proc = _embed(server, data, out, *args)
        assert proc.returncode == 1, proc.stderr
        last = _last_line(proc)
        assert "No space left on device" in last and "--resume" in last, last
        manifest_path = next(out.glob("indexes/*/*/*/manifest.json"))
        manifest = orjson.loads(manifest_path.read_bytes())
        assert manifest["status"] == "failed", manifest["status"]  # not left "running"
        assert 0 < manifest["totals"]["rows"] < 240
        assert _stray_files(out) == []
        # A killed writer's leftovers; --resume clears them and finishes once there is room.
        index_dir = manifest_path.parent
        for stale in (
            index_dir / ".manifest.json.tmp-999999",
            index_dir / "units" / ".unit-00011.json.tmp-9",
        ):
            stale.write_bytes(b"")
        subprocess.run(["mount", "-o", "remount,size=8m", str(mnt)], check=True)
        resumed = _embed(server, data, out, *args, "--resume")
        assert resumed.returncode == 0, resumed.stderr
        assert orjson.loads(manifest_path.read_bytes())["totals"]["rows"] == 240
        assert _stray_files(out) == []
        assert run_cli("verify", str(out)).returncode == 0


# --- a read-only root; files where folders belong --------------------------------------------------


@pytest.mark.parametrize("command", ["embed-dataset", "embed-hf"])
def test_a_read_only_root_is_one_line_even_for_a_dry_run(tmp_path, command):
    data = write_jsonl(tmp_path / "d.jsonl", [{"text": "hello"}])
    with _mount(tmp_path / "ro", "ro,size=64k") as ro:
        for root in (ro, ro / "out"):
            proc = run_cli(command, "--dataset", str(data), "--output-root", str(root), "--no-progress")
            assert proc.returncode == 2, proc.stderr
            last = _last_line(proc)
            assert "not writable" in last and "Read-only file system" in last


@pytest.mark.parametrize("folder", ["indexes", "embeddings", "logs", "datasets"])
def test_a_file_where_a_root_folder_belongs_is_one_line(tmp_path, folder):
    data = write_jsonl(tmp_path / "d.jsonl", [{"text": "hello"}])
    out = tmp_path / "out"
    out.mkdir()
    (out / folder).write_text("not a folder")
    for command in ("embed-dataset", "embed-hf"):
        proc = run_cli(command, "--dataset", str(data), "--output-root", str(out), "--no-progress")
        assert proc.returncode == 2, proc.stderr
        assert f"a file named '{folder}'" in _last_line(proc)


@pytest.mark.slow
def test_a_shard_whose_completion_record_cannot_be_written_is_removed(server, tmp_path):
    data = write_jsonl(tmp_path / "d.jsonl", [{"text": f"row {i}"} for i in range(10)])
    out = tmp_path / "out"
    units = out / "indexes" / "m" / "d" / "train" / "units"
    units.parent.mkdir(parents=True)
    units.write_text("a file where the completion records belong")
    proc = _embed(server, data, out, "--dimensions", "8", "--execute")
    assert proc.returncode == 1, proc.stderr
    last = _last_line(proc)
    assert "failed while writing a shard" in last and "units" in last
    assert list(out.glob("embeddings/**/*.parquet")) == []  # no shard without its record
    assert _stray_files(out) == []
