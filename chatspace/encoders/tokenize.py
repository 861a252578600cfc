"""Tokenizing for the local encoder: the model's own `preprocess`, unpadded, one sequence per text.

Truncation, prompts and special tokens are exactly what `SentenceTransformer.encode` does; the fast
tokenizer's offsets say how many characters of each truncated text reached the model.
"""

from __future__ import annotations

import numpy as np

from chatspace.encoders.base import Prepared

UNPADDED = {"common": {"return_tensors": None}, "text": {"padding": False}}


def tokenize(model, texts: list[str], *, prompt: str | None, max_tokens: int) -> Prepared:
    """Token ids (unpadded), counts and truncation flags of `texts` as `model.encode` would see them."""
    if not texts:
        return Prepared([], np.zeros(0, np.int64), np.zeros(0, bool), {}, {"input_ids": []})
    feats = model.preprocess(texts, prompt=prompt, processing_kwargs=UNPADDED)
    ids = feats["input_ids"]
    if len(ids) != len(texts):
        raise RuntimeError(
            f"the model's preprocess returned {len(ids)} sequences for {len(texts)} texts "
            "(flattened inputs?); chatspace needs one per text"
        )
    lengths = np.fromiter((len(x) for x in ids), dtype=np.int64, count=len(ids))
    encodings = getattr(feats, "encodings", None)
    embedded_chars = None
    if encodings:
        truncated = np.fromiter((bool(e.overflowing) for e in encodings), dtype=bool, count=len(ids))
        embedded_chars = embedded_char_counts(texts, encodings, truncated, prompt_chars=len(prompt or ""))
    else:  # slow tokenizer: reaching the limit is the best evidence available
        truncated = lengths >= max_tokens
    payload = {"input_ids": ids, "token_type_ids": feats.get("token_type_ids")}
    payload["extras"] = {
        k: v
        for k, v in feats.items()
        if k not in ("input_ids", "attention_mask", "token_type_ids", "prompt_length")
    }
    return Prepared(list(texts), lengths, truncated, {}, payload, embedded_chars=embedded_chars)


def embedded_char_counts(
    texts: list[str], encodings, truncated: np.ndarray, *, prompt_chars: int = 0
) -> np.ndarray:
    """Characters of each text that reached the model: all of it, or, when truncated, up to the end
    of the last token kept (from the fast tokenizer's offsets into prompt + text; special tokens map
    to (0, 0), so the last token with a non-zero end is the last one kept)."""
    counts = np.fromiter((len(t) for t in texts), dtype=np.int64, count=len(texts))
    for i in np.flatnonzero(truncated).tolist():
        end = next((e for _, e in reversed(encodings[i].offsets) if e), 0)
        counts[i] = max(0, end - prompt_chars)
    return counts
