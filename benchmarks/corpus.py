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
import importlib
import inspect
import json
import sys
import warnings
from pathlib import Path

CACHE_DIR = Path(__file__).resolve().parent / ".cache"
VERSION = 1  # bump when the corpus recipe changes

# Import-safe standard-library modules: nothing here opens windows, browsers or sockets on import.
MODULES = (
    "abc", "argparse", "array", "ast", "asyncio", "base64", "binascii", "bisect", "bz2", "calendar",
    "cmath", "cmd", "code", "codecs", "codeop", "collections", "collections.abc", "colorsys",
    "concurrent.futures", "configparser", "contextlib", "contextvars", "copy", "copyreg", "cProfile",
    "csv", "ctypes", "dataclasses", "datetime", "dbm", "decimal", "difflib", "dis", "doctest",
    "email.message", "email.utils", "enum", "errno", "filecmp", "fileinput", "fnmatch", "fractions",
    "ftplib", "functools", "getopt", "getpass", "gettext", "glob", "graphlib", "gzip", "hashlib", "heapq",
    "hmac", "html", "html.parser", "http.client", "http.cookies", "http.server", "imaplib", "importlib",
    "inspect", "io", "ipaddress", "itertools", "json", "json.decoder", "keyword", "linecache", "locale",
    "logging", "logging.handlers", "lzma", "mailbox", "math", "mimetypes", "mmap", "modulefinder",
    "multiprocessing", "netrc", "numbers", "operator", "optparse", "os", "pathlib", "pickle", "pkgutil",
    "platform", "plistlib", "poplib", "pprint", "pstats", "pydoc", "queue", "quopri", "random", "re",
    "reprlib", "rlcompleter", "runpy", "sched", "secrets", "select", "selectors", "shelve", "shlex",
    "shutil", "signal", "site", "smtplib", "socket", "socketserver", "sqlite3", "ssl", "stat",
    "statistics", "string", "struct", "subprocess", "symtable", "sysconfig", "tabnanny", "tarfile",
    "tempfile", "textwrap", "threading", "time", "timeit", "tokenize", "tomllib", "trace", "traceback",
    "types", "typing", "unicodedata", "unittest", "urllib.parse", "urllib.request", "uuid", "warnings",
    "wave", "weakref", "wsgiref.simple_server", "xml.dom.minidom", "xml.etree.ElementTree",
    "xmlrpc.client", "zipapp", "zipfile", "zipimport", "zlib", "zoneinfo",
)  # fmt: skip

MIN_CHARS = 12


def _collect() -> list[tuple[str, str]]:
    """(name, text) rows: unique docstrings plus class pages, in a fixed hash order."""
    seen: set[str] = set()
    rows: list[tuple[str, str]] = []

    def doc_of(obj: object) -> str | None:
        doc = inspect.getdoc(obj)
        return doc.strip() if doc and len(doc.strip()) >= MIN_CHARS else None

    def add(name: str, text: str | None) -> None:
        if text and text not in seen:
            seen.add(text)
            rows.append((name, text))

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for mod_name in MODULES:
            try:
                mod = importlib.import_module(mod_name)
            except ImportError:
                continue
            add(mod_name, doc_of(mod))
            for name, obj in sorted(vars(mod).items()):
                if name.startswith("_") or getattr(obj, "__module__", None) != mod.__name__:
                    continue
                if not (inspect.isclass(obj) or inspect.isfunction(obj) or inspect.isbuiltin(obj)):
                    continue
                qual = f"{mod_name}.{name}"
                add(qual, doc_of(obj))
                if not inspect.isclass(obj):
                    continue
                page = [f"class {qual}\n\n{doc_of(obj) or ''}".rstrip()]
                for attr, member in sorted(vars(obj).items()):
                    if attr.startswith("_") or not (callable(member) or isinstance(member, property)):
                        continue
                    mdoc = doc_of(member)
                    add(f"{qual}.{attr}", mdoc)
                    if mdoc:
                        page.append(f"{attr}\n    {mdoc}")
                if len(page) >= 3:
                    add(f"{qual}#page", "\n\n".join(page))
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
