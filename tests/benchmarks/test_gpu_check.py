"""`make gpu-check` on a machine without CUDA: one line, non-zero, nothing run."""

from __future__ import annotations

import os
import subprocess
import sys

from tests.helpers import REPO


def test_gpu_check_without_cuda_is_one_line_and_fails(tmp_path):
    env = {**os.environ, "PATH": "/usr/bin:/bin"}  # no nvidia-smi there on a CPU machine
    proc = subprocess.run(
        ["bash", "scripts/gpu-check.sh"], cwd=REPO, capture_output=True, text=True, timeout=120, env=env
    )
    if os.path.exists("/dev/nvidiactl"):
        import pytest

        pytest.skip("this machine has an NVIDIA device")
    assert proc.returncode == 1
    assert proc.stdout == "" and len(proc.stderr.strip().splitlines()) == 1
    assert "no CUDA device" in proc.stderr
    assert not (REPO / "benchmarks" / "gpu-check").exists() or not any(
        (REPO / "benchmarks" / "gpu-check").iterdir()
    )


def test_gpu_check_script_refuses_without_cuda_even_past_the_shell_guard():
    """benchmarks/gpu_check.py itself (a machine with the NVIDIA tools but no usable CUDA)."""
    proc = subprocess.run(
        [sys.executable, "benchmarks/gpu_check.py"], cwd=REPO, capture_output=True, text=True, timeout=300
    )
    import torch

    if torch.cuda.is_available():
        import pytest

        pytest.skip("CUDA is available here")
    assert proc.returncode == 1 and len(proc.stderr.strip().splitlines()) == 1
    assert "no CUDA device" in proc.stderr
