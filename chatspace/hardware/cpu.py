"""The CPU's features that decide which precisions run fast on it.

bfloat16 matmuls run natively only with AVX512-BF16 or AMX (Intel Cooper Lake / Sapphire Rapids and
later, AMD Zen 4 and later); elsewhere torch emulates them and a bfloat16 model runs several times
slower than float32. Features come from /proc/cpuinfo (Linux); elsewhere they are unknown and nothing
is claimed about them.
"""

from __future__ import annotations

import functools
import platform
from dataclasses import dataclass
from pathlib import Path

CPUINFO = Path("/proc/cpuinfo")
# The flags that matter for inference precision, in the order they are reported.
NOTABLE_FLAGS = ("avx2", "avx512f", "avx512_vnni", "avx512_bf16", "amx_tile", "amx_bf16", "amx_int8")
NATIVE_BF16_FLAGS = ("avx512_bf16", "amx_bf16")


@dataclass(frozen=True)
class CpuFeatures:
    model: str
    flags: frozenset[str]
    known: bool  # False where the flags could not be read (not Linux): nothing is claimed then

    @property
    def native_bf16(self) -> bool | None:
        """True with AVX512-BF16 or AMX-BF16, False without, None when unknown."""
        if not self.known:
            return None
        return any(f in self.flags for f in NATIVE_BF16_FLAGS)

    @property
    def notable(self) -> list[str]:
        """The precision-relevant flags this CPU has, e.g. ['avx2', 'avx512f', 'amx_bf16']."""
        return [f for f in NOTABLE_FLAGS if f in self.flags]

    def describe(self) -> str:
        """One line: the model and its precision-relevant flags."""
        if not self.known:
            return f"{self.model} (CPU flags unknown on this system)"
        return f"{self.model} ({', '.join(self.notable) or 'no AVX2'})"


def parse_cpuinfo(text: str) -> CpuFeatures:
    """Model name and flags of the first processor listed in /proc/cpuinfo's text."""
    model, flags, found = "", frozenset(), False
    for line in text.splitlines():
        key, _, value = line.partition(":")
        key = key.strip()
        if key == "model name" and not model:
            model = value.strip()
        elif key in ("flags", "Features") and not found:  # x86 / ARM
            flags, found = frozenset(value.split()), True
    return CpuFeatures(model or platform.processor() or "unknown CPU", flags, found)


@functools.cache
def cpu_features() -> CpuFeatures:
    """This machine's CPU features (read once per process)."""
    try:
        return parse_cpuinfo(CPUINFO.read_text(errors="replace"))
    except OSError:
        return CpuFeatures(platform.processor() or "unknown CPU", frozenset(), False)


def slow_dtype_warning(dtype: str | None, features: CpuFeatures | None = None) -> str | None:
    """The one-line warning for a precision this CPU only emulates, or None when it runs natively
    (or the CPU's features are unknown)."""
    if dtype != "bfloat16":
        return None
    features = features or cpu_features()
    if features.native_bf16 is not False:
        return None
    return (
        f"--dtype bfloat16 on this CPU ({features.describe()}) is emulated without AVX512-BF16 or AMX "
        "and usually runs several times slower than float32; use --dtype float32 (the CPU default)"
    )
