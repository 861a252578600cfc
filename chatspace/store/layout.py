"""The fixed output layout under one root, with names made safe so nothing lands outside it.

embeddings/{model}/{dataset}/{run folder}/shard-NNNNN.parquet
indexes/{model}/{dataset}/{run folder}/manifest.json   (+ units/unit-NNNNN.json completion records)
datasets/  cache/  logs/
.staging/{model}--{dataset}--{run folder}/{embeddings,index}/   an --overwrite being built, out of readers' way

The run folder is the split (`train`; `train.start..1000` for the slice `train[:1000]`), followed by
`__{text field}[__{extraction}]` when the text is not the plain `text` field, or `__{--run-name}`:
several extractions of one dataset live side by side.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import re
from dataclasses import dataclass
from pathlib import Path, PurePath
from typing import TYPE_CHECKING

from chatspace.errors import UsageError
from chatspace.store.root import OutputRoot, is_url

if TYPE_CHECKING:
    from chatspace.config import DataConfig

STAGING_DIR = ".staging"
#: Where every run's index folder (manifest, unit records) lives under the root.
INDEXES_DIR = "indexes"
MANIFEST_NAME = "manifest.json"
#: The folders every output root holds.
ROOT_FOLDERS = ("embeddings", INDEXES_DIR, "datasets", "cache", "logs")
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
    if model.startswith((".", "/", "~")) or path_is_dir(p):
        return p.resolve().name
    return model


def path_is_dir(path: Path) -> bool:
    """`Path.is_dir`, but False for a name the OS cannot even look up (too long, a NUL byte)."""
    try:
        return path.is_dir()
    except (OSError, ValueError):
        return False


def run_folder(data: DataConfig, run_name: str | None) -> str:
    """The split part of a run's paths, with what was extracted (or --run-name) when not plain text."""
    folder = data.split_spec.folder
    if run_name:
        return f"{folder}__{run_name}"
    long_rows = _long_rows_suffix(data)
    if data.text_field == "text" and data.extract == "text" and not long_rows:
        return folder  # where every run of the plain text field has always lived
    return (
        f"{folder}__{data.text_field}" + (f"__{data.extract}" if data.extract != "text" else "") + long_rows
    )


def _long_rows_suffix(data: DataConfig) -> str:
    """`__user-assistant` for --roles, `__chunk` / `__mean` for --long-text: beside the default run."""
    suffix = f"__{data.roles.replace(',', '-')}" if data.roles else ""
    return suffix + (f"__{data.long_text}" if data.long_text != "truncate" else "")


def _with_subset(dataset_label: str, subset: str | None) -> str:
    return dataset_label if not subset else f"{dataset_label}__{subset}"


@dataclass(frozen=True)
class RunLayout:
    output: OutputRoot
    model: str  # label (hub id or folder name)
    dataset: str  # label (hub id or file stem), subset joined in
    split: str
    # True: the run is being built aside (an --overwrite) and moves into place only when complete.
    staged: bool = False

    @classmethod
    def for_run(
        cls, root: str | Path | OutputRoot, model: str, dataset_label: str, subset: str | None, split: str
    ) -> RunLayout:
        output = root if isinstance(root, OutputRoot) else OutputRoot(root)
        return cls(output, model_label(model), _with_subset(dataset_label, subset), split)

    @classmethod
    def for_config(cls, cfg, root: str | Path | OutputRoot | None = None) -> RunLayout:
        """The layout a RunConfig writes to (under `root`, default its output part's root)."""
        from chatspace.data.sources import dataset_label, is_local

        data, root = cfg.data, root or cfg.output.output_root
        folder, model = run_folder(data, cfg.output.run_name), model_label(cfg.encoder.model)
        output = root if isinstance(root, OutputRoot) else OutputRoot(root)
        label = dataset_label(data.dataset, is_local(data.dataset, data.source))  # read where the data is
        return cls(output, model, _with_subset(label, data.subset), folder)

    @property
    def root(self) -> PurePath:
        """The root's path inside its filesystem (a `Path` when local)."""
        return self.output.path

    def _parts(self) -> tuple[str, str, str]:
        return slug(self.model), slug(self.dataset), slug(self.split)

    @property
    def embeddings_dir(self) -> PurePath:
        if self.staged:
            return self.stage_dir / "embeddings"
        return self.root.joinpath("embeddings", *self._parts())

    @property
    def index_dir(self) -> PurePath:
        if self.staged:
            return self.stage_dir / "index"
        return self.root.joinpath(INDEXES_DIR, *self._parts())

    @property
    def stage_dir(self) -> PurePath:
        """Where an --overwrite builds its run: outside embeddings/ and indexes/, so no reader sees it."""
        return self.root / STAGING_DIR / "--".join(self._parts())

    @property
    def final(self) -> RunLayout:
        return dataclasses.replace(self, staged=False)

    @property
    def staging(self) -> RunLayout:
        return dataclasses.replace(self, staged=True)

    @property
    def manifest_path(self) -> PurePath:
        return self.index_dir / "manifest.json"

    @property
    def units_dir(self) -> PurePath:
        return self.index_dir / "units"

    @property
    def logs_dir(self) -> PurePath:
        return self.root / "logs"

    def log_path(self, run_id: str) -> PurePath:
        """Where the run's log is kept under the root (recorded in the manifest)."""
        return self.logs_dir / f"{run_id}.log"

    def local_log_path(self, run_id: str) -> Path:
        """Where the log is written while the run goes: the same file for a local root; for an object
        store a local file, uploaded to `log_path` when the run ends."""
        if self.output.is_local:
            return Path(self.log_path(run_id))
        return local_datasets_dir(self.output).parent / "logs" / f"{run_id}.log"

    @property
    def cache_dir(self) -> PurePath:
        return self.root / "cache"

    @property
    def datasets_dir(self) -> Path:
        """Where converted datasets and line indexes are cached: always a local folder."""
        return local_datasets_dir(self.output)

    @property
    def lock_path(self) -> PurePath:
        return lock_path_of(self.final.index_dir)

    def shard_path(self, unit: int) -> PurePath:
        return self.embeddings_dir / f"shard-{unit:05d}.parquet"

    def shard_relpath(self, unit: int) -> str:
        """Where the shard of `unit` is recorded (relative to the root): its final place, even when staged."""
        return self.final.relative(self.final.shard_path(unit))

    def unit_record_path(self, unit: int) -> PurePath:
        return self.units_dir / f"unit-{unit:05d}.json"

    def relative(self, path: PurePath) -> str:
        return path.relative_to(self.root).as_posix()


def lock_path_of(index_dir: PurePath) -> PurePath:
    """The output lock of a run's index folder (indexes/{model}/{dataset}/{split}): one file beside them."""
    model, dataset, split = index_dir.parts[-3:]
    return index_dir.parents[2] / f".{model}--{dataset}--{split}.lock"


def manifest_paths(root: OutputRoot, target: PurePath | None = None) -> list[PurePath]:
    """The manifests under an output root, or the one named: a manifest file or a run's index folder."""
    p = root.path if target is None else target
    if root.is_file(p):
        return [p]
    if root.is_file(p / MANIFEST_NAME):
        return [p / MANIFEST_NAME]
    return root.find(p / INDEXES_DIR, MANIFEST_NAME)


def run_root_of(manifest_path: PurePath, manifest: dict) -> PurePath:
    """The output root a manifest's relative paths start from: its index folder's depth up.

    Worked out from where the manifest is (not the recorded root), so a moved or copied root still reads.
    """
    index_dir = manifest.get("layout", {}).get("index_dir")
    depth = len(PurePath(index_dir).parts) if index_dir else 4
    return manifest_path.parents[depth]


def open_root(location: str | Path) -> tuple[OutputRoot, PurePath]:
    """The output root holding `location` (a root, a run's index folder or a manifest) and the path of
    `location` inside it; UsageError when there is nothing there."""
    if is_url(location):
        root = OutputRoot(location)
        root.check_exists()
        return root, root.path
    p = Path(location).expanduser()
    if not p.exists():
        raise UsageError(f"output root {p} does not exist")
    return OutputRoot(p), p.resolve()


def local_datasets_dir(output: OutputRoot) -> Path:
    """The datasets cache of an output root: its `datasets/` folder when local; for an object store a
    local folder ($CHATSPACE_CACHE, else ~/.cache/chatspace) named after the root, since readers of
    dataset files need local paths."""
    if output.is_local:
        return Path(output.path) / "datasets"
    base = Path(os.environ.get("CHATSPACE_CACHE") or "~/.cache/chatspace").expanduser()
    return base / slug(output.url(), max_len=200) / "datasets"


def ensure_writable_root(root: str | Path | OutputRoot) -> PurePath:
    """Create the output root and check it can be written; one clear error if not. Its path (a `Path`
    when local); `ensure_writable_output` gives the OutputRoot itself."""
    return ensure_writable_output(root).path


def ensure_writable_output(root: str | Path | OutputRoot) -> OutputRoot:
    """The OutputRoot at `root`, created and checked writable; one clear error if not."""
    output = root if isinstance(root, OutputRoot) else OutputRoot(root)
    output.ensure_writable()
    for name in ROOT_FOLDERS:
        # A file named like one of the root's folders would fail the run later, deep in a worker.
        if output.is_file(output.join(name)):
            raise UsageError(
                f"output root {output.url()} has a file named {name!r} where its {name}/ folder belongs; "
                "move it away or choose another --output-root"
            )
    return output
