"""Errors that are the user's to fix: the CLI prints them as one line, never a traceback."""

from __future__ import annotations

import contextlib
import errno
import os
from collections.abc import Iterator

#: OSErrors that are the environment's, not a bug: one line for the user, no traceback.
ENVIRONMENT_ERRNOS = frozenset(
    {
        errno.ENOSPC,
        errno.EDQUOT,
        errno.EROFS,
        errno.EACCES,
        errno.EPERM,
        errno.ENOTDIR,
        errno.EISDIR,
        errno.EEXIST,
        errno.EIO,
        errno.ENAMETOOLONG,
        errno.EMFILE,
        errno.ENFILE,
    }
)


def describe_os_error(e: OSError, doing: str = "") -> str:
    """`No space left on device writing /out/x (free some space, then rerun with --resume)`: one line."""
    what = e.strerror or " ".join(str(e).split()) or type(e).__name__
    if e.errno in (errno.ENOSPC, errno.EDQUOT):  # the same words whoever wrote (pyarrow has its own)
        what = os.strerror(e.errno)
    place = f" {os.fsdecode(e.filename)}" if e.filename else ""
    doing = f" {doing}" if doing else (" at" if place else "")
    hint = {
        errno.ENOSPC: "; free some space, then rerun with --resume",
        errno.EDQUOT: "; free some space, then rerun with --resume",
        errno.EROFS: "; choose a writable --output-root",
        errno.ENOTDIR: "; a file stands where a folder belongs: move it away or choose another --output-root",
        errno.EEXIST: "; a file stands where a folder belongs: move it away or choose another --output-root",
    }.get(e.errno or 0, "")
    return f"{what}{doing}{place}{hint}"


class ChatspaceError(Exception):
    """A failure with a message meant for the user (exit code 1 unless said otherwise)."""

    exit_code = 1


class UsageError(ChatspaceError):
    """Bad options or input noticed before any work starts (exit code 2)."""

    exit_code = 2


class TerminationSignal(BaseException):  # noqa: N818 - a signal, like KeyboardInterrupt
    """SIGTERM, raised in the supervisor's main thread.

    A BaseException, like KeyboardInterrupt, so that no `except Exception` on the way (a logging handler's
    emit, a library's retry loop) can swallow it; the supervisor turns it into RunInterrupted."""

    def __init__(self, signum: int):
        super().__init__(signum)
        self.signum = signum


class RunInterrupted(ChatspaceError):
    """SIGINT/SIGTERM arrived; the run stopped cleanly and can be resumed."""

    def __init__(self, signum: int):
        import signal

        self.signum = signum
        super().__init__(f"interrupted by {signal.Signals(signum).name}; rerun with --resume to finish")
        self.exit_code = 128 + signum


#: Set by the command line, so a message names its flags (`--include-incomplete`), not Python's keywords.
_SPELLING = {"cli": False}


@contextlib.contextmanager
def speaking_cli() -> Iterator[None]:
    """Within it, messages name options as the command line spells them (`chatspace` runs each command
    in it); a Python caller in the same process afterwards reads Python's keywords again."""
    before = _SPELLING["cli"]
    _SPELLING["cli"] = True
    try:
        yield
    finally:
        _SPELLING["cli"] = before


def option(name: str, value: object = None) -> str:
    """An option as the caller writes it: `--model NAME` on the command line, `model=NAME` in Python;
    a flag (`value` True) is `--include-incomplete` / `include_incomplete=True`."""
    if _SPELLING["cli"]:
        flag = "--" + name.replace("_", "-")
        return flag if value is None or value is True else f"{flag} {value}"
    return f"{name}={'...' if value is None else value!r}"
