"""`chatspace ARGS` run inside the pytest process, set up as a fresh process would be.

A subprocess per command costs about three seconds of imports (torch, transformers,
sentence_transformers) before it does anything, and the suite runs a few hundred commands. Here the
command runs through the CLI's own entry point with its own file descriptors 1 and 2 (what its workers
and native libraries write lands there too), environment, working directory, signal handlers, warning
filters and logging, all put back afterwards. Its workers are real processes, forked from the fork
server this pytest process keeps for the session, which has the libraries imported once.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import subprocess
import sys
import tempfile
import traceback
import warnings
from collections.abc import Iterator
from pathlib import Path

# A fresh interpreter's warning filters (python -W / PYTHONWARNINGS unset): pytest's own are not a
# user's, and a warning a user would see must reach the command's stderr here too.
_FRESH_FILTERS = (
    ("default", DeprecationWarning, "__main__"),
    ("ignore", DeprecationWarning, ""),
    ("ignore", PendingDeprecationWarning, ""),
    ("ignore", ImportWarning, ""),
    ("ignore", ResourceWarning, ""),
)
_LOGGERS = ("", "chatspace")  # the root logger and ours: the CLI sets up handlers on these


def run_in_this_process(
    argv: list[str], args: tuple[str, ...], env: dict[str, str], cwd: Path, timeout: float
) -> subprocess.CompletedProcess:
    """Run `chatspace.cli.main(args)` isolated; `argv` is what a subprocess would have run."""
    from chatspace.cli import main

    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        with _isolated(args, env, cwd, out.fileno(), err.fileno()):
            code = _exit_code(main, list(args), timeout)
        out.seek(0)
        err.seek(0)
        stdout = out.read().decode("utf-8", errors="replace")
        stderr = err.read().decode("utf-8", errors="replace")
    return subprocess.CompletedProcess(argv, code, stdout, stderr)


def _exit_code(main, args: list[str], timeout: float) -> int:
    """What the process would have exited with; an uncaught exception prints its traceback to stderr,
    as the interpreter does. A command that runs past `timeout` is interrupted (SIGALRM)."""

    def _too_long(signum, frame):
        raise TimeoutError(f"chatspace {' '.join(args)} ran past {timeout:.0f}s")

    previous = signal.signal(signal.SIGALRM, _too_long)
    signal.setitimer(signal.ITIMER_REAL, timeout)
    try:
        main(args)
        return 0
    except SystemExit as e:
        if e.code is None:
            return 0
        if isinstance(e.code, int):
            return e.code
        print(e.code, file=sys.stderr)
        return 1
    except TimeoutError:
        raise
    except BaseException:  # noqa: BLE001 - what the interpreter would print and exit 1 with
        traceback.print_exc()
        return 1
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
        sys.stdout.flush()
        sys.stderr.flush()


@contextlib.contextmanager
def _isolated(args, env: dict[str, str], cwd: Path, out_fd: int, err_fd: int) -> Iterator[None]:
    saved_env = dict(os.environ)
    saved_cwd = os.getcwd()
    saved_streams = (sys.stdin, sys.stdout, sys.stderr)
    saved_argv = sys.argv
    saved_signals = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    saved_logging = {
        name: (list(lg.handlers), lg.level, lg.propagate, lg.disabled)
        for name, lg in ((n, logging.getLogger(n)) for n in _LOGGERS)
    }
    for stream in saved_streams[1:]:
        stream.flush()
    saved_fds = (os.dup(1), os.dup(2))
    stdin = open(os.devnull, encoding="utf-8")  # noqa: SIM115 - closed in finally
    try:
        os.environ.update(env)
        os.chdir(cwd)
        os.dup2(out_fd, 1)
        os.dup2(err_fd, 2)
        sys.stdin = stdin
        sys.stdout = open(1, "w", encoding="utf-8", errors="backslashreplace", closefd=False)  # noqa: SIM115
        sys.stderr = open(2, "w", encoding="utf-8", errors="backslashreplace", closefd=False, buffering=1)  # noqa: SIM115
        sys.argv = ["chatspace", *args]
        for name in _LOGGERS:  # as a fresh interpreter has them
            lg = logging.getLogger(name)
            lg.handlers = []
            lg.setLevel(logging.WARNING if name == "" else logging.NOTSET)
            lg.propagate, lg.disabled = True, False
        with warnings.catch_warnings():
            warnings.resetwarnings()
            for action, category, module in reversed(_FRESH_FILTERS):
                warnings.filterwarnings(action, category=category, module=module)
            yield
    finally:
        for name, (handlers, level, propagate, disabled) in saved_logging.items():
            lg = logging.getLogger(name)
            for h in lg.handlers:
                if h not in handlers:
                    with contextlib.suppress(Exception):
                        h.close()
            lg.handlers = handlers
            lg.setLevel(level)
            lg.propagate, lg.disabled = propagate, disabled
        with contextlib.suppress(Exception):
            sys.stdout.close()
        with contextlib.suppress(Exception):
            sys.stderr.close()
        stdin.close()
        sys.stdin, sys.stdout, sys.stderr = saved_streams
        sys.argv = saved_argv
        os.dup2(saved_fds[0], 1)
        os.dup2(saved_fds[1], 2)
        for fd in saved_fds:
            os.close(fd)
        for signum, handler in saved_signals.items():
            signal.signal(signum, handler)
        os.chdir(saved_cwd)
        os.environ.clear()
        os.environ.update(saved_env)
