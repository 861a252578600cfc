"""A deterministic real-text benchmark corpus with a long-tailed length distribution.

The text is English documentation prose that every Python installation carries offline: the docstrings
of standard-library modules, classes, functions and methods (`inspect.getdoc`). Two kinds of rows:

* one docstring per row (most rows: one-line summaries to a few paragraphs), and
* "pages": a class's docstring followed by its methods' docstrings, the way a reference page reads
  (a few hundred to several thousand tokens; these hit the model's truncation limit, like long chats).

Lengths are long-tailed (median ~30 tokens, 90th percentile ~200, a tail far past 512). Rows are in a
fixed pseudo-random order (a hash of each row's name), so `--rows N` takes the same N rows every time on
the same Python version. If N exceeds the unique texts available, rows repeat (with new ids).

The corpus is written once as JSONL ({"id", "text"}) under benchmarks/.cache/ (git-ignored by its own
.gitignore) and reused.
"""

from __future__ import annotations

import hashlib
import inspect
import json
import sys
from pathlib import Path

from sample_text import MODULES, docstring, walk

CACHE_DIR = Path(__file__).resolve().parent / ".cache"
VERSION = 1  # bump when the corpus recipe changes


MIN_CHARS = 12


def _collect() -> list[tuple[str, str]]:
    """(name, text) rows: unique docstrings plus class pages, in a fixed hash order."""
    seen: set[str] = set()
    rows: list[tuple[str, str]] = []
    page: list[str] = []
    page_of = ""

    def add(name: str, text: str | None) -> None:
        if text and text not in seen:
            seen.add(text)
            rows.append((name, text))

    def flush_page() -> None:
        if len(page) >= 3:
            add(f"{page_of}#page", "\n\n".join(page))
        page.clear()

    for name, obj, owner in walk(MODULES):
        doc = docstring(obj, MIN_CHARS)
        if owner is None:
            flush_page()
            add(name, doc)
            if inspect.isclass(obj):
                page_of = name
                page.append(f"class {name}\n\n{doc or ''}".rstrip())
            continue
        add(name, doc)
        if doc:
            page.append(f"{name.rsplit('.', 1)[1]}\n    {doc}")
    flush_page()
    rows.sort(key=lambda r: hashlib.sha256(r[0].encode()).hexdigest())
    return rows


def corpus_path(rows: int) -> Path:
    v = sys.version_info
    return CACHE_DIR / f"corpus-v{VERSION}-py{v.major}{v.minor}-{rows}.jsonl"


def build_corpus(rows: int, path: Path | None = None) -> Path:
    """Write (or reuse) the first `rows` rows of the corpus as JSONL; returns its path."""
    path = path or corpus_path(rows)
    if path.is_file():
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    ignore = CACHE_DIR / ".gitignore"
    if path.parent == CACHE_DIR and not ignore.exists():
        ignore.write_text("*\n")
    pool = _collect()
    tmp = path.with_suffix(".tmp")
    with open(tmp, "w", encoding="utf-8") as fh:
        for i in range(rows):
            name, text = pool[i % len(pool)]
            rep = i // len(pool)
            rid = f"{name}~{rep}" if rep else name
            fh.write(json.dumps({"id": rid, "text": text}, ensure_ascii=False) + "\n")
    tmp.replace(path)
    return path


def read_corpus(path: Path) -> tuple[list[str], list[str]]:
    ids, texts = [], []
    with open(path, encoding="utf-8") as fh:
        for line in fh:
            row = json.loads(line)
            ids.append(row["id"])
            texts.append(row["text"])
    return ids, texts


def unique_rows_available() -> int:
    return len(_collect())


if __name__ == "__main__":
    import argparse

    ap = argparse.ArgumentParser(description="write the benchmark corpus and print its length profile")
    ap.add_argument("--rows", type=int, default=3000)
    args = ap.parse_args()
    p = build_corpus(args.rows)
    _, texts = read_corpus(p)
    lengths = sorted(len(t) for t in texts)
    q = {f"p{k}": lengths[min(len(lengths) - 1, len(lengths) * k // 100)] for k in (10, 50, 90, 99)}
    print(
        f"{p}: {len(texts)} rows ({unique_rows_available()} unique available); chars {q}, max {lengths[-1]}"
    )
