"""Errors that are the user's to fix: the CLI prints them as one line, never a traceback."""

from __future__ import annotations


class ChatspaceError(Exception):
    """A failure with a message meant for the user (exit code 1 unless said otherwise)."""

    exit_code = 1


class UsageError(ChatspaceError):
    """Bad options or input noticed before any work starts (exit code 2)."""

    exit_code = 2


class RunInterrupted(ChatspaceError):
    """SIGINT/SIGTERM arrived; the run stopped cleanly and can be resumed."""

    def __init__(self, signum: int):
        import signal

        self.signum = signum
        super().__init__(f"interrupted by {signal.Signals(signum).name}; rerun with --resume to finish")
        self.exit_code = 128 + signum
