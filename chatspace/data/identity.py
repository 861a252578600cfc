"""What a dataset was when a run read it, so a resume never mixes rows of two versions of it.

Local files: size, modification time and a content fingerprint (sha256 of the size and the first and
last MiB, cheap on any file size) plus row counts. Hub datasets: the commit the data files were resolved
at (when the URLs carry it) plus row counts. Recorded in the manifest; `--resume` compares.
"""

from __future__ import annotations

import hashlib
import os
import re
from pathlib import Path
from typing import Any

FINGERPRINT_BLOCK = 1 << 20
_REVISION = re.compile(r"@([0-9a-f]{40})(?:/|$)")


def fingerprint(path: Path, block: int = FINGERPRINT_BLOCK) -> str:
    """sha256 over the size and the head and tail blocks of a file."""
    size = os.path.getsize(path)
    h = hashlib.sha256(str(size).encode() + b"\0")
    with open(path, "rb") as fh:
        h.update(fh.read(block))
        if size > block:
            fh.seek(max(block, size - block))
            h.update(fh.read(block))
    return h.hexdigest()


def local_identity(files: list[Path], rows: list[int]) -> dict[str, Any]:
    out = []
    for path, n in zip(files, rows, strict=True):
        st = path.stat()
        out.append(
            {
                "path": str(path.resolve()),
                "bytes": st.st_size,
                "mtime_ns": st.st_mtime_ns,
                "fingerprint": fingerprint(path),
                "rows": n,
            }
        )
    return {"kind": "local", "rows": sum(rows), "files": out}


def hub_identity(urls: list[str], rows: list[int]) -> dict[str, Any]:
    revisions = {m.group(1) for u in urls if (m := _REVISION.search(u))}
    return {
        "kind": "huggingface",
        "revision": revisions.pop() if len(revisions) == 1 else None,
        "rows": sum(rows),
        "files": [{"path": u, "rows": n} for u, n in zip(urls, rows, strict=True)],
    }


def identity_changes(before: dict[str, Any], now: dict[str, Any]) -> list[str]:
    """How the dataset differs from when it was recorded, one short phrase per difference."""
    changes = []
    if before.get("revision") != now.get("revision"):
        changes.append(f"revision {before.get('revision')} -> {now.get('revision')}")
    if before.get("rows") != now.get("rows"):
        changes.append(f"{before.get('rows')} rows -> {now.get('rows')}")
    old_files = {f["path"]: f for f in before.get("files", [])}
    new_files = {f["path"]: f for f in now.get("files", [])}
    for path in sorted(old_files.keys() - new_files.keys()):
        changes.append(f"{Path(path).name} is gone")
    for path in sorted(new_files.keys() - old_files.keys()):
        changes.append(f"{Path(path).name} is new")
    for path in sorted(old_files.keys() & new_files.keys()):
        a, b = old_files[path], new_files[path]
        name = Path(path).name
        if a.get("bytes") != b.get("bytes"):
            changes.append(f"{name}: {a.get('bytes')} bytes -> {b.get('bytes')}")
        elif a.get("fingerprint") != b.get("fingerprint"):
            changes.append(f"{name}: content changed")
        elif a.get("mtime_ns") != b.get("mtime_ns"):
            changes.append(f"{name}: modified since")
        elif a.get("rows") != b.get("rows"):
            changes.append(f"{name}: {a.get('rows')} rows -> {b.get('rows')}")
    return changes


def identity_digest(identity: dict[str, Any] | None) -> str | None:
    """A short stable digest of an identity, carried by every unit record."""
    if not identity:
        return None
    import orjson

    return hashlib.sha256(orjson.dumps(identity, option=orjson.OPT_SORT_KEYS)).hexdigest()[:16]
