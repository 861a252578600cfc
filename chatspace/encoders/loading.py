"""Loading a SentenceTransformer for the local encoder: the model's path, its precision, its attention.

The model is loaded straight into the target precision (a large model need not fit in float32 first),
with SDPA attention unless another was asked for; a model whose architecture has no SDPA falls back to
its default attention (said in the log), while an implementation the user named must load or fail.
"""

from __future__ import annotations

import logging
from typing import Any

from chatspace.encoders.locate import resolve_model_path
from chatspace.errors import ChatspaceError

log = logging.getLogger(__name__)


def load_sentence_transformer(cfg, torch_device: str, dtype_name: str):
    """(model in eval mode and `dtype_name`, the attention implementation it runs)."""
    import torch
    from sentence_transformers import SentenceTransformer

    path = resolve_model_path(cfg.model)
    # Name the dtype even for float32: transformers 5 otherwise keeps a checkpoint's own (bf16) dtype.
    model_kwargs: dict[str, Any] = {_dtype_kwarg(): getattr(torch, dtype_name)}
    attn = cfg.attn_implementation or "sdpa"
    model_kwargs["attn_implementation"] = attn
    try:
        model = _load(SentenceTransformer, cfg, path, torch_device, model_kwargs)
    except (ValueError, ImportError) as e:
        if cfg.attn_implementation is not None or "attn" not in str(e).lower():
            raise
        log.info("attention implementation %s not supported here (%s); using the default", attn, e)
        attn = "default"
        model_kwargs.pop("attn_implementation")
        model = _load(SentenceTransformer, cfg, path, torch_device, model_kwargs)
    model.eval()
    model.to(getattr(torch, dtype_name))
    return model, attn


def _load(cls, cfg, path: str, device: str, model_kwargs: dict[str, Any]):
    try:
        return cls(
            path,
            device=device,
            trust_remote_code=cfg.trust_remote_code,
            revision=cfg.revision,
            model_kwargs=model_kwargs or None,
        )
    except OSError as e:
        raise ChatspaceError(
            f"cannot load model {cfg.model!r}: {str(e).splitlines()[0]} "
            "(a hub model needs network access or a local copy; set --model to a local path)"
        ) from None


def _dtype_kwarg() -> str:
    """transformers 4.56 renamed from_pretrained's `torch_dtype` to `dtype`."""
    import transformers

    major, minor = (int(x) for x in transformers.__version__.split(".")[:2])
    return "dtype" if (major, minor) >= (4, 56) else "torch_dtype"
