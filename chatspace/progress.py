"""The supervisor's one progress bar (rows over all workers, tokens/s, ETA) and a log handler that
prints above it instead of through it. With --no-progress: plain log lines only."""

from __future__ import annotations

import logging
import sys
import time


class _TqdmHandler(logging.Handler):
    def emit(self, record: logging.LogRecord) -> None:
        from tqdm import tqdm

        try:
            tqdm.write(self.format(record), file=sys.stderr)
        except Exception:  # noqa: BLE001
            self.handleError(record)


class Progress:
    def __init__(self, enabled: bool):
        # A bar in a non-terminal (CI logs, files) is noise: plain status lines there instead.
        self.enabled = enabled and sys.stderr.isatty()
        self.status_every = 30.0 if self.enabled else 15.0
        self._bar = None
        self._tokens = 0
        self._t0 = time.monotonic()

    def log_handler(self) -> logging.Handler:
        return _TqdmHandler() if self.enabled else logging.StreamHandler(sys.stderr)

    def start(self, total: int, initial: int = 0) -> None:
        self._t0 = time.monotonic()
        if not self.enabled:
            return
        from tqdm import tqdm

        self._bar = tqdm(
            total=total,
            initial=initial,
            unit="row",
            dynamic_ncols=True,
            smoothing=0.05,
            file=sys.stderr,
            desc="embedding",
        )

    def update(self, rows: int, tokens: int) -> None:
        self._tokens += tokens
        if self._bar is None:
            return
        elapsed = max(time.monotonic() - self._t0, 1e-9)
        self._bar.set_postfix_str(f"{self._tokens / elapsed:,.0f} tok/s", refresh=False)
        self._bar.update(rows)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None
