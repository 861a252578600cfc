"""A worker's progress reports: rows and tokens counted as the encoder's batches come back, not as whole
1,024-row chunks finish, so a slow device shows movement within seconds of its first batch.

Batches can finish hundreds of times a second on a GPU, and a report to a Ray supervisor is a remote
call, so the counts are gathered per unit and sent at most every SEND_EVERY_S seconds; a chunk's last
rows go out at once, with whatever of its unit was still unsent. The sum of a unit's reports is exactly
its rows (embedded or skipped) and its tokens, as the supervisor's take-back of a lost unit expects.
"""

from __future__ import annotations

import time
from collections.abc import Callable

SEND_EVERY_S = 0.5


class RowReports:
    def __init__(self, send: Callable[[int, int, int], None], clock: Callable[[], float] = time.monotonic):
        self._send = send  # (unit, rows, tokens)
        self._clock = clock
        self._unit_of: dict[object, int] = {}  # chunk key -> unit
        self._reported: dict[object, tuple[int, int]] = {}  # chunk key -> (rows, tokens) counted so far
        self._unsent: dict[int, tuple[int, int]] = {}  # unit -> (rows, tokens) counted, not yet sent
        self._last_send = clock()

    def submitted(self, key: object, unit: int) -> None:
        self._unit_of[key] = unit

    def rows_back(self, key: object, rows: int, tokens: int) -> None:
        """The encoder embedded `rows` rows (`tokens` tokens) of chunk `key`; its other chunks are ignored
        (warm-up, one-off encode calls)."""
        unit = self._unit_of.get(key)
        if unit is None:
            return
        done_rows, done_tokens = self._reported.get(key, (0, 0))
        self._reported[key] = (done_rows + rows, done_tokens + tokens)
        self._add(unit, rows, tokens)
        if self._clock() - self._last_send >= SEND_EVERY_S:
            self.flush()

    def chunk_done(self, key: object, unit: int, rows: int, tokens: int) -> None:
        """All of chunk `key` is back: `rows` and `tokens` are its totals (skipped rows included); what the
        batches did not count yet is sent now, with the unit's unsent counts."""
        self._unit_of.pop(key, None)
        done_rows, done_tokens = self._reported.pop(key, (0, 0))
        self._add(unit, rows - done_rows, tokens - done_tokens)
        self._send_unit(unit)

    def unit_without_rows(self, unit: int, skipped: int) -> None:
        """A unit none of whose rows could be embedded: its skipped rows count at once."""
        self._add(unit, skipped, 0)
        self._send_unit(unit)

    def flush(self) -> None:
        for unit in list(self._unsent):
            self._send_unit(unit)
        self._last_send = self._clock()

    def _add(self, unit: int, rows: int, tokens: int) -> None:
        rows0, tokens0 = self._unsent.get(unit, (0, 0))
        self._unsent[unit] = (rows0 + rows, tokens0 + tokens)

    def _send_unit(self, unit: int) -> None:
        rows, tokens = self._unsent.pop(unit, (0, 0))
        self._send(unit, rows, tokens)
