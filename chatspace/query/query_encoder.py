"""The query side of a run: its own model, revision, dtype and encode options, with the query prompt.

A run records how its documents were embedded (model, revision, dtype, normalize, truncate_dim, the
document prompt). A query must go through the same model and options or its vector lives in another
space; only the prompt differs: the model's `query` prompt where it defines one (as
`SentenceTransformer.encode_query` does), else what `encode` would use.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from chatspace.config import Mode, RunConfig
from chatspace.errors import UsageError
from chatspace.stats import WorkerStats

QUERY_PROMPT_NAME = "query"


def model_prompts(model: str, revision: str | None = None) -> dict[str, Any]:
    """The model's `prompts` and `default_prompt_name` from its config_sentence_transformers.json (a local
    folder, else the Hugging Face cache); empty when it sets none."""
    from chatspace.encoders.locate import resolve_model_path

    path = resolve_model_path(model)
    name = "config_sentence_transformers.json"
    local = Path(path).expanduser() / name
    if not local.is_file():
        try:
            from huggingface_hub import try_to_load_from_cache

            cached = try_to_load_from_cache(path, name, revision=revision)
        except Exception:  # not a hub id either: the encoder's own loading says what is wrong
            cached = None
        if not isinstance(cached, str):
            return {}
        local = Path(cached)
    try:
        data = json.loads(local.read_text())
    except (OSError, ValueError):
        return {}
    return {
        "prompts": dict(data.get("prompts") or {}),
        "default_prompt_name": data.get("default_prompt_name"),
    }


def query_prompt(
    manifest: dict[str, Any], prompt: str | None = None, prompt_name: str | None = None
) -> tuple[str | None, str | None]:
    """(prompt, prompt_name) for the queries of a run: what was asked, else the model's `query` prompt,
    else none (then `encode`'s own default applies, as for documents)."""
    if prompt is not None and prompt_name is not None:
        raise UsageError("give --prompt or --prompt-name, not both")
    if prompt is not None or prompt_name is not None:
        return prompt, prompt_name
    cfg = manifest.get("config", {})
    if cfg.get("mode", Mode.SENTENCE_TRANSFORMER) != Mode.SENTENCE_TRANSFORMER:
        return None, None
    info = model_prompts(cfg.get("model") or manifest.get("model", {}).get("name"), cfg.get("revision"))
    if QUERY_PROMPT_NAME in info.get("prompts", {}):
        return None, QUERY_PROMPT_NAME
    return cfg.get("prompt"), cfg.get("prompt_name")


def _run_config(manifest: dict[str, Any], prompt: str | None, prompt_name: str | None) -> RunConfig:
    """The run's config as recorded, with the query prompt in place of the documents' one."""
    recorded = dict(manifest.get("config", {}))
    mode = recorded.pop("mode", Mode.SENTENCE_TRANSFORMER)
    other = Mode.OPENAI if mode == Mode.SENTENCE_TRANSFORMER else Mode.SENTENCE_TRANSFORMER
    known = RunConfig.option_names(mode) | RunConfig.option_names(other)
    options = {k: v for k, v in recorded.items() if k in known}
    for name in ("devices", "resume", "overwrite", "run_id", "config_file", "execute"):
        options.pop(name, None)
    if mode == Mode.SENTENCE_TRANSFORMER:
        options.update(prompt=prompt, prompt_name=prompt_name)
    try:
        return RunConfig.from_options(mode=mode, **options)
    except (TypeError, ValueError) as e:
        raise UsageError(f"cannot rebuild the run's encoder from its manifest: {e}") from None


class QueryEncoder:
    """Embeds queries exactly as the run embedded its rows (same encoder code), on this machine's CPU."""

    def __init__(self, manifest: dict[str, Any], prompt: str | None = None, prompt_name: str | None = None):
        self.prompt, self.prompt_name = query_prompt(manifest, prompt, prompt_name)
        self.cfg = _run_config(manifest, self.prompt, self.prompt_name)
        self._encoder = None

    def describe(self) -> dict[str, Any]:
        return {"model": self.cfg.encoder.model, "prompt": self.prompt, "prompt_name": self.prompt_name}

    def encode(self, texts: list[str]) -> np.ndarray:
        """float32 [len(texts), dim], in order; one batch through the run's own encoder."""
        if not texts:
            raise UsageError("no query text given")
        from chatspace.encoders import build_encoder
        from chatspace.hardware.devices import Device

        stats = WorkerStats()
        if self._encoder is None:
            self._encoder = build_encoder(self.cfg, Device("cpu", "cpu:0"), None)
            self._encoder.load(stats)
        prepared = self._encoder.prepare(list(texts), stats)
        if prepared.skipped:
            position, reason = next(iter(prepared.skipped.items()))
            raise UsageError(f"query {position + 1} cannot be embedded: {reason}")
        return np.asarray(self._encoder.encode(prepared, stats), dtype=np.float32)

    def close(self) -> None:
        if self._encoder is not None:
            self._encoder.close()
            self._encoder = None
