"""The options `SentenceTransformer.encode` applies around the model, applied the same way here.

A prompt is resolved as `encode` resolves it (an explicit prompt, else a named one, else the model's
`default_prompt_name`), prepended by the model's own `preprocess`, and its token count goes to the
pooling layer (which leaves prompt tokens out when the model says `include_prompt: false`).
After pooling, vectors are truncated to `truncate_dim` first and normalized second, as in `encode`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from chatspace.errors import ChatspaceError


@dataclass(frozen=True)
class ResolvedPrompt:
    text: str | None  # what is prepended to every text (None or "": nothing)
    name: str | None  # the `prompts` key it came from, if any
    source: str  # "option" (--prompt), "prompt-name" (--prompt-name), "model-default", or "none"
    length: int | None  # prompt tokens, as the model's pooling counts them


def resolve_prompt(model: Any, prompt: str | None, prompt_name: str | None) -> ResolvedPrompt:
    """The prompt `model.encode(texts, prompt=prompt, prompt_name=prompt_name)` would use."""
    prompts = dict(getattr(model, "prompts", None) or {})
    name = None
    if prompt is not None:
        source = "option"
    elif prompt_name is not None:
        if prompt_name not in prompts:
            known = ", ".join(sorted(prompts)) or "none"
            raise ChatspaceError(
                f"--prompt-name {prompt_name!r}: the model has no such prompt (its prompts: {known})"
            )
        prompt, name, source = prompts[prompt_name], prompt_name, "prompt-name"
    elif getattr(model, "default_prompt_name", None) is not None:
        name = model.default_prompt_name
        prompt, source = prompts.get(name), "model-default"
    else:
        source = "none"
    return ResolvedPrompt(prompt, name, source, prompt_token_length(model, prompt))


def prompt_token_length(model: Any, prompt: str | None) -> int | None:
    """The prompt's length in tokens exactly as `encode` passes it to pooling (None without one)."""
    if not prompt:
        return None
    features = model.preprocess(["-"], prompt=prompt)
    length = features.get("prompt_length")
    return int(length) if length is not None else None


def check_truncate_dim(truncate_dim: int | None, model_dimension: int) -> int:
    """The stored dimension; a truncation past the model's own size is a mistake, not a no-op."""
    if truncate_dim is None:
        return model_dimension
    if truncate_dim > model_dimension:
        raise ChatspaceError(
            f"--truncate-dim {truncate_dim} is larger than the model's {model_dimension} dimensions"
        )
    return truncate_dim


def finish_embeddings(embeddings: Any, *, truncate_dim: int | None, normalize: bool) -> Any:
    """Truncate, then L2-normalize (a torch tensor, in the model's own precision), as `encode` does."""
    if truncate_dim is not None:
        embeddings = embeddings[..., :truncate_dim]
    if normalize:
        import torch

        embeddings = torch.nn.functional.normalize(embeddings, p=2, dim=1)
    return embeddings
