"""The fixed output layout under one root, with names made safe so nothing lands outside it.

embeddings/{model}/{dataset}/{split}/shard-NNNNN.parquet
indexes/{model}/{dataset}/{split}/manifest.json   (+ units/unit-NNNNN.json completion records)
datasets/  cache/  logs/
"""

from __future__ import annotations

import hashlib
import os
import re
from dataclasses import dataclass
from pathlib import Path

from chatspace.errors import UsageError

_UNSAFE = re.compile(r"[^A-Za-z0-9._=+-]+")


def slug(name: str, max_len: int = 120) -> str:
    """A single safe path component: `org/name` becomes `org__name`; no separators, no dot-only names."""
    s = _UNSAFE.sub("_", name.replace("/", "__").replace("\\", "__")).strip("_")
    s = s.lstrip(".")
    if not s or set(s) <= {".", "_"}:
        s = "_" + hashlib.sha256(name.encode()).hexdigest()[:8]
    if len(s) > max_len:
        s = s[: max_len - 9] + "-" + hashlib.sha256(name.encode()).hexdigest()[:8]
    return s


def model_label(model: str) -> str:
    """The model part of output paths: a hub id as is, a local path by its folder name."""
    p = Path(model).expanduser()
    if model.startswith((".", "/", "~")) or (p.exists() and p.is_dir()):
        return p.resolve().name
    return model


@dataclass(frozen=True)
class RunLayout:
    root: Path
    model: str  # label (hub id or folder name)
    dataset: str  # label (hub id or file stem), subset joined in
    split: str

    @classmethod
    def for_run(
        cls, root: str | Path, model: str, dataset_label: str, subset: str | None, split: str
    ) -> RunLayout:
        dataset = dataset_label if not subset else f"{dataset_label}__{subset}"
        return cls(Path(root).expanduser().resolve(), model_label(model), dataset, split)

    @classmethod
    def for_config(cls, cfg, root: str | Path | None = None) -> RunLayout:
        """The layout a RunConfig writes to (under `root`, default cfg.output_root)."""
        from chatspace.data.sources import dataset_label, is_local

        label = dataset_label(cfg.dataset, is_local(cfg.dataset, cfg.source))
        return cls.for_run(root or cfg.output_root, cfg.model, label, cfg.subset, cfg.split)

    def _parts(self) -> tuple[str, str, str]:
        return slug(self.model), slug(self.dataset), slug(self.split)

    @property
    def embeddings_dir(self) -> Path:
        return self.root.joinpath("embeddings", *self._parts())

    @property
    def index_dir(self) -> Path:
        return self.root.joinpath("indexes", *self._parts())

    @property
    def manifest_path(self) -> Path:
        return self.index_dir / "manifest.json"

    @property
    def units_dir(self) -> Path:
        return self.index_dir / "units"

    @property
    def logs_dir(self) -> Path:
        return self.root / "logs"

    @property
    def cache_dir(self) -> Path:
        return self.root / "cache"

    @property
    def datasets_dir(self) -> Path:
        return self.root / "datasets"

    def shard_path(self, unit: int) -> Path:
        return self.embeddings_dir / f"shard-{unit:05d}.parquet"

    def unit_record_path(self, unit: int) -> Path:
        return self.units_dir / f"unit-{unit:05d}.json"

    def relative(self, path: Path) -> str:
        return path.relative_to(self.root).as_posix()


def ensure_writable_root(root: str | Path) -> Path:
    """Create the output root and check it can be written; one clear error if not."""
    p = Path(root).expanduser()
    try:
        p.mkdir(parents=True, exist_ok=True)
        probe = p / f".chatspace-write-test-{os.getpid()}"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as e:
        raise UsageError(
            f"output root {p} is not writable ({e.strerror or e}); set --output-root or $CHATSPACE_ROOT"
        ) from None
    return p.resolve()
