"""A command a test asserts on, which may run before the test is reached: in a one-process run the
gpu-check rehearsals and the bench cases' commands run beside the other tests (tests/benchmarks/
conftest.py starts them), and their tests take the finished result. A test that finds its command not
yet started runs it there and then."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path

from tests.helpers import REPO

#: A test's command for a folder to write into, and the modules it needs (none there: it is not started).
Maker = tuple[Callable[[Path], "BackgroundCommand"], tuple[str, ...]]

#: test name -> its command, started or queued early by tests/benchmarks/conftest.py, not yet taken.
STARTED_EARLY: dict[str, BackgroundCommand] = {}


class BackgroundCommand:
    """`subprocess.run(args, cwd=REPO, capture_output=True, text=True, timeout=timeout, env=env)`,
    started by whichever comes first: `run()` or `start()` (beside the run) or `result()` (its test)."""

    def __init__(self, args: list[str], folder: Path, timeout: float, env: dict[str, str] | None = None):
        self.args, self.folder, self.timeout, self.env = args, folder, timeout, env  # folder: its files
        self.started: float | None = None  # monotonic, around the process's own run
        self.ended: float | None = None
        self._lock = threading.Lock()
        self._claimed = False  # started, or stopped before it started
        self._done = threading.Event()
        self._proc: subprocess.Popen | None = None
        self._outcome: subprocess.CompletedProcess | BaseException | None = None

    @property
    def wall(self) -> float:
        """Seconds from its start to its end (once it has ended)."""
        assert self.started is not None and self.ended is not None
        return self.ended - self.started

    def start(self) -> BackgroundCommand:
        """Run it in a thread of its own, now."""
        threading.Thread(target=self.run, daemon=True).start()
        return self

    def run(self) -> None:
        """Run it here unless it was already started (or stopped); returns when it has ended."""
        with self._lock:
            if self._claimed:
                return
            self._claimed = True
            self.started = time.monotonic()
            self._proc = subprocess.Popen(
                self.args,
                cwd=REPO,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
                env=self.env,
                start_new_session=True,  # stop() ends whatever it started
            )
        try:
            stdout, stderr = self._proc.communicate(timeout=self.timeout)
            self.ended = time.monotonic()
            self._outcome = subprocess.CompletedProcess(self.args, self._proc.returncode, stdout, stderr)
        except subprocess.TimeoutExpired as e:
            self.stop()
            self._proc.communicate()
            self._outcome = e
        except BaseException as e:  # noqa: BLE001 - handed to the test that asks for the result
            self._outcome = e
        finally:
            self._done.set()

    def wait(self) -> None:
        """Until it has ended (or was stopped before it started)."""
        self._done.wait()

    def result(self) -> subprocess.CompletedProcess:
        """The finished command (run now if nothing started it); raises subprocess.TimeoutExpired as
        `subprocess.run` does when it ran past its timeout."""
        self.run()
        self._done.wait()
        if isinstance(self._outcome, BaseException):
            raise self._outcome
        assert self._outcome is not None, "the command was stopped before it ended"
        return self._outcome

    def stop(self) -> None:
        """Kill it (and all it started) if it runs; never start it."""
        with self._lock:
            if not self._claimed:
                self._claimed = True
                self._done.set()
            proc = self._proc
        if proc is not None and proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)


def command_of(request, makers: dict[str, Maker]) -> BackgroundCommand:
    """The test's command: the one started early for it, else a new one (run by `result()`) into its
    `tmp_path`."""
    early = STARTED_EARLY.pop(request.node.name, None)
    if early is not None:
        return early
    make, _ = makers[request.node.name]
    return make(request.getfixturevalue("tmp_path"))
