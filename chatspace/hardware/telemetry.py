"""GPU telemetry: utilisation and memory of a worker's GPU, sampled through NVML (best effort)."""

from __future__ import annotations

import threading


class GpuTelemetry:
    """Samples utilisation and memory of one GPU through pynvml in a background thread.

    The GPU is named by its UUID (what CUDA reports for the worker's device), never by an index:
    NVML numbers GPUs by PCI bus, CUDA by speed unless CUDA_DEVICE_ORDER=PCI_BUS_ID, and
    CUDA_VISIBLE_DEVICES may hold UUIDs. An index is the fallback when no UUID is known."""

    def __init__(self, uuid: str | None = None, index: int | None = None, interval: float = 1.0):
        self.uuid = uuid
        self.index = index
        self.interval = interval
        self._samples: list[tuple[float, float]] = []
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._handle = None

    def start(self) -> bool:
        try:
            import pynvml

            pynvml.nvmlInit()
            if self.uuid:
                uuid = self.uuid if self.uuid.startswith(("GPU-", "MIG-")) else f"GPU-{self.uuid}"
                self._handle = pynvml.nvmlDeviceGetHandleByUUID(uuid)
            elif self.index is not None:
                self._handle = pynvml.nvmlDeviceGetHandleByIndex(self.index)
            else:
                return False
        except Exception:  # noqa: BLE001 - telemetry is best effort; no NVML, no samples
            return False
        self._thread = threading.Thread(target=self._run, name="nvml", daemon=True)
        self._thread.start()
        return True

    def _run(self) -> None:
        import pynvml

        while not self._stop.wait(self.interval):
            try:
                util = pynvml.nvmlDeviceGetUtilizationRates(self._handle)
                mem = pynvml.nvmlDeviceGetMemoryInfo(self._handle)
                self._samples.append((float(util.gpu), mem.used / 2**30))
            except Exception:  # noqa: BLE001
                return

    def stop(self) -> dict[str, float]:
        self._stop.set()
        if self._thread:
            self._thread.join(timeout=2)
        if not self._samples:
            return {}
        utils = [u for u, _ in self._samples]
        mems = [m for _, m in self._samples]
        return {
            "util_mean_pct": sum(utils) / len(utils),
            "util_max_pct": max(utils),
            "mem_max_gib": max(mems),
            "samples": float(len(utils)),
        }


def cuda_device_uuid() -> str | None:
    """The UUID CUDA reports for this process's first visible GPU (the one a worker is pinned to)."""
    try:
        import torch

        return str(torch.cuda.get_device_properties(0).uuid)
    except Exception:  # noqa: BLE001 - no CUDA, or a torch without device UUIDs
        return None


def telemetry_for(device) -> GpuTelemetry:
    """NVML telemetry for a CUDA worker's device: by the UUID CUDA reports for it; else by the entry
    the worker was pinned to (a UUID, or an index, which NVML and CUDA agree on only in PCI order)."""
    physical = device.physical or ""
    uuid = cuda_device_uuid()
    if uuid is None and physical.startswith(("GPU-", "MIG-")):
        uuid = physical
    index = int(physical) if uuid is None and physical.isdigit() else None
    return GpuTelemetry(uuid=uuid, index=index)
