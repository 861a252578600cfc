"""`bench.py --case scale` runs each measurement in its own process and writes the keys it promises,
each with seconds, peak memory and the counts it used (speed is measured, never asserted)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.helpers import REPO

KEYS = ["select_all_1e9", "select_p_1e9", "select_n_1e7_of_1e9", "select_n_5e8_of_1e9", "plan_1e5_units"]


@pytest.mark.slow
def test_scale_case_writes_every_measurement(tmp_path):
    out, rows = tmp_path / "scale.json", 3_000_000
    proc = subprocess.run(
        [sys.executable, "benchmarks/bench.py", "--case", "scale", "--rows", str(rows), "--out", str(out)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert proc.returncode == 0, proc.stderr
    results = json.loads(out.read_text())
    assert {"cpu", "cpu_flags", "cores"} <= set(results["env"])
    for key in KEYS:
        entry = results[key]
        assert entry["seconds"] > 0 and entry["peak_rss_mb"] >= entry["baseline_rss_mb"] > 0, key
        assert entry["rows"] == rows and "meets_goals" in entry, key
    assert results["select_all_1e9"]["selected"] == rows
    assert results["select_all_1e9"]["row_checksum"] == rows * (rows - 1) // 2
    assert results["select_all_1e9"]["units"] == rows // 10_000
    assert results["select_n_1e7_of_1e9"]["selected"] == rows // 100
    assert results["select_n_5e8_of_1e9"]["selected"] == rows // 2
    assert results["select_n_5e8_of_1e9"]["sampler"] == 2
    assert 0.009 < results["select_p_1e9"]["selected"] / rows < 0.011
    assert results["plan_1e5_units"]["units"] == rows // 2 // 5_000
