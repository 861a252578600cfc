"""Imported first by the fork server that local workers are forked from: the workers' quiet library
settings go into its environment before any library reads them (transformers and huggingface_hub read
theirs once, at import), so every worker forked from it starts quiet, as a spawned worker does.

The fork server also leaves at once when its supervisor is gone, without the interpreter's teardown:
tearing down torch, transformers and sentence-transformers costs one to a few seconds of CPU, and the
fork server holds the supervisor's stdout and stderr open all that while, so whatever reads them (a
pipe, `| tee`, a parent process) waited that long after the run had ended.
"""

import atexit
import contextlib
import os
import sys

from chatspace.logs import quiet_worker_environment

quiet_worker_environment()


def _leave_at_once() -> None:
    """The fork server's last step: it holds nothing that needs the teardown (its workers leave with
    os._exit too, and its supervisor is gone)."""
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    os._exit(0)


# Only in the fork server (multiprocessing starts it with this command line), never in a process that
# merely imports this module. Registered first, so it runs after every other exit handler.
if "from multiprocessing.forkserver import main" in " ".join(getattr(sys, "orig_argv", ())):
    atexit.register(_leave_at_once)
