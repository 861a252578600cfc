"""`bench.py --case scale` runs each measurement in its own process and writes the keys it promises,
each with seconds, peak memory and the counts it used (speed is measured, never asserted). The test asks
for 3,000,000 rows and 2,000 units (`--rows`, `--units`): the same code paths as the billion rows and
100,000 units the bench measures, in seconds instead of minutes."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from tests.helpers.background import BackgroundCommand, Maker, command_of

KEYS = ["select_all_1e9", "select_p_1e9", "select_n_1e7_of_1e9", "select_n_5e8_of_1e9", "plan_1e5_units"]
UNIT_KEYS = [
    "scheduler_512_workers_1e5_units",
    "scheduler_512_workers_1e5_units_no_checkpoint",
    "manifest_write_1e5_shards",
    "resume_scan_1e5_records",
    "resume_scan_1e4_records_s3",
]


ROWS, UNITS = 3_000_000, 2_000


def scale_case(folder: Path) -> BackgroundCommand:
    options = ["--case", "scale", "--rows", str(ROWS), "--units", str(UNITS)]
    args = [sys.executable, "benchmarks/bench.py", *options, "--out", str(folder / "scale.json")]
    return BackgroundCommand(args, folder, 900)


#: The test whose command a one-process run starts early (tests/benchmarks/conftest.py).
BESIDE_THE_RUN: dict[str, Maker] = {"test_scale_case_writes_every_measurement": (scale_case, ())}


@pytest.mark.slow
def test_scale_case_writes_every_measurement(request):
    command = command_of(request, BESIDE_THE_RUN)
    out, rows, units = command.folder / "scale.json", ROWS, UNITS
    proc = command.result()
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
    for key in UNIT_KEYS:
        entry = results[key]
        assert entry["seconds"] > 0 and entry["peak_rss_mb"] >= entry["baseline_rss_mb"] > 0, key
        assert "meets_goals" in entry, key
    for key in UNIT_KEYS[:2]:
        assert results[key]["units"] == units and results[key]["workers"] == 512, key
        assert results[key]["lost_workers"] == 2 and results[key]["units_redone"] > 0, key
    assert results["scheduler_512_workers_1e5_units"]["manifest_writes"] >= 1
    assert results["scheduler_512_workers_1e5_units_no_checkpoint"]["manifest_writes"] == 0
    assert results["manifest_write_1e5_shards"]["shards"] == units
    assert results["manifest_write_1e5_shards"]["bytes"] > 0
    assert results["resume_scan_1e5_records"]["records"] == units
    assert results["resume_scan_1e4_records_s3"]["records"] == units // 10
