"""Which devices a run uses: `--gpus 0,1 | all`, `--devices cpu,cpu`, or the default (first GPU, else CPU).

GPU discovery goes through NVML and honours CUDA_VISIBLE_DEVICES (indices or GPU-/MIG- UUIDs); where
NVML is missing, torch's own device count stands in (torch is imported only then). Each worker later
pins itself to its one GPU via CUDA_VISIBLE_DEVICES, and finds its NVML handle by the UUID CUDA
reports for it (NVML numbers GPUs by PCI bus, CUDA by speed unless CUDA_DEVICE_ORDER=PCI_BUS_ID).
"""

from __future__ import annotations

import contextlib
import os
import sys
from dataclasses import dataclass

from chatspace.errors import UsageError


@dataclass(frozen=True)
class Device:
    kind: str  # cpu | cuda
    label: str  # what logs and the manifest show: cpu:0, cuda:3
    physical: str | None = None  # the CUDA_VISIBLE_DEVICES entry a CUDA worker pins itself to

    def to_dict(self) -> dict[str, str | None]:
        return {"kind": self.kind, "label": self.label, "physical": self.physical}


def _nvml_device_count() -> int | None:
    """GPUs NVML sees; None when NVML itself is unavailable (no library, no driver access)."""
    try:
        import pynvml

        pynvml.nvmlInit()
    except Exception:  # noqa: BLE001 - no library or no driver: ask torch instead
        return None
    try:
        return int(pynvml.nvmlDeviceGetCount())
    except Exception:  # noqa: BLE001
        return None
    finally:
        with contextlib.suppress(Exception):
            pynvml.nvmlShutdown()


# Device nodes a GPU driver creates on Linux (NVIDIA, AMD's ROCm, WSL 2); with none of them no GPU is
# usable, so there is no need to ask torch (importing it costs the supervisor about a second).
GPU_DEVICE_NODES = ("/dev/nvidiactl", "/dev/nvidia0", "/dev/kfd", "/dev/dxg")


def _gpu_driver_present() -> bool:
    if not sys.platform.startswith("linux"):
        return True  # no such cheap check elsewhere: ask torch
    return any(os.path.exists(node) for node in GPU_DEVICE_NODES)


def _torch_device_count() -> int:
    """CUDA's own count of the GPUs this process sees (CUDA_VISIBLE_DEVICES applied)."""
    if not _gpu_driver_present():
        return 0
    try:
        import torch

        return int(torch.cuda.device_count())
    except Exception:  # noqa: BLE001 - no torch build with CUDA: no GPUs
        return 0


def visible_gpus() -> list[str]:
    """Physical ids (or UUIDs) of the GPUs this process may use, in CUDA's order."""
    env = os.environ.get("CUDA_VISIBLE_DEVICES")
    count = _nvml_device_count()
    if count is None:
        # No NVML: torch counts what CUDA_VISIBLE_DEVICES leaves, so its count is the list's length.
        seen = _torch_device_count()
        if env is None:
            return [str(i) for i in range(seen)]
        entries = [x.strip() for x in env.split(",") if x.strip()]
        return entries[:seen]
    if env is None:
        return [str(i) for i in range(count)]
    out = []
    for item in (x.strip() for x in env.split(",")):
        if not item or item.startswith("-"):
            break  # CUDA ignores everything from the first invalid entry on
        if item.isdigit() and int(item) >= count:
            break
        out.append(item)
    return out


def cpu_count() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def device_flags(gpus: str | None, devices: str | None, device: str | None) -> tuple[str | None, str | None]:
    """The original tool's --device as (--gpus, --devices): cuda is every visible GPU, auto the GPUs
    if any are visible, else the CPU."""
    if device is None:
        return gpus, devices
    if gpus or devices:
        raise UsageError("give one of --device, --gpus or --devices")
    d = device.strip().lower()
    if d == "cpu":
        return None, "cpu"
    if d == "cuda":
        return "all", None
    if d.startswith("cuda:") and d[5:].isdigit():
        return d[5:], None
    if d == "auto":
        return ("all", None) if visible_gpus() else (None, "cpu")
    raise UsageError(f"--device must be cuda, cuda:N, cpu or auto, not {device!r}")


def resolve_devices(gpus: str | None, devices: str | None) -> tuple[Device, ...]:
    """Turn the CLI's --gpus / --devices into one Device per worker."""
    if gpus and devices:
        raise UsageError("give --gpus or --devices, not both")
    if devices:
        out = []
        cpu_n = 0
        gpu_spec = []
        for item in (x.strip().lower() for x in devices.split(",")):
            if item == "cpu":
                out.append(Device("cpu", f"cpu:{cpu_n}"))
                cpu_n += 1
            elif item.startswith("cuda"):
                gpu_spec.append(item.partition(":")[2] or "0")
                out.append(None)
            else:
                raise UsageError(f"unknown device {item!r} in --devices (use cpu or cuda:N)")
        if gpu_spec:
            gpu_devices = iter(_gpu_devices(",".join(gpu_spec)))
            out = [d if d is not None else next(gpu_devices) for d in out]
        return tuple(out)
    if gpus:
        return tuple(_gpu_devices(gpus))
    visible = visible_gpus()
    if visible:
        return (Device("cuda", "cuda:0", visible[0]),)
    return (Device("cpu", "cpu:0"),)


def _gpu_devices(spec: str) -> list[Device]:
    visible = visible_gpus()
    if spec.strip().lower() == "all":
        if not visible:
            raise UsageError("--gpus all: no GPU is visible (NVML found none; check CUDA_VISIBLE_DEVICES)")
        return [Device("cuda", f"cuda:{i}", v) for i, v in enumerate(visible)]
    out = []
    for item in (x.strip() for x in spec.split(",")):
        if not item.isdigit():
            raise UsageError(f"--gpus takes indices like 0,1,2 or 'all', not {spec!r}")
        i = int(item)
        if i >= len(visible):
            have = ",".join(str(k) for k in range(len(visible))) or "none"
            raise UsageError(f"GPU {i} is not available (visible GPUs: {have})")
        out.append(Device("cuda", f"cuda:{i}", visible[i]))
    if len({d.label for d in out}) != len(out):
        raise UsageError(f"--gpus lists a GPU twice: {spec}")
    return out


def parse_device_labels(labels: tuple[str, ...]) -> tuple[Device, ...]:
    """An ExecutorConfig's devices (labels such as cpu:0, cuda:1) back into Devices, GPU ids resolved now."""
    out = []
    visible = None
    for label in labels:
        kind, _, idx = label.partition(":")
        if kind == "cpu":
            out.append(Device("cpu", label))
        elif kind == "cuda":
            visible = visible_gpus() if visible is None else visible
            i = int(idx or 0)
            if i >= len(visible):
                raise UsageError(f"GPU {i} is not available (visible GPUs: {len(visible)})")
            out.append(Device("cuda", f"cuda:{i}", visible[i]))
        elif kind == "api":
            out.append(Device("api", label))
        else:
            raise UsageError(f"unknown device {label!r}")
    return tuple(out)
