"""The record of `make gpu-check`: one JSON-lines file that every step appends to, and RESULTS-gpu.md,
rendered from it.

A measurement is written the moment it exists, as one line in one write() on a file opened for
appending, then fsynced: a step killed a moment later keeps it. Lines that do not parse (a write cut
short by a kill) are counted and otherwise ignored when reading back.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path


class Recorder:
    def __init__(self, path: Path, step: str):
        self.path = Path(path)
        self.step = step

    def write(self, key: str, value, *, step: str | None = None, kind: str = "measure") -> None:
        line = {
            "t": time.strftime("%H:%M:%S", time.gmtime()),
            "step": step or self.step,
            "kind": kind,
            "key": key,
            "value": value,
        }
        data = (json.dumps(line, default=str) + "\n").encode()
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, data)
            os.fsync(fd)
        finally:
            os.close(fd)

    def ensure_line_end(self) -> None:
        """After a step was killed: end a half-written line, so the next record starts a line of its own."""
        try:
            with open(self.path, "rb") as fh:
                fh.seek(0, os.SEEK_END)
                if fh.tell() == 0:
                    return
                fh.seek(-1, os.SEEK_END)
                last = fh.read(1)
        except OSError:
            return
        if last != b"\n":
            with open(self.path, "ab") as fh:
                fh.write(b"\n")


def read_records(path: Path) -> tuple[list[dict], int]:
    """(records, lines that did not parse)."""
    records, bad = [], 0
    with open(path, encoding="utf-8", errors="replace") as fh:
        for line in fh:
            if not line.strip():
                continue
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError:
                bad += 1
    return records, bad


def _headline(by_step: dict) -> list[str]:
    measures = {r["key"]: r["value"] for r in by_step.get("headline", []) if r["kind"] == "measure"}
    ratio = measures.get("ratio")
    if not ratio:
        return []
    return [
        f"**Headline:** `chatspace embed-hf` at {ratio['chatspace_rows_per_s']:,.0f} rows/s against "
        f"SentenceTransformer.encode at {ratio['plain_rows_per_s']:,.0f} rows/s on the same "
        f"{ratio['rows']:,} rows ({ratio['dtype']}, whole processes): **{ratio['ratio']:.2f}x** "
        f"(encode alone: {ratio.get('encode_ratio') or 0:.2f}x).",
        "",
    ]


def render_results(read: tuple[list[dict], int], path: Path) -> None:
    """Rewrite RESULTS-gpu.md from the records (written to a temporary file, then renamed into place)."""
    records, bad = read
    check = [r for r in records if r["step"] == "check"]
    steps: dict[str, list[dict]] = {}
    for r in records:
        if r["step"] != "check":
            steps.setdefault(r["step"], []).append(r)
    head = check[0]["value"] if check else {}
    lines = [
        "# GPU check",
        "",
        f"`make gpu-check` ({head.get('mode', '?')}), started {head.get('started', '?')}, budget "
        f"{head.get('budget_s', '?')}s. Every measurement is in gpu-check/measurements.jsonl, every step's "
        "output in gpu-check/steps.log.",
        "",
    ]
    finished = [r["value"] for r in check if "finished_s" in r["value"]]
    if finished:
        lines += [
            f"Finished in {finished[-1]['finished_s']}s; failed: {', '.join(finished[-1]['failed']) or 'none'}.",
            "",
        ]
    else:
        lines += ["The check has not finished (it is running, or it was stopped).", ""]
    if bad:
        lines += [f"{bad} line(s) of the record could not be read (a write cut short) and are left out.", ""]
    lines += _headline(steps)
    lines += ["| step | status | seconds | measurements |", "|---|---|---|---|"]
    for name, recs in steps.items():
        end = next((r["value"] for r in recs if r["kind"] == "end"), None)
        status = end["status"] if end else "running (or stopped while running)"
        seconds = end.get("seconds", "") if end else ""
        count = sum(r["kind"] == "measure" for r in recs)
        lines.append(f"| {name} | {status} | {seconds} | {count} |")
    lines.append("")
    for name, recs in steps.items():
        end = next((r["value"] for r in recs if r["kind"] == "end"), None)
        lines += [f"## {name}", ""]
        if end:
            summary = {k: v for k, v in end.items() if k != "log_tail"}
            lines += [f"Status: **{end['status']}** {json.dumps(summary, default=str)}", ""]
        measures = {r["key"]: r["value"] for r in recs if r["kind"] == "measure"}
        if measures:
            lines += ["```json", json.dumps(measures, indent=2, default=str), "```", ""]
        if end and end["status"] != "ok" and end.get("log_tail"):
            lines += ["The end of its output:", "", "```", *end["log_tail"], "```", ""]
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text("\n".join(lines))
    os.replace(tmp, path)
