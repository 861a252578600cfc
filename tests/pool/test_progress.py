"""Progress that tells the truth: rates over the recent window of encoding (model loading does not
drag them down), an ETA, skipped rows, and plain progress lines when stderr is not a terminal."""

from __future__ import annotations

import re

import numpy as np
import pytest

import chatspace.pool.progress as progress_module
from chatspace.encoders.base import CHUNK_ROWS
from chatspace.encoders.batching import Batch
from chatspace.pool.progress import Progress
from chatspace.pool.row_reports import SEND_EVERY_S, RowReports
from tests.helpers import real_texts, run_cli, write_jsonl

LINE = re.compile(
    r"progress: ([\d,]+)/([\d,]+) rows \(([\d.]+)%\), ([\d.,]+) rows/s, ([\d,]+) tok/s, ETA (\S+), ([\d,]+) skipped"
)


class _Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_rates_leave_out_model_loading_and_follow_the_recent_window(monkeypatch):
    clock = _Clock()
    monkeypatch.setattr(progress_module.time, "monotonic", clock)
    p = Progress(enabled=False)
    p.start(total=1000, workers=1)
    clock.now += 119.0  # two minutes of model loading: no rows
    p.worker_ready(1, 1)
    clock.now += 1.0
    for _ in range(11):  # then 10 rows (200 tokens) a second
        p.update(10, 200)
        clock.now += 1.0
    rows_per_s, tokens_per_s = p.rates()
    assert rows_per_s == pytest.approx(110 / 11) and tokens_per_s == pytest.approx(2200 / 11)
    p.skipped(3)
    match = LINE.search(p.status())
    assert match and match.group(1) == "110" and match.group(2) == "1,000" and match.group(7) == "3"
    assert match.group(6) == "1m29s"  # 890 rows left at 10 rows/s
    for _ in range(60):  # it slows down to 1 row a second: the window forgets the fast start
        p.update(1, 20)
        clock.now += 1.0
    assert p.rates()[0] == pytest.approx(1.0, rel=0.05)


def test_rows_of_a_lost_unit_are_taken_back_without_changing_the_rates(monkeypatch):
    clock = _Clock()
    monkeypatch.setattr(progress_module.time, "monotonic", clock)
    p = Progress(enabled=False)
    p.start(total=100, workers=2)
    p.worker_ready(1, 1)
    for _ in range(10):  # 10 rows (50 tokens) a second
        clock.now += 1.0
        p.update(10, 50)
    before = p.rates()
    p.take_back(30, 150)  # a lost worker's unwritten unit: redone later
    assert p.rates() == before
    assert LINE.search(p.status()).group(1) == "70"
    for _ in range(3):  # the unit is redone: the bar ends at its total, not past it
        clock.now += 1.0
        p.update(10, 50)
    assert LINE.search(p.status()).groups()[:3] == ("100", "100", "100.0")


def test_a_workers_reports_follow_its_batches_and_add_up_to_each_unit():
    clock = _Clock()
    sent: list[tuple[int, int, int]] = []
    reports = RowReports(lambda unit, rows, tokens: sent.append((unit, rows, tokens)), clock=clock)
    reports.submitted("a", unit=7)
    reports.submitted("b", unit=7)
    reports.rows_back("warm-up", 32, 900)  # not a chunk of this worker's: not counted
    reports.rows_back("a", 40, 400)
    assert sent == []  # gathered until SEND_EVERY_S has passed ...
    clock.now += SEND_EVERY_S
    reports.rows_back("a", 60, 600)
    assert sent == [(7, 100, 1000)]  # ... then sent, so the count moves before the chunk is done
    reports.rows_back("b", 10, 50)
    # Chunk a: 1,024 rows (4 of them skipped by extraction) and 9,000 tokens in all.
    reports.chunk_done("a", 7, rows=1024, tokens=9000)
    reports.chunk_done("b", 7, rows=200, tokens=700)
    reports.unit_without_rows(8, skipped=5)
    assert sent[1:] == [(7, 924 + 10, 8000 + 50), (7, 190, 650), (8, 5, 0)]
    assert sum(r for u, r, _ in sent if u == 7) == 1224 and sum(t for u, _, t in sent if u == 7) == 9700


def test_a_batch_says_how_many_rows_and_tokens_it_holds_of_each_chunk():
    batch = Batch(np.array([3, 5, 3, 3]), np.array([0, 0, 1, 2]), np.array([10, 7, 12, 4]), 12, 16)
    assert batch.rows_per_chunk() == {3: (3, 26), 5: (1, 7)}


@pytest.mark.slow
def test_a_piped_run_prints_progress_lines_with_an_eta(tmp_path):
    """Rows count as the encoder's batches come back, not per 1,024-row chunk: a 2,500-row CPU run
    shows movement (and an ETA) well before its first chunk is done."""
    texts = [t[:64] for t in real_texts(2500)]  # short rows: the count of rows is what is tested
    rows = [{"id": f"r{i}", "text": t if i % 50 else ""} for i, t in enumerate(texts)]
    data = write_jsonl(tmp_path / "notes.jsonl", rows)
    proc = run_cli(
        "embed-hf", "--dataset", str(data), "--id-field", "id", "--devices", "cpu",
        "--output-root", str(tmp_path / "out"), env={"CHATSPACE_PROGRESS_EVERY": "0.2"}, timeout=280,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    found = [LINE.search(line) for line in proc.stderr.splitlines()]
    found = [m for m in found if m]
    assert found, proc.stderr  # stderr is a pipe here, as under nohup or a batch scheduler
    done = [int(m.group(1).replace(",", "")) for m in found]
    assert done == sorted(done) and all(0 < d <= 2500 for d in done)
    assert all(m.group(2) == "2,500" for m in found)
    with_eta = [m for m in found if m.group(6) != "?"]
    assert len({int(m.group(1).replace(",", "")) for m in with_eta}) >= 3, proc.stderr
    assert done[0] < CHUNK_ROWS, proc.stderr  # counted before the first chunk was done
