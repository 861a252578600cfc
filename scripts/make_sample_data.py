#!/usr/bin/env python3
"""Generate chatspace/resources/demo.jsonl: the small dataset `make demo` embeds.

The text is real English documentation prose that every Python installation carries offline: the
docstrings of standard-library modules, classes and functions (via `inspect.getdoc`). Lengths are
long-tailed, like real chat data: many one-line summaries, some paragraphs, a few pages.

Each good row is

    {"id": "demo-0001", "source": "json.dumps", "text": "<docstring>",
     "conversation": [{"role": "user", "content": "What does `json.dumps` do?"},
                      {"role": "assistant", "content": "<docstring>"}]}

so the demo can embed either `--text-field text` or `--text-field conversation --extract
first-assistant`. A handful of deliberately bad rows (null text, empty string, a number, a missing
field, a conversation with no assistant turn, ...) sit at fixed positions so the demo shows skip counting.

The output is deterministic for a given Python version (docstrings change between versions; the file
records the version it was made with in no row, so regenerate with the same minor version to compare):

    .venv/bin/python scripts/make_sample_data.py            # writes chatspace/resources/demo.jsonl
    .venv/bin/python scripts/make_sample_data.py --check    # exit 1 if the file would change
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
OUT = REPO / "chatspace" / "resources" / "demo.jsonl"
sys.path.insert(0, str(REPO / "benchmarks"))  # the text source the benchmarks and tests share

from sample_text import unique_docstrings  # noqa: E402

# A smaller set of well-known modules than the benchmark corpus uses.
DEMO_MODULES = (
    "argparse", "array", "ast", "asyncio", "base64", "bisect", "calendar", "collections", "contextlib",
    "copy", "csv", "dataclasses", "datetime", "decimal", "difflib", "enum", "fnmatch", "fractions",
    "functools", "glob", "gzip", "hashlib", "heapq", "html", "http.client", "io", "ipaddress",
    "itertools", "json", "logging", "math", "mimetypes", "operator", "os", "pathlib", "pickle",
    "pprint", "queue", "random", "re", "secrets", "shlex", "shutil", "socket", "sqlite3", "statistics",
    "string", "struct", "subprocess", "tarfile", "tempfile", "textwrap", "threading", "time", "timeit",
    "tomllib", "traceback", "typing", "unittest", "urllib.parse", "uuid", "warnings", "weakref",
    "zipfile", "zlib",
)  # fmt: skip

GOOD_ROWS = 294
MAX_CHARS = 1600  # longer docstrings are cut at a paragraph boundary (keeps the file small)
MIN_CHARS = 12
SIZE_LIMIT = 400_000

# (position among all rows, row) - the row's "id" is filled in from the position.
BAD_ROWS = (
    (7, {"text": None, "conversation": None}),
    (41, {"text": "", "conversation": []}),
    (88, {"text": 42, "conversation": [{"role": "user", "content": "42"}]}),
    (131, {"conversation": [{"role": "user", "content": "Is this row missing its text field?"}]}),
    (
        177,
        {
            "text": "A question that was never answered.",
            "conversation": [{"role": "user", "content": "What does `this.module` do?"}],
        },
    ),
    (222, {"text": "   \n  ", "conversation": "not a conversation"}),
)


def _shorten(doc: str, limit: int = MAX_CHARS) -> str:
    if len(doc) <= limit:
        return doc
    cut = doc.rfind("\n\n", 0, limit)
    if cut < limit // 3:
        cut = doc.rfind(". ", 0, limit) + 1
    if cut <= 0:
        cut = limit
    return doc[:cut].rstrip()


def _rank(name: str) -> str:
    return hashlib.sha256(name.encode()).hexdigest()


def build_rows() -> list[dict]:
    docs = sorted(unique_docstrings(MIN_CHARS, DEMO_MODULES), key=lambda item: _rank(item[0]))[:GOOD_ROWS]
    docs.sort(key=lambda item: item[0])
    good = []
    for name, doc in docs:
        text = _shorten(doc)
        kind = "module" if "." not in name or name in DEMO_MODULES else "object"
        question = f"What is the `{name}` module for?" if kind == "module" else f"What does `{name}` do?"
        good.append(
            {
                "source": name,
                "text": text,
                "conversation": [
                    {"role": "user", "content": question},
                    {"role": "assistant", "content": text},
                ],
            }
        )
    rows: list[dict] = []
    bad = dict(BAD_ROWS)
    it = iter(good)
    total = len(good) + len(bad)
    for pos in range(total):
        row = dict(bad[pos]) if pos in bad else next(it)
        rows.append({"id": f"demo-{pos + 1:04d}", **row})
    return rows


def render(rows: list[dict]) -> str:
    return "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=OUT)
    ap.add_argument("--check", action="store_true", help="exit 1 if the file differs from what is generated")
    args = ap.parse_args(argv)
    rows = build_rows()
    body = render(rows)
    size = len(body.encode())
    if size >= SIZE_LIMIT:
        print(f"error: {size} bytes is over the {SIZE_LIMIT}-byte limit", file=sys.stderr)
        return 1
    if args.check:
        same = args.out.is_file() and args.out.read_text(encoding="utf-8") == body
        print(f"{args.out}: {'up to date' if same else 'differs'}")
        return 0 if same else 1
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(body, encoding="utf-8")
    n_bad = len(BAD_ROWS)
    print(f"wrote {args.out}: {len(rows)} rows ({len(rows) - n_bad} good, {n_bad} bad), {size:,} bytes")
    return 0


if __name__ == "__main__":
    sys.exit(main())
