"""The run's logging while it runs: the console (through the progress bar) and the run's log file under
logs/, to which the workers' records are handed too; on the way out the previous handlers come back and,
where the output root is an object store, the log is uploaded beside the run.
"""

from __future__ import annotations

import contextlib
import logging
import sys
from pathlib import Path

from chatspace.errors import describe_os_error
from chatspace.pool.progress import Progress
from chatspace.pool.scheduler import TRACEBACK_LOGGER
from chatspace.redact import RedactingFilter
from chatspace.store.layout import RunLayout

log = logging.getLogger("chatspace")


def _setup_run_logging(layout: RunLayout, run_id: str, progress: Progress):
    """Console + the run's log file under logs/; workers' records are handed to the returned sink."""
    log_path = layout.local_log_path(run_id)  # uploaded at the end when the root is an object store
    log_path.parent.mkdir(parents=True, exist_ok=True)
    fmt = logging.Formatter("%(asctime)s %(levelname)s [%(device)s] %(message)s", "%Y-%m-%d %H:%M:%S")
    file_handler = _RunLogFile(log_path)
    file_handler.setFormatter(fmt)
    file_handler.addFilter(_default_device)
    console = progress.log_handler()
    console.setFormatter(logging.Formatter("%(asctime)s [%(device)s] %(message)s", "%H:%M:%S"))
    console.addFilter(_default_device)
    console.setLevel(logging.INFO)
    for handler in (file_handler, console):
        handler.addFilter(RedactingFilter())
    tb_logger = logging.getLogger(TRACEBACK_LOGGER)
    tb_logger.propagate = False
    tb_logger.addHandler(file_handler)
    root = logging.getLogger()
    previous = root.handlers[:]
    root.handlers = [file_handler, console]
    if root.level > logging.INFO or root.level == logging.NOTSET:
        root.setLevel(logging.INFO)

    def worker_log_sink(record: logging.LogRecord) -> None:
        for handler in (file_handler, console):
            if record.levelno >= handler.level:
                handler.handle(record)

    return log_path, worker_log_sink, (file_handler, console), previous


@contextlib.contextmanager
def run_logging(final: RunLayout, layout: RunLayout, run_id: str, progress: Progress):
    """The run's log handlers while it runs (yields the workers' log sink); then the previous ones
    back, and the log uploaded where the root is an object store."""
    log_path, worker_log_sink, handlers, previous_handlers = _setup_run_logging(layout, run_id, progress)
    try:
        yield worker_log_sink
    finally:
        logging.getLogger().handlers = previous_handlers
        for h in handlers:
            logging.getLogger(TRACEBACK_LOGGER).removeHandler(h)
            h.close()
        _publish_log(final, log_path, run_id)


class _RunLogFile(logging.FileHandler):
    """The run's log file. When it cannot be written (a full disk) that is said once, in one line;
    logging's own handler prints a traceback per record instead."""

    _warned = False

    def handleError(self, record: logging.LogRecord) -> None:  # noqa: N802 - logging's name
        self._warn()

    def flush(self) -> None:
        try:
            super().flush()
        except OSError:
            self._warn()

    def close(self) -> None:
        try:
            super().close()
        except OSError:
            self._warn()
            self.stream = None

    def _warn(self) -> None:
        if not self._warned:
            self._warned = True
            error = sys.exc_info()[1]
            cause = describe_os_error(error) if isinstance(error, OSError) else str(error)
            sys.stderr.write(f"chatspace: warning: cannot write the log {self.baseFilename}: {cause}\n")


def _default_device(record: logging.LogRecord) -> bool:
    if not hasattr(record, "device"):
        record.device = "supervisor"
    return True


def _publish_log(final: RunLayout, log_path: Path, run_id: str) -> None:
    """An object-store root gets the run's log (written locally while the run went) under logs/."""
    if final.output.is_local:
        return
    try:
        final.output.upload(log_path, final.log_path(run_id))
    except Exception as e:  # noqa: BLE001 - the run's outcome stands; the log stays local
        log.warning("could not upload the run's log to %s (%s); it is in %s", final.output.url(), e, log_path)
