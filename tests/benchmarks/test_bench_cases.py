"""The bench's standalone cases run end to end and print the figures they promise (speed is never
asserted: the figures are measured, not tested)."""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import pytest

from chatspace.hardware.cpu import cpu_features
from tests.helpers import REPO
from tests.helpers.background import BackgroundCommand, Maker, command_of


def feeder_case(folder: Path) -> BackgroundCommand:
    options = ["--case", "feeder", "--quick", "--rows", "300", "--threads", "1"]
    args = [sys.executable, "benchmarks/bench.py", *options, "--out", str(folder / "feeder.json")]
    return BackgroundCommand(args, folder, 600)


def backend_forward(folder: Path) -> BackgroundCommand:
    # small batches: what is checked is that every runtime runs them and agrees, not its speed
    options = ["--threads", "1", "--batches", "3", "--repeats", "1", "--batch-tokens", "300"]
    return BackgroundCommand([sys.executable, "benchmarks/backend_forward.py", *options], folder, 600)


#: The tests whose command a one-process run starts early, beside the other tests (tests/benchmarks/
#: conftest.py).
BESIDE_THE_RUN: dict[str, Maker] = {
    "test_feeder_case_runs_the_pipeline_with_a_no_op_forward": (feeder_case, ()),
    "test_backend_forward_times_every_runtime_on_the_same_batches": (
        backend_forward,
        ("onnxruntime", "openvino"),
    ),
}


@pytest.mark.slow
def test_feeder_case_runs_the_pipeline_with_a_no_op_forward(request):
    command = command_of(request, BESIDE_THE_RUN)
    out = command.folder / "feeder.json"
    proc = command.result()
    assert proc.returncode == 0, proc.stderr[-3000:]
    for label in ("feeder", "tokenizer"):
        assert re.search(rf"^{label}: [\d,]+ tok/s$", proc.stdout, re.M), proc.stdout
    assert re.search(r"^ratio: [\d.]+x", proc.stdout, re.M)
    # The CPU's features beside the figures.
    assert f"({', '.join(cpu_features().notable)})" in proc.stdout.splitlines()[0]
    results = json.loads(out.read_text())
    assert [run["threads"] for run in results["runs"]] == [1]  # --threads 1: the goals' thread count
    for run in results["runs"]:
        # The pipeline (with its texts cut before tokenizing) and the plain tokenizer count the same tokens.
        assert run["feeder"]["tokens"] == run["tokenizer"]["tokens"] > 0
        assert run["feeder"]["rows"] == 300
        # The pipeline's own time per row outside the tokenizer, per run and per thread count.
        assert run["host_us_per_row"] == pytest.approx(
            (run["feeder"]["seconds"] - run["tokenizer"]["seconds"]) / 300 * 1e6
        )
    assert {"1"} <= set(results["best"]) and all("host_us_per_row" in b for b in results["best"].values())
    assert re.search(r"^host work: -?[\d.]+ us per row outside the tokenizer", proc.stdout, re.M)


def test_backends_verdict_takes_only_backends_that_keep_the_vectors(monkeypatch):
    monkeypatch.syspath_prepend(str(REPO / "benchmarks"))
    from cases.backends import verdict

    def case(wall, cos):
        return {"wall_s": wall, "cosine_to_plain_f32": {"min": cos}}

    cases = {"torch-f32": case(20.0, 1.0), "onnx-f32": case(19.0, 1.0), "onnx-int8": case(10.0, 0.98)}
    cases["openvino-bf16"] = case(12.0, 0.99996)
    base = cases["torch-f32"]
    assert verdict("float32", cases, base, ("onnx-f32",)).startswith("[NOT MET] float32 (onnx-f32)")
    line = verdict("any", cases, base, ("onnx-f32", "onnx-int8", "openvino-bf16"))
    # int8 is faster, but its vectors are other vectors
    assert line.startswith("[met] any (openvino-bf16)") and "1.67x" in line
    assert verdict("int8", cases, base, ("onnx-int8",)).startswith("[NOT MET] int8: none keeps")


@pytest.mark.slow
def test_backend_forward_times_every_runtime_on_the_same_batches(request):
    pytest.importorskip("onnxruntime")
    pytest.importorskip("openvino")
    proc = command_of(request, BESIDE_THE_RUN).result()
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = dict(re.findall(r"^(\S.*?)\s+[\d,]+ tok/s\s+worst token cosine ([\d.]+)$", proc.stdout, re.M))
    assert set(lines) == {
        "torch float32",
        "torch bfloat16",
        "onnxruntime float32 (fused)",
        "openvino float32",
        "openvino bfloat16",
    }, proc.stdout
    for name in ("onnxruntime float32 (fused)", "openvino float32"):
        assert float(lines[name]) >= 0.99999  # the same transformer: float rounding apart
