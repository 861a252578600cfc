"""The bench's standalone cases run end to end and print the figures they promise (speed is never
asserted: the figures are measured, not tested)."""

from __future__ import annotations

import json
import re
import subprocess
import sys

import pytest

from chatspace.hardware.cpu import cpu_features
from tests.helpers import REPO


@pytest.mark.slow
def test_feeder_case_runs_the_pipeline_with_a_no_op_forward(tmp_path):
    out = tmp_path / "feeder.json"
    proc = subprocess.run(
        [
            sys.executable,
            "benchmarks/bench.py",
            "--case",
            "feeder",
            "--quick",
            "--rows",
            "300",
            "--out",
            str(out),
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    for label in ("feeder", "tokenizer"):
        assert re.search(rf"^{label}: [\d,]+ tok/s$", proc.stdout, re.M), proc.stdout
    assert re.search(r"^ratio: [\d.]+x", proc.stdout, re.M)
    # The CPU's features beside the figures.
    assert f"({', '.join(cpu_features().notable)})" in proc.stdout.splitlines()[0]
    results = json.loads(out.read_text())
    for run in results["runs"]:
        # The pipeline (with its texts cut before tokenizing) and the plain tokenizer count the same tokens.
        assert run["feeder"]["tokens"] == run["tokenizer"]["tokens"] > 0
        assert run["feeder"]["rows"] == 300
