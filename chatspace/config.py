"""The one frozen run configuration: validated when built, written whole into the manifest.

`output_hash()` covers exactly the fields that change what lands on disk, so a rerun may resume into an
existing output only when it would write the same rows (vLLM-style config hashing).
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from chatspace.data.splits import SplitSpec, parse_split
from chatspace.errors import UsageError

DEFAULT_MODEL = "sentence-transformers/all-MiniLM-L6-v2"
DEFAULT_OPENAI_MODEL = "text-embedding-3-small"
EXTRACT_MODES = ("text", "first-assistant", "first-user", "all-turns")
EMBEDDING_DTYPES = ("float32", "float16")
MODEL_DTYPES = ("float32", "float16", "bfloat16")
# The SentenceTransformer.encode options a run may set, with their defaults (no change to the vectors).
_ENCODE_OPTION_DEFAULTS: dict[str, Any] = {
    "prompt": None,
    "prompt_name": None,
    "normalize": False,
    "truncate_dim": None,
    "revision": None,
}
ENCODE_OPTION_FIELDS = tuple(_ENCODE_OPTION_DEFAULTS)
#: A run id names a log file and is written into every row: one safe path component, nothing more.
RUN_ID_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")
# Output fields added after runs existed: hashed only when set, so older runs keep their hash.
_LATER_OUTPUT_DEFAULTS: dict[str, Any] = {**_ENCODE_OPTION_DEFAULTS, "max_rows": None}


def default_output_root() -> str:
    return os.environ.get("CHATSPACE_ROOT") or "/workspace"


@dataclass(frozen=True)
class RunConfig:
    """Everything one run needs; the same object drives the CLI, the Python API and the tests."""

    dataset: str
    mode: str = "hf"  # "hf" (local SentenceTransformer workers) or "openai"
    subset: str | None = None
    split: str = "train"
    source: str = "auto"  # auto | huggingface | local
    text_field: str = "text"
    extract: str = "text"
    id_field: str | None = None
    n: int | None = None
    p: float | None = None
    max_rows: int | None = None  # the first N selected rows, in dataset order (quick tests)
    seed: int = 42
    model: str = DEFAULT_MODEL
    devices: tuple[str, ...] = ("cpu:0",)  # labels: cpu:N, cuda:N (see chatspace.hardware.devices)
    threads_per_worker: int | None = None
    executor: str = "local"  # local (spawned processes) | ray
    stall_timeout: float = 1800.0  # seconds a ready worker may go without finishing a chunk; 0: never
    max_worker_restarts: int = 2  # per device: a lost worker is replaced this often; 0: stop the run
    ray_address: str | None = None
    dtype: str | None = None  # None: bfloat16 on CUDA, float32 on CPU
    embedding_dtype: str = "float32"
    rows_per_shard: int = 10_000
    output_root: str = field(default_factory=default_output_root)
    run_id: str | None = None
    run_name: str | None = None  # names the run's folder instead of its text field and extraction
    resume: bool = False
    overwrite: bool = False
    progress: bool = True
    trust_remote_code: bool = False
    # SentenceTransformer.encode options: they change the vectors, so they are part of the identity.
    prompt: str | None = None  # prepended to every text, as encode(prompt=...) does
    prompt_name: str | None = None  # a key of the model's `prompts` (None: its default_prompt_name)
    normalize: bool = False  # unit vectors (encode(normalize_embeddings=True))
    truncate_dim: int | None = None  # keep the first N dimensions (Matryoshka models)
    revision: str | None = None  # the model's hub revision (branch, tag or commit)
    # Encoder tuning (does not change the vectors beyond float rounding).
    batch_size: int | None = None  # None: a padded-token budget (the device's default)
    tokens_per_batch: int | None = None
    bucket_min_tokens: int = 8
    bucket_max_tokens: int | None = None  # None: the model's maximum length
    compile_model: bool = False
    compile_mode: str | None = None  # torch.compile mode (with compile_model)
    prefetch_batches: int | None = None  # chunks a worker's reader prepares ahead of the encoder
    attn_implementation: str | None = None  # None: sdpa where the model supports it
    # OpenAI mode.
    dimensions: int | None = None
    execute: bool = False
    concurrency: int = 4
    max_retries: int = 6
    on_long: str = "truncate"  # truncate | skip
    request_max_inputs: int = 2048
    request_max_tokens: int = 300_000
    # The file the options came from, if any (recorded, not hashed).
    config_file: str | None = None

    def __post_init__(self) -> None:
        if not self.dataset:
            raise UsageError("--dataset is required")
        for option, value in (
            ("--dataset", self.dataset),
            ("--subset", self.subset),
            ("--split", self.split),
            ("--model", self.model),
        ):
            # Each of these becomes part of an output path (made safe by store.layout.slug).
            if value is not None and (not isinstance(value, str) or "\x00" in value):
                raise UsageError(f"{option} must be text without NUL characters, not {value!r}")
            if option in ("--split", "--model") and not value.strip():
                raise UsageError(f"{option} must not be empty")
        if self.mode not in ("hf", "openai"):
            raise UsageError(f"unknown mode {self.mode!r}")
        if self.source not in ("auto", "huggingface", "local"):
            raise UsageError(f"--source must be auto, huggingface or local, not {self.source!r}")
        if self.extract not in EXTRACT_MODES:
            raise UsageError(f"--extract must be one of {', '.join(EXTRACT_MODES)}, not {self.extract!r}")
        if self.n is not None and self.p is not None:
            raise UsageError("give --n or --p, not both")
        if self.max_rows is not None and (self.n is not None or self.p is not None):
            raise UsageError("give --max-rows or --n/--p, not both (--max-rows takes rows in dataset order)")
        if self.max_rows is not None and self.max_rows <= 0:
            raise UsageError(f"--max-rows must be a positive number of rows, not {self.max_rows}")
        if self.request_max_inputs <= 0:
            raise UsageError("--batch-size must be positive")
        if self.prefetch_batches is not None and self.prefetch_batches <= 0:
            raise UsageError("--prefetch-batches must be positive")
        parse_split(self.split)  # a malformed slice is a usage error now, not a misread later
        if self.run_name is not None:
            from chatspace.store.layout import check_run_name

            check_run_name(self.run_name)
        if self.n is not None and self.n <= 0:
            raise UsageError(f"--n must be a positive number of rows, not {self.n}")
        if self.p is not None and not (0.0 < self.p <= 1.0):
            raise UsageError(f"--p must be a probability in (0, 1], not {self.p}")
        if self.rows_per_shard <= 0:
            raise UsageError("--rows-per-shard must be positive")
        if self.embedding_dtype not in EMBEDDING_DTYPES:
            raise UsageError(f"--embedding-dtype must be float32 or float16, not {self.embedding_dtype!r}")
        if self.dtype is not None and self.dtype not in MODEL_DTYPES:
            raise UsageError(f"--dtype must be one of {', '.join(MODEL_DTYPES)}, not {self.dtype!r}")
        if not self.devices:
            raise UsageError("no devices to run on")
        if self.batch_size is not None and self.batch_size <= 0:
            raise UsageError("--batch-size must be positive")
        if self.tokens_per_batch is not None and self.tokens_per_batch <= 0:
            raise UsageError("--tokens-per-batch must be positive")
        if self.bucket_min_tokens <= 0 or (
            self.bucket_max_tokens is not None and self.bucket_max_tokens < self.bucket_min_tokens
        ):
            raise UsageError("bucket sizes must satisfy 0 < --bucket-min-tokens <= --bucket-max-tokens")
        if self.threads_per_worker is not None and self.threads_per_worker <= 0:
            raise UsageError("--threads-per-worker must be positive")
        if self.on_long not in ("truncate", "skip"):
            raise UsageError("--on-long must be truncate or skip")
        if self.concurrency <= 0:
            raise UsageError("--concurrency must be positive")
        if self.dimensions is not None and self.dimensions <= 0:
            raise UsageError("--dimensions must be positive")
        if self.stall_timeout < 0:
            raise UsageError("--stall-timeout must be >= 0")
        if self.max_worker_restarts < 0:
            raise UsageError("--max-worker-restarts must be >= 0")
        if self.executor not in ("local", "ray"):
            raise UsageError(f"--executor must be local or ray, not {self.executor!r}")
        if self.resume and self.overwrite:
            raise UsageError("give --resume or --overwrite, not both")
        if self.prompt is not None and self.prompt_name is not None:
            raise UsageError("give --prompt or --prompt-name, not both")
        if self.truncate_dim is not None and self.truncate_dim <= 0:
            raise UsageError(
                f"--truncate-dim must be a positive number of dimensions, not {self.truncate_dim}"
            )
        if self.run_id is not None:
            check_run_id(self.run_id)

    # Fields whose change changes the rows written: a resume into an output requires them equal.
    OUTPUT_FIELDS = (
        "mode",
        "dataset",
        "subset",
        "split",
        "source",
        "text_field",
        "extract",
        "id_field",
        "n",
        "p",
        "max_rows",
        "seed",
        "model",
        "embedding_dtype",
        "rows_per_shard",
        "bucket_max_tokens",
        "dimensions",
        "on_long",
        "trust_remote_code",
        *ENCODE_OPTION_FIELDS,
    )

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["devices"] = list(self.devices)
        return d

    def output_hash(self) -> str:
        # Fields added later stay out of the payload at their defaults, so runs made before they
        # existed keep their hash (and can still be resumed).
        payload = {
            k: getattr(self, k)
            for k in self.OUTPUT_FIELDS
            if k not in _LATER_OUTPUT_DEFAULTS or getattr(self, k) != _LATER_OUTPUT_DEFAULTS[k]
        }
        return hashlib.sha256(orjson.dumps(payload, option=orjson.OPT_SORT_KEYS)).hexdigest()[:16]

    @property
    def split_spec(self) -> SplitSpec:
        """The split and its optional `datasets`-style slice (`train[:100]`)."""
        return parse_split(self.split)

    @property
    def base_split(self) -> str:
        """The split's own name, without a slice: what files are read and row ids are named by."""
        return self.split_spec.name

    def replace(self, **changes: Any) -> RunConfig:
        return dataclasses.replace(self, **changes)


def is_safe_run_id(run_id: object) -> bool:
    """A run id becomes `logs/{run_id}.log`: letters, digits, `.`, `_`, `-` only, never `..`."""
    return isinstance(run_id, str) and bool(RUN_ID_PATTERN.fullmatch(run_id)) and ".." not in run_id


def check_run_id(run_id: str) -> str:
    if not is_safe_run_id(run_id):
        raise UsageError(
            f"--run-id {run_id!r} is not a valid run id: use 1-128 letters, digits, '.', '_' or '-', "
            "starting with a letter or digit, without '..'"
        )
    return run_id


def load_config_file(path: str | Path) -> dict[str, Any]:
    """Read a TOML or YAML run config; keys may use dashes or underscores (CLI long names)."""
    p = Path(path)
    if not p.is_file():
        raise UsageError(f"config file not found: {p}")
    try:
        if p.suffix.lower() in (".yaml", ".yml"):
            import yaml

            data = yaml.safe_load(p.read_text()) or {}
        else:
            data = tomllib.loads(p.read_text())
    except Exception as e:  # noqa: BLE001 - any parse error is the user's to fix
        detail = " ".join(line.strip() for line in str(e).splitlines() if line.strip())
        raise UsageError(f"cannot parse config file {p}: {detail}") from None
    if not isinstance(data, dict):
        raise UsageError(f"config file {p} must hold a table of options")
    return {str(k).replace("-", "_"): v for k, v in data.items()}
