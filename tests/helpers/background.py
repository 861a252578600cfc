"""A command a test asserts on, which may run before the test is reached: in a one-process run the bench
cases' commands run one after another beside the other tests (tests/benchmarks/conftest.py), and their
tests take the finished result. A test that finds its command not yet started runs it there and then."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import threading
from pathlib import Path

from tests.helpers import REPO


class BackgroundCommand:
    """`subprocess.run(args, cwd=REPO, capture_output=True, text=True, timeout=timeout)`, started by
    whichever comes first: `run()` (a background chain) or `result()` (its test)."""

    def __init__(self, args: list[str], folder: Path, timeout: float):
        self.args, self.folder, self.timeout = args, folder, timeout  # folder: where it writes its files
        self._lock = threading.Lock()
        self._claimed = False  # started, or stopped before it started
        self._done = threading.Event()
        self._proc: subprocess.Popen | None = None
        self._outcome: subprocess.CompletedProcess | BaseException | None = None

    def run(self) -> None:
        """Run it here unless it was already started (or stopped); returns when it has ended."""
        with self._lock:
            if self._claimed:
                return
            self._claimed = True
            self._proc = subprocess.Popen(
                self.args,
                cwd=REPO,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
                start_new_session=True,  # stop() ends whatever it started
            )
        try:
            stdout, stderr = self._proc.communicate(timeout=self.timeout)
            self._outcome = subprocess.CompletedProcess(self.args, self._proc.returncode, stdout, stderr)
        except subprocess.TimeoutExpired as e:
            self.stop()
            self._proc.communicate()
            self._outcome = e
        except BaseException as e:  # noqa: BLE001 - handed to the test that asks for the result
            self._outcome = e
        finally:
            self._done.set()

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
