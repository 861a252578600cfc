"""The supervisor's progress: one bar on a terminal, plain lines everywhere else (piped, nohup, Slurm or
Kubernetes logs), and a log handler that prints above the bar instead of through it.

Rates are measured over the last RATE_WINDOW_S seconds of encoding, not from the start: model loading
and warm-up would otherwise drag rows/s and tok/s down for the whole run. Until the first worker is
ready the bar says it is loading the model.
"""

from __future__ import annotations

import logging
import os
import sys
import time
from collections import deque

log = logging.getLogger("chatspace")

RATE_WINDOW_S = 30.0
# Samples in the window are kept at least this far apart (a newer one replaces the last): hundreds of
# workers report thousands of times a second, and the window (which a take-back rewrites) stays small.
WINDOW_STEP_S = 0.25
# Without a terminal, a progress line this often (seconds); CHATSPACE_PROGRESS_EVERY overrides it.
PLAIN_EVERY_S = 10.0


class _TqdmHandler(logging.Handler):
    def emit(self, record: logging.LogRecord) -> None:
        from tqdm import tqdm

        try:
            tqdm.write(self.format(record), file=sys.stderr)
        except Exception:  # noqa: BLE001
            self.handleError(record)


def _duration(seconds: float) -> str:
    seconds = int(round(seconds))
    if seconds >= 3600:
        return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"
    if seconds >= 60:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds}s"


def _plain_every() -> float:
    raw = os.environ.get("CHATSPACE_PROGRESS_EVERY", "")
    try:
        value = float(raw)
    except ValueError:
        return PLAIN_EVERY_S
    return value if value > 0 else PLAIN_EVERY_S


class Progress:
    def __init__(self, enabled: bool):
        # A bar in a non-terminal (CI logs, files) is noise: plain progress lines there instead.
        self.enabled = enabled and sys.stderr.isatty()
        self.plain = not self.enabled  # --no-progress included: lines, no bar
        self.status_every = 30.0 if self.enabled else 15.0
        self.plain_every = _plain_every()
        self._bar = None
        self._total = 0
        self._done = 0
        self._tokens = 0
        self._skipped = 0
        self._ready = 0
        self._workers = 0
        self._window: deque[tuple[float, int, int]] = deque()
        self._last_line = 0.0

    def log_handler(self) -> logging.Handler:
        return _TqdmHandler() if self.enabled else logging.StreamHandler(sys.stderr)

    def start(self, total: int, initial: int = 0, workers: int = 0) -> None:
        self._total, self._done, self._workers = total, initial, workers
        self._last_line = time.monotonic()
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
            desc="loading model",
            bar_format="{desc}: {percentage:3.0f}%|{bar}| {n_fmt}/{total_fmt} [{elapsed}{postfix}]",
        )

    def worker_ready(self, ready: int, workers: int) -> None:
        """A worker loaded and warmed up its model: the bar says how many are encoding."""
        self._ready, self._workers = ready, workers
        if not self._window:  # encoding starts now: the rates' clock too
            self._window.append((time.monotonic(), self._done, self._tokens))
        if self._bar is not None:
            self._bar.set_description_str(
                "embedding" if ready >= workers else f"embedding ({ready}/{workers} workers ready)",
                refresh=True,
            )

    def skipped(self, rows: int) -> None:
        self._skipped += rows

    def rates(self, now: float | None = None) -> tuple[float | None, float | None]:
        """(rows/s, tokens/s) over the recent window, or None before there are two samples."""
        if len(self._window) < 2:
            return None, None
        t0, rows0, tokens0 = self._window[0]
        t1, rows1, tokens1 = self._window[-1]
        if t1 - t0 <= 0:
            return None, None
        return (rows1 - rows0) / (t1 - t0), (tokens1 - tokens0) / (t1 - t0)

    def _eta(self, rows_per_s: float | None) -> str:
        left = max(self._total - self._done, 0)
        if not left:
            return "0s"
        return _duration(left / rows_per_s) if rows_per_s else "?"

    def status(self) -> str:
        """rows done/total, %, rows/s, tok/s, ETA, skipped: the plain progress line."""
        rows_per_s, tokens_per_s = self.rates()
        pct = 100.0 * self._done / self._total if self._total else 100.0
        rate = (
            f"{rows_per_s:,.1f} rows/s, {tokens_per_s:,.0f} tok/s" if rows_per_s is not None else "-- rows/s"
        )
        return (
            f"progress: {self._done:,}/{self._total:,} rows ({pct:.1f}%), {rate}, "
            f"ETA {self._eta(rows_per_s)}, {self._skipped:,} skipped"
        )

    def update(self, rows: int, tokens: int) -> None:
        now = time.monotonic()
        if not self._window:
            self._window.append((now, self._done, self._tokens))
        self._done += rows
        self._tokens += tokens
        sample = (now, self._done, self._tokens)
        if len(self._window) >= 2 and now - self._window[-2][0] < WINDOW_STEP_S:
            self._window[-1] = sample
        else:
            self._window.append(sample)
        while len(self._window) > 2 and now - self._window[1][0] >= RATE_WINDOW_S:
            self._window.popleft()
        if self._bar is not None:
            rows_per_s, tokens_per_s = self.rates()
            postfix = f"{rows_per_s:,.1f} rows/s, {tokens_per_s:,.0f} tok/s, ETA {self._eta(rows_per_s)}"
            if self._skipped:
                postfix += f", {self._skipped:,} skipped"
            self._bar.set_postfix_str(postfix if rows_per_s is not None else "", refresh=False)
            self._bar.update(rows)
        elif self.plain and now - self._last_line >= self.plain_every:
            self._last_line = now
            log.info("%s", self.status())

    def take_back(self, rows: int, tokens: int) -> None:
        """Rows of a unit whose worker was lost before writing it: they will be embedded and counted again,
        so the bar never passes its total. The rates' window moves down alike, so rates stay as measured."""
        if not rows and not tokens:
            return
        self._done -= rows
        self._tokens -= tokens
        self._window = deque((t, done - rows, toks - tokens) for t, done, toks in self._window)
        if self._bar is not None:
            self._bar.n = max(self._bar.n - rows, 0)
            self._bar.refresh()

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None
