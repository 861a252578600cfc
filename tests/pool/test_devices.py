"""Device discovery with NVML faked at its boundary."""

from __future__ import annotations

import pytest

from chatspace.errors import UsageError
from chatspace.hardware import devices


@pytest.fixture
def four_gpus(monkeypatch):
    monkeypatch.setattr(devices, "_nvml_device_count", lambda: 4)
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)


def test_gpus_all_and_list(four_gpus):
    assert [d.label for d in devices.resolve_devices("all", None)] == ["cuda:0", "cuda:1", "cuda:2", "cuda:3"]
    got = devices.resolve_devices("1,3", None)
    assert [(d.label, d.physical) for d in got] == [("cuda:1", "1"), ("cuda:3", "3")]


def test_cuda_visible_devices_is_honoured(four_gpus, monkeypatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "2,3")
    got = devices.resolve_devices("all", None)
    assert [(d.label, d.physical) for d in got] == [("cuda:0", "2"), ("cuda:1", "3")]
    with pytest.raises(UsageError, match="GPU 2 is not available"):
        devices.resolve_devices("2", None)


def test_default_is_first_gpu_else_cpu(monkeypatch):
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    monkeypatch.setattr(devices, "_nvml_device_count", lambda: 0)
    assert [d.label for d in devices.resolve_devices(None, None)] == ["cpu:0"]
    monkeypatch.setattr(devices, "_nvml_device_count", lambda: 2)
    assert [d.label for d in devices.resolve_devices(None, None)] == ["cuda:0"]


def test_cpu_workers_and_bad_specs(monkeypatch):
    monkeypatch.setattr(devices, "_nvml_device_count", lambda: 0)
    assert [d.label for d in devices.resolve_devices(None, "cpu,cpu")] == ["cpu:0", "cpu:1"]
    with pytest.raises(UsageError):
        devices.resolve_devices("all", None)
    with pytest.raises(UsageError):
        devices.resolve_devices(None, "tpu")
    with pytest.raises(UsageError):
        devices.resolve_devices("0", "cpu")
    with pytest.raises(UsageError):
        devices.resolve_devices("x", None)


def test_labels_round_trip(four_gpus):
    labels = tuple(d.label for d in devices.resolve_devices("0,2", None))
    assert [d.physical for d in devices.parse_device_labels(labels)] == ["0", "2"]


# --- NVML faked as a module: UUIDs, PCI order vs CUDA order, no NVML at all ---------------------------


class FakeNvml:
    """pynvml at its boundary: GPUs in NVML's (PCI) order, each with a UUID and a utilisation."""

    class NVMLError(Exception):
        pass

    def __init__(self, gpus: list[tuple[str, float]], available: bool = True):
        self.gpus = gpus  # (uuid, utilisation %) in NVML index order
        self.available = available

    def nvmlInit(self):
        if not self.available:
            raise self.NVMLError("NVML Shared Library Not Found")

    def nvmlShutdown(self):
        pass

    def nvmlDeviceGetCount(self):
        return len(self.gpus)

    def nvmlDeviceGetHandleByIndex(self, i):
        return i

    def nvmlDeviceGetHandleByUUID(self, uuid):
        for i, (u, _) in enumerate(self.gpus):
            if u == uuid:
                return i
        raise self.NVMLError(f"no GPU {uuid}")

    def nvmlDeviceGetUtilizationRates(self, handle):
        return type("Util", (), {"gpu": self.gpus[handle][1]})()

    def nvmlDeviceGetMemoryInfo(self, handle):
        return type("Mem", (), {"used": (handle + 1) * 2**30})()


@pytest.fixture
def fake_nvml(monkeypatch):
    import sys

    def install(gpus, available=True):
        fake = FakeNvml(gpus, available)
        monkeypatch.setitem(sys.modules, "pynvml", fake)
        return fake

    return install


UUIDS = ["GPU-aaaa-0000", "GPU-bbbb-1111", "GPU-cccc-2222"]


def test_uuids_in_cuda_visible_devices_are_kept(fake_nvml, monkeypatch):
    fake_nvml([(u, 0.0) for u in UUIDS])
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", f"{UUIDS[2]},{UUIDS[0]}")
    got = devices.resolve_devices("all", None)
    assert [(d.label, d.physical) for d in got] == [("cuda:0", UUIDS[2]), ("cuda:1", UUIDS[0])]


def test_without_nvml_torch_counts_the_gpus(fake_nvml, monkeypatch):
    fake_nvml([], available=False)
    monkeypatch.setattr(devices, "_torch_device_count", lambda: 2)
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    assert [d.label for d in devices.resolve_devices("all", None)] == ["cuda:0", "cuda:1"]
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "3,5,7")  # torch saw 2 of them
    assert [d.physical for d in devices.resolve_devices("all", None)] == ["3", "5"]
    monkeypatch.setattr(devices, "_torch_device_count", lambda: 0)
    with pytest.raises(UsageError, match="no GPU is visible"):
        devices.resolve_devices("all", None)


def test_telemetry_follows_the_uuid_cuda_reports_not_the_index(fake_nvml, monkeypatch):
    """CUDA's device 0 of a worker pinned to '1' may be NVML's device 2: the UUID decides."""
    from chatspace.hardware import telemetry

    fake_nvml([(UUIDS[0], 10.0), (UUIDS[1], 20.0), (UUIDS[2], 90.0)])
    monkeypatch.setattr(telemetry, "cuda_device_uuid", lambda: UUIDS[2].removeprefix("GPU-"))
    tel = telemetry.telemetry_for(devices.Device("cuda", "cuda:1", "1"))
    assert tel.uuid == UUIDS[2].removeprefix("GPU-") and tel.index is None
    tel.interval = 0.01
    assert tel.start()
    import time

    deadline = time.monotonic() + 30
    while not tel._samples and time.monotonic() < deadline:
        time.sleep(0.02)
    got = tel.stop()
    assert got["util_max_pct"] == 90.0 and got["mem_max_gib"] == 3.0  # NVML device 2, not 1


def test_telemetry_without_a_cuda_uuid_uses_the_pinned_entry(fake_nvml, monkeypatch):
    from chatspace.hardware import telemetry

    fake_nvml([(u, 0.0) for u in UUIDS])
    monkeypatch.setattr(telemetry, "cuda_device_uuid", lambda: None)
    assert telemetry.telemetry_for(devices.Device("cuda", "cuda:0", UUIDS[1])).uuid == UUIDS[1]
    by_index = telemetry.telemetry_for(devices.Device("cuda", "cuda:0", "2"))
    assert by_index.uuid is None and by_index.index == 2
    fake_nvml([], available=False)
    assert not telemetry.GpuTelemetry(uuid=UUIDS[0]).start()  # no NVML: no telemetry, no error


def test_threads_are_shared_out_across_local_workers(monkeypatch):
    from chatspace.config import RunConfig
    from chatspace.pool.executors import local

    monkeypatch.setattr(local, "cpu_count", lambda: 16)
    gpus = tuple(devices.Device("cuda", f"cuda:{i}", str(i)) for i in range(4))
    cfg = RunConfig.from_options(dataset="x", output_root="/tmp/x").execution
    assert local.threads_per_worker(gpus, cfg) == 4  # torch, tokenizer and compile pools: 16 cores / 4
    assert local.threads_per_worker((devices.Device("cpu", "cpu:0"),) * 2, cfg) == 8
    assert (
        local.threads_per_worker(
            gpus, RunConfig.from_options(dataset="x", output_root="/tmp/x", threads_per_worker=3).execution
        )
        == 3
    )


def _from_device_flag(device: str) -> list[str]:
    gpus, devs = devices.device_flags(None, None, device)
    return [d.label for d in devices.resolve_devices(gpus, devs)]


def test_original_device_flag_maps_onto_the_pool(four_gpus):
    assert _from_device_flag("cuda") == ["cuda:0", "cuda:1", "cuda:2", "cuda:3"]  # every visible GPU
    assert _from_device_flag("cuda:2") == ["cuda:2"]
    assert _from_device_flag("cpu") == ["cpu:0"]
    assert _from_device_flag("auto") == ["cuda:0", "cuda:1", "cuda:2", "cuda:3"]


def test_device_auto_without_gpus_is_the_cpu(monkeypatch):
    monkeypatch.setattr(devices, "_nvml_device_count", lambda: 0)
    assert _from_device_flag("auto") == ["cpu:0"]
    with pytest.raises(UsageError, match="no GPU is visible"):
        _from_device_flag("cuda")
    with pytest.raises(UsageError, match="one of --device, --gpus or --devices"):
        devices.device_flags("0", None, "cpu")


def test_ray_cuda_workers_get_their_share_of_a_nodes_cores():
    from chatspace.pool.executors.ray import cluster_capacity, cpus_per_gpu

    nodes = [
        {"Alive": True, "Resources": {"CPU": 64.0, "GPU": 8.0}},
        {"Alive": True, "Resources": {"CPU": 16.0, "GPU": 2.0}},
        {"Alive": True, "Resources": {"CPU": 32.0}},  # no GPU: not counted
        {"Alive": False, "Resources": {"CPU": 4.0, "GPU": 4.0}},
    ]
    assert cpus_per_gpu(nodes) == 8  # 64 / 8 and 16 / 2, as local workers share a machine's cores
    assert cluster_capacity(nodes, "cuda", cpus_per_gpu(nodes)) == 10  # every live GPU still has room
    assert cpus_per_gpu([{"Alive": True, "Resources": {"CPU": 2.0, "GPU": 4.0}}]) == 1
    assert cpus_per_gpu([{"Alive": True, "Resources": {"CPU": 8.0}}]) is None
