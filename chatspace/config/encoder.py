"""How vectors are made: a SentenceTransformer on local devices, or the OpenAI embeddings API.

Each names its identity: the model and whatever changes the vectors. Tuning that changes them by no
more than float rounding (precision, batching, compilation, attention kernel) is not identity.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from chatspace.config.base import ConfigPart, check_positive, choice
from chatspace.config.data import check_path_text
from chatspace.errors import UsageError

DEFAULT_MODEL = "sentence-transformers/all-MiniLM-L6-v2"
DEFAULT_OPENAI_MODEL = "text-embedding-3-small"
MODEL_DTYPES = ("float32", "float16", "bfloat16")
# The transformer's runtime: torch, or an ONNX export run by ONNX Runtime or OpenVINO (CPU only).
BACKENDS = ("torch", "onnx", "openvino")
QUANTIZATIONS = ("int8",)  # dynamic int8 weights of the ONNX export (different vectors: identity)
ON_LONG = ("truncate", "skip")
# The SentenceTransformer.encode options a run may set, with their defaults (no change to the vectors).
ENCODE_OPTION_DEFAULTS: dict[str, Any] = {
    "prompt": None,
    "prompt_name": None,
    "normalize": False,
    "truncate_dim": None,
    "revision": None,
}
ENCODE_OPTION_FIELDS = tuple(ENCODE_OPTION_DEFAULTS)


@dataclass(frozen=True)
class SentenceTransformerConfig(ConfigPart):
    """A SentenceTransformer model run by spawned workers, one per device."""

    model: str = DEFAULT_MODEL
    dtype: str | None = choice(None, MODEL_DTYPES)  # None: bfloat16 on CUDA, float32 on CPU
    # SentenceTransformer.encode options: they change the vectors, so they are part of the identity.
    prompt: str | None = None  # prepended to every text, as encode(prompt=...) does
    prompt_name: str | None = None  # a key of the model's `prompts` (None: its default_prompt_name)
    normalize: bool = False  # unit vectors (encode(normalize_embeddings=True))
    truncate_dim: int | None = None  # keep the first N dimensions (Matryoshka models)
    revision: str | None = None  # the model's hub revision (branch, tag or commit)
    trust_remote_code: bool = False  # lets the model repository's own code run (and change the vectors)
    # Tuning (does not change the vectors beyond float rounding).
    batch_size: int | None = None  # None: a padded-token budget (the device's default)
    tokens_per_batch: int | None = None
    bucket_min_tokens: int = 8
    bucket_max_tokens: int | None = None  # None: the model's maximum length (it truncates: identity)
    compile_model: bool = False
    compile_mode: str | None = None  # torch.compile mode (with compile_model)
    prefetch_batches: int | None = None  # chunks a worker's reader prepares ahead of the encoder
    attn_implementation: str | None = None  # None: sdpa where the model supports it
    backend: str = choice("torch", BACKENDS)  # float32 vectors equal torch's within rounding
    quantize: str | None = choice(None, QUANTIZATIONS)

    IDENTITY = ("model", "bucket_max_tokens", "trust_remote_code", *ENCODE_OPTION_FIELDS, "quantize")
    ADDED_LATER = {**ENCODE_OPTION_DEFAULTS, "quantize": None}

    def validate(self) -> None:
        check_path_text("--model", self.model)
        for name in ("prefetch_batches", "batch_size", "tokens_per_batch"):
            check_positive(name, getattr(self, name))
        if self.bucket_min_tokens <= 0 or (
            self.bucket_max_tokens is not None and self.bucket_max_tokens < self.bucket_min_tokens
        ):
            raise UsageError("bucket sizes must satisfy 0 < --bucket-min-tokens <= --bucket-max-tokens")
        if self.prompt is not None and self.prompt_name is not None:
            raise UsageError("give --prompt or --prompt-name, not both")
        check_positive(
            "truncate_dim", self.truncate_dim, f"a positive number of dimensions, not {self.truncate_dim}"
        )
        self._check_backend()

    def _check_backend(self) -> None:
        if self.quantize and self.backend != "onnx":
            raise UsageError(f"--quantize {self.quantize} needs --backend onnx")
        if self.backend == "torch":
            return
        if self.compile_model:
            raise UsageError(
                f"--compile-model compiles torch models; it does not apply to --backend {self.backend}"
            )
        allowed = ("float32", "bfloat16") if self.backend == "openvino" else ("float32",)
        if self.dtype is not None and self.dtype not in allowed:
            raise UsageError(
                f"--backend {self.backend} runs {' or '.join(allowed)}, not --dtype {self.dtype}"
            )


@dataclass(frozen=True)
class OpenAIConfig(ConfigPart):
    """The OpenAI embeddings API (or a compatible server): a dry run unless `execute`."""

    model: str = DEFAULT_OPENAI_MODEL
    dimensions: int | None = None  # vectors of this size (text-embedding-3 models)
    execute: bool = False  # False: a dry run that sends nothing
    concurrency: int = 4  # requests in flight
    max_retries: int = 6  # of a request that hit 429, 5xx or a timeout
    on_long: str = choice("truncate", ON_LONG)  # inputs over the model's token limit
    request_max_inputs: int = 2048  # the API's own cap
    request_max_tokens: int = 300_000

    IDENTITY = ("model", "dimensions", "on_long")

    def validate(self) -> None:
        check_path_text("--model", self.model)
        if self.request_max_inputs <= 0:
            raise UsageError("--batch-size must be positive")  # the option that sets it
        for name in ("concurrency", "dimensions"):
            check_positive(name, getattr(self, name))


class Mode(StrEnum):
    """Which encoder a run uses. The values are what the command line, config files and manifests
    spell (and what config hashes were taken over), so "hf" stays the SentenceTransformer's name there."""

    SENTENCE_TRANSFORMER = "hf"  # a local SentenceTransformer model (`embed-hf`)
    OPENAI = "openai"  # the OpenAI embeddings API (`embed-openai`)


EncoderConfig = SentenceTransformerConfig | OpenAIConfig
#: The encoder part of each mode (`RunConfig.mode`).
ENCODERS: dict[Mode, type[SentenceTransformerConfig] | type[OpenAIConfig]] = {
    Mode.SENTENCE_TRANSFORMER: SentenceTransformerConfig,
    Mode.OPENAI: OpenAIConfig,
}
