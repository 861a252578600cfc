"""Device discovery with NVML faked at its boundary."""

from __future__ import annotations

import pytest

from chatspace import devices
from chatspace.errors import UsageError


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
