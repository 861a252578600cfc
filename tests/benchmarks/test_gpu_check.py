"""`make gpu-check`: one line without CUDA or without torch; the CPU rehearsal runs every step and writes
the same files a GPU machine hands back; a hung step is killed with everything it started, recorded as
timed out, and the check still ends within its budget with every other step's figures."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import REPO
from tests.helpers.background import BackgroundCommand, Maker, command_of

STEPS = ["versions", "cli", "headline", "minilm-quality", "qwen3-ref", "oom", "qwen3-eager", "qwen3-compiled"]


def test_gpu_check_without_cuda_is_one_line_and_fails(tmp_path):
    env = {
        **os.environ,
        "PATH": "/usr/bin:/bin",
        "OUT": str(tmp_path / "out"),
    }  # no nvidia-smi on a CPU machine
    if os.path.exists("/dev/nvidiactl"):
        pytest.skip("this machine has an NVIDIA device")
    proc = subprocess.run(
        ["bash", "scripts/gpu-check.sh"], cwd=REPO, capture_output=True, text=True, timeout=120, env=env
    )
    assert proc.returncode == 1
    assert proc.stdout == "" and len(proc.stderr.strip().splitlines()) == 1
    assert "no CUDA device" in proc.stderr
    assert not (tmp_path / "out").exists()


def test_gpu_check_script_refuses_without_cuda_even_past_the_shell_guard(tmp_path):
    """benchmarks/gpu_check.py itself (a machine with the NVIDIA tools but no usable CUDA)."""
    import torch

    if torch.cuda.is_available():
        pytest.skip("CUDA is available here")
    proc = subprocess.run(
        [sys.executable, "benchmarks/gpu_check.py", "--out", str(tmp_path)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 1 and len(proc.stderr.strip().splitlines()) == 1
    assert "no CUDA device" in proc.stderr and not any(tmp_path.iterdir())


def test_a_python_without_torch_is_one_line_saying_so(tmp_path):
    """The GPU image's python3 without torch: said as such, not as "no CUDA device"."""
    shadow = tmp_path / "shadow"
    shadow.mkdir()
    (shadow / "torch.py").write_text("raise ImportError('no torch in this Python')\n")
    tools = tmp_path / "bin"
    tools.mkdir()
    (tools / "nvidia-smi").write_text("#!/bin/sh\nexit 0\n")
    (tools / "nvidia-smi").chmod(0o755)
    env = {
        **os.environ,
        "PATH": f"{tools}:/usr/bin:/bin",
        "PYTHONPATH": f"{shadow}:{REPO}",
        "GPU_PYTHON": sys.executable,
        "OUT": str(tmp_path / "out"),
    }
    proc = subprocess.run(
        ["bash", "scripts/gpu-check.sh"], cwd=REPO, capture_output=True, text=True, timeout=120, env=env
    )
    assert proc.returncode == 1 and proc.stdout == ""
    assert len(proc.stderr.strip().splitlines()) == 1 and "has no torch" in proc.stderr
    direct = subprocess.run(
        [sys.executable, "benchmarks/gpu_check.py"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )
    assert direct.returncode == 1 and direct.stderr.strip().endswith(
        "has no torch; run it with a Python that has torch"
    )
    assert not (tmp_path / "out").exists()


def rehearsal(out: Path, *extra: str, hang: str | None = None) -> BackgroundCommand:
    """`gpu-check.sh --rehearse` into `out`: a chain of processes that each use about one core, so it can
    run beside other tests (tests/benchmarks/conftest.py starts the module's two as soon as a one-process
    run has collected them)."""
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    env.pop("CHATSPACE_GPU_CHECK_HANG", None)
    if hang:
        env["CHATSPACE_GPU_CHECK_HANG"] = hang
    args = ["bash", "scripts/gpu-check.sh", "--rehearse", "--out", str(out), *extra]
    return BackgroundCommand(args, out, timeout=600, env=env)


def records_of(out: Path) -> list[dict]:
    lines = (out / "gpu-check" / "measurements.jsonl").read_text().splitlines()
    return [json.loads(line) for line in lines]


HUNG_STEPS = ["versions", "cli", "qwen3-ref"]
HUNG_BUDGET_S = 200
HUNG_ARGS = ("--only", *HUNG_STEPS, "--budget-s", str(HUNG_BUDGET_S), "--step-limit-s", "60",
             "--step-limit-s", "cli=5")  # fmt: skip
#: The module's rehearsals by test. In the hung one every step is capped at 60 s, the hung one at 5 s (it
#: writes its record in a fraction of a second, then hangs): the runner's own limit is what ends it.
REHEARSALS: dict[str, Maker] = {
    "test_rehearsal_runs_every_step_on_the_cpu_and_writes_the_files_a_gpu_machine_hands_back": (
        rehearsal, ()
    ),
    "test_a_hung_step_is_killed_with_its_children_and_the_others_keep_their_figures": (
        lambda out: rehearsal(out, *HUNG_ARGS, hang="cli"), ()
    ),
}  # fmt: skip


def ends(records) -> dict:
    return {r["step"]: r["value"] for r in records if r["kind"] == "end"}


def measured(records, step) -> dict:
    return {r["key"]: r["value"] for r in records if r["step"] == step and r["kind"] == "measure"}


def alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


@pytest.mark.slow
def test_rehearsal_runs_every_step_on_the_cpu_and_writes_the_files_a_gpu_machine_hands_back(request):
    command = command_of(request, REHEARSALS)
    proc, out = command.result(), command.folder
    records = records_of(out)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    files = sorted(str(p.relative_to(out)) for p in out.rglob("*") if p.is_file())
    assert files == ["RESULTS-gpu.md", "gpu-check/measurements.jsonl", "gpu-check/steps.log"]
    assert list(ends(records)) == STEPS and all(e["status"] == "ok" for e in ends(records).values())
    versions = measured(records, "versions")["packages"]
    assert versions["torch"] and versions["transformers"] and versions["sentence_transformers"]
    cli = measured(records, "cli")
    assert cli["embed"]["status"] == "complete" and cli["parquet"]["rows"] == cli["embed"]["rows"] > 0
    headline = measured(records, "headline")
    assert headline["ratio"]["ratio"] > 0 and headline["cosine_to_plain"]["ok"]
    assert headline["chatspace"]["rows"] == headline["plain"]["rows"] == headline["ratio"]["rows"]
    assert measured(records, "qwen3-compiled")["summary"]["graphs"] >= 1
    md = (out / "RESULTS-gpu.md").read_text()
    assert "**Headline:**" in md and "failed: none" in md
    assert all(f"| {step} | ok |" in md for step in STEPS)


@pytest.mark.slow
def test_a_hung_step_is_killed_with_its_children_and_the_others_keep_their_figures(request):
    command = command_of(request, REHEARSALS)
    proc, out, budget = command.result(), command.folder, HUNG_BUDGET_S
    records, wall = records_of(out), command.wall
    assert wall < budget, wall
    assert proc.returncode == 1
    status = {step: end["status"] for step, end in ends(records).items()}
    assert status == {"versions": "ok", "cli": "timed out", "qwen3-ref": "ok"}
    assert {step: end["limit_s"] for step, end in ends(records).items()} == {
        "versions": 60,
        "cli": 5,
        "qwen3-ref": 60,
    }
    before = measured(records, "cli")["before_hang"]  # written before the hang: kept
    assert not alive(before["pid"]) and not alive(before["child_pid"])  # its own session's child too
    assert measured(records, "versions")["packages"]["torch"]
    assert measured(records, "qwen3-ref")["float32"]["ok"]
    md = (out / "RESULTS-gpu.md").read_text()
    assert "| cli | timed out |" in md and "| qwen3-ref | ok |" in md and "failed: cli" in md
