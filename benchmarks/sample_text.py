"""Real English prose that every Python installation carries offline: standard-library docstrings.

The shipped demo dataset (scripts/make_sample_data.py), the benchmark corpus (corpus.py beside this
file) and the tests all draw their text from here, so each walks the same objects in the same fixed
order. Not part of the package: only these tools use it.
"""

from __future__ import annotations

import importlib
import inspect
import warnings
from collections.abc import Iterator

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


def walk(modules: tuple[str, ...] = MODULES) -> Iterator[tuple[str, object, str | None]]:
    """(qualified name, object, owning class's name or None): each module, its public classes and
    functions, then each class's public methods and properties, in a fixed order."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for mod_name in modules:
            try:
                mod = importlib.import_module(mod_name)
            except ImportError:
                continue
            yield mod_name, mod, None
            for name, obj in sorted(vars(mod).items()):
                if name.startswith("_") or getattr(obj, "__module__", None) != mod.__name__:
                    continue
                if not (inspect.isclass(obj) or inspect.isfunction(obj) or inspect.isbuiltin(obj)):
                    continue
                qual = f"{mod_name}.{name}"
                yield qual, obj, None
                if inspect.isclass(obj):
                    for attr, member in sorted(vars(obj).items()):
                        if not attr.startswith("_") and (callable(member) or isinstance(member, property)):
                            yield f"{qual}.{attr}", member, qual


def docstring(obj: object, min_chars: int = 12) -> str | None:
    doc = inspect.getdoc(obj)
    return doc.strip() if doc and len(doc.strip()) >= min_chars else None


def unique_docstrings(min_chars: int = 12, modules: tuple[str, ...] = MODULES) -> list[tuple[str, str]]:
    """(qualified name, docstring), the first occurrence of each text only."""
    seen: set[str] = set()
    out: list[tuple[str, str]] = []
    for name, obj, _owner in walk(modules):
        doc = docstring(obj, min_chars)
        if doc and doc not in seen:
            seen.add(doc)
            out.append((name, doc))
    return out
