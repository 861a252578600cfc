"""The OpenAI embeddings API encoder (api.openai.com or any OpenAI-compatible server: vLLM, TEI, infinity).

`prepare` counts tokens with the model's real tokenizer (`tokens`), truncates or skips over-long inputs,
and plans requests within the API limits (`planning`); `encode` sends them through the `client`, with
its retry policy. Nothing here contacts the API unless the run config says `execute`; the API key is
never put in a message, a log line or `describe()`.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np

from chatspace.config import OpenAIConfig
from chatspace.encoders.base import Encoder, Prepared
from chatspace.encoders.openai.client import EmbeddingsClient
from chatspace.encoders.openai.models import KNOWN_DIMENSIONS, MAX_INPUT_TOKENS, canonical_model
from chatspace.encoders.openai.planning import RequestPlan, plan_requests
from chatspace.encoders.openai.settings import API_KEY_VAR, OpenAISettings, openai_settings
from chatspace.encoders.openai.tokens import get_tokenizer
from chatspace.errors import ChatspaceError, UsageError
from chatspace.stats import WorkerStats

log = logging.getLogger(__name__)

# Skip reasons this encoder adds (counted in the manifest next to the extraction ones).
TOO_LONG = "too_long"
EMPTY = "empty"


class OpenAIEncoder(Encoder):
    """Embeddings from an OpenAI-compatible `/embeddings` endpoint. See the module docstring."""

    def __init__(self, cfg: OpenAIConfig, *, settings: OpenAISettings | None = None):
        self.cfg = cfg
        self.settings = settings if settings is not None else openai_settings(require_key=cfg.execute)
        if cfg.execute and not self.settings.api_key:
            raise UsageError(
                f"{API_KEY_VAR} is not set: export it or put it in a .env file to run with --execute"
            )
        self.model_name = cfg.model
        self._tokenizer = get_tokenizer(cfg.model)
        self._max_tokens = MAX_INPUT_TOKENS
        self._dim: int | None = cfg.dimensions or KNOWN_DIMENSIONS.get(canonical_model(cfg.model))
        self.client = EmbeddingsClient(
            self.settings,
            cfg.model,
            dimensions=cfg.dimensions,
            concurrency=cfg.concurrency,
            max_retries=cfg.max_retries,
        )

    def __repr__(self) -> str:
        return f"OpenAIEncoder(model={self.model_name!r}, base_url={self.settings.display_url!r})"

    # --- interface -------------------------------------------------------------------------------

    @property
    def dimension(self) -> int:
        if self._dim is None:
            raise ChatspaceError(
                f"the dimension of model {self.model_name!r} is not known before load() asks the server"
            )
        return self._dim

    @property
    def max_tokens(self) -> int:
        return self._max_tokens

    @property
    def tokenizer_name(self) -> str:
        return self._tokenizer.name

    @property
    def exact_token_counts(self) -> bool:
        return self._tokenizer.exact

    def load(self, stats: WorkerStats) -> None:
        """Builds the client (only with execute); an unknown model's dimension is learnt from one probe."""
        if not self.cfg.execute:
            if self._dim is None:
                raise UsageError(
                    f"the dimension of model {self.model_name!r} is unknown without asking the server: "
                    "run with --execute, or give --dimensions"
                )
            return
        self.client.connect()
        if self._dim is None:
            self._dim = self.client.probe_dimension(stats)
            log.info("model %s answers with %d-dimensional vectors", self.model_name, self._dim)

    def prepare(self, texts: list[str], stats: WorkerStats) -> Prepared:
        n = len(texts)
        counts = np.zeros(n, dtype=np.int64)
        truncated = np.zeros(n, dtype=bool)
        skipped: dict[int, str] = {}
        inputs: list[str] = []
        rows: list[int] = []
        with stats.busy("tokenize"):
            for i, text in enumerate(texts):
                if not isinstance(text, str) or not text.strip():
                    skipped[i] = EMPTY  # the API refuses empty inputs
                    continue
                c = self._tokenizer.count_within(text, self._max_tokens)
                if c is None:
                    if self.cfg.on_long == "skip":
                        skipped[i] = TOO_LONG
                        continue
                    text, c = self._tokenizer.truncate(text, self._max_tokens)
                    truncated[i] = True
                counts[i] = c
                inputs.append(text)
                rows.append(i)
            row_arr = np.asarray(rows, dtype=np.int64)
            kept = counts[row_arr]
            requests = plan_requests(
                kept, self.cfg.request_max_inputs, self.cfg.request_max_tokens, spread=self.cfg.concurrency
            )
            request_tokens = [int(kept[s:e].sum()) for s, e in requests]
        plan = RequestPlan(inputs, row_arr, requests, request_tokens)
        return Prepared(list(texts), counts, truncated, skipped, plan)

    def encode(self, prepared: Prepared, stats: WorkerStats) -> np.ndarray:
        plan: RequestPlan = prepared.payload
        if plan.requests and not self.cfg.execute:
            raise UsageError("not calling the embeddings API without --execute (this is a dry run)")
        out = np.zeros((len(prepared.texts), self.dimension), dtype=np.float32)
        if not plan.requests:
            return out
        with stats.busy("encode"):
            out[plan.rows] = self.client.embed(plan.inputs, plan.requests, stats, self.dimension)
        kept = plan.rows
        stats.tokens += int(prepared.token_counts[kept].sum())
        stats.truncated += int(prepared.truncated[kept].sum())
        return out

    def describe(self) -> dict[str, Any]:
        return {
            "model": self.model_name,
            "dimension": self._dim,
            "dimensions_requested": self.cfg.dimensions,
            "max_tokens": self._max_tokens,
            "tokenizer": self._tokenizer.name,
            "token_counts_approximate": not self._tokenizer.exact,
            "base_url": self.settings.display_url,
            "timeout": self.settings.timeout,
            "concurrency": self.cfg.concurrency,
            "max_retries": self.cfg.max_retries,
            "request_max_inputs": self.cfg.request_max_inputs,
            "request_max_tokens": self.cfg.request_max_tokens,
            "on_long": self.cfg.on_long,
            "encoding_format": self.client.encoding_format,
        }

    def close(self) -> None:
        self.client.close()
