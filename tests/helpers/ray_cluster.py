"""What the Ray tests share: holding a run's workers mid-run (tests/helpers/hold_hook)."""

from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path

from tests.helpers import REPO

HOLD_HOOK = REPO / "tests" / "helpers" / "hold_hook"


class HeldWorkers:
    """Every worker of a run waits at its next text until `release()`: a test takes a worker (or its
    node) down while it certainly holds units, however fast or loaded the machine is. `env` is what
    the run's processes (or a cluster's nodes) need; `held()` says who is waiting."""

    def __init__(self, folder: Path):
        self.flag = folder / "hold"
        self.flag.touch()
        self.env = {
            "PYTHONPATH": os.pathsep.join(p for p in (str(HOLD_HOOK), os.environ.get("PYTHONPATH")) if p),
            "CHATSPACE_TEST_HOLD_WHILE": str(self.flag),
        }

    def held(self) -> list[dict]:
        """The workers that have reached the hold, in the order they did: pid (Ray actor and node ids)."""
        found = sorted(self.flag.parent.glob(f"{self.flag.name}.*.json"), key=lambda p: p.stat().st_mtime_ns)
        return [json.loads(p.read_text()) for p in found]

    def wait_for(self, count: int, proc: subprocess.Popen, timeout: float = 300) -> list[dict]:
        """Until `count` workers wait in the hold (the run's process `proc` must stay alive meanwhile)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            held = self.held()
            if len(held) >= count:
                return held
            assert proc.poll() is None, proc.communicate()[1]
            time.sleep(0.1)
        raise AssertionError(f"{len(self.held())} of {count} workers reached the hold")

    def release(self) -> None:
        self.flag.unlink(missing_ok=True)
