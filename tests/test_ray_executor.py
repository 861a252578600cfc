"""The same workers as Ray tasks on a local Ray cluster give the same output as local workers."""

from __future__ import annotations

import numpy as np
import pytest

from tests.conftest import cosine_rows, run_cli, run_table, write_jsonl

pytestmark = pytest.mark.slow
pytest.importorskip("ray", reason="Ray is an optional extra (pip install 'chatspace[ray]')")


def test_ray_workers_match_local_workers(texts, tmp_path):
    data = write_jsonl(tmp_path / "d.jsonl", [{"id": f"d{i}", "text": t} for i, t in enumerate(texts[:200])])
    common = [
        "--dataset",
        str(data),
        "--id-field",
        "id",
        "--n",
        "90",
        "--rows-per-shard",
        "30",
        "--no-progress",
    ]
    local = run_cli("embed-hf", *common, "--devices", "cpu", "--output-root", str(tmp_path / "local"))
    assert local.returncode == 0, local.stderr
    ray = run_cli(
        "embed-hf",
        *common,
        "--executor",
        "ray",
        "--ray-workers",
        "2",
        "--ray-device",
        "cpu",
        "--threads-per-worker",
        "1",
        "--output-root",
        str(tmp_path / "ray"),
        timeout=300,
    )
    assert ray.returncode == 0, ray.stderr
    a, b = run_table(tmp_path / "local").sort_by("id"), run_table(tmp_path / "ray").sort_by("id")
    assert a.column("id").to_pylist() == b.column("id").to_pylist()
    ea = np.asarray(a.column("embedding").to_pylist())
    eb = np.asarray(b.column("embedding").to_pylist())
    assert cosine_rows(ea, eb).min() >= 0.9999
    assert run_cli("verify", str(tmp_path / "ray")).returncode == 0


def test_ray_needs_a_worker_count(tmp_path):
    proc = run_cli("embed-hf", "--dataset", "x.jsonl", "--executor", "ray", "--output-root", str(tmp_path))
    assert proc.returncode == 2 and "--ray-workers" in proc.stderr
