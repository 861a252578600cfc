"""Tokenizing for the local encoder: the model's own `preprocess`, unpadded, one sequence per text.

Truncation, prompts and special tokens are exactly what `SentenceTransformer.encode` does; the fast
tokenizer's offsets say how many characters of each truncated text reached the model.

Long texts are cut by characters first, so a 60,000-character text is not tokenized whole to keep its
first 256 tokens. The cut keeps exactly the tokens the model would keep, because of two facts:

1. With a tokenizer whose normalizer works character by character and whose pre-tokenizer splits
   words at spaces (BERT's WordPiece, byte-level BPE with its regex, Metaspace; checked from the
   tokenizer's own definition, else no text is cut), the tokens of a prefix that ends just before a
   space which follows a non-space are exactly the first tokens of the whole text: no word, and no
   normalized character, spans that boundary.
2. Truncation keeps the first N tokens. When the prefix itself had to be truncated (it has more
   tokens than the model keeps), the whole text was too, and both keep the same N tokens; when it did
   not, that row is tokenized again whole, so a cut that was too short costs time, never tokens.
"""

from __future__ import annotations

import json
import os
import re

import numpy as np

from chatspace.encoders.base import Prepared

# Unpadded lists, one per text. No attention mask: the batch's is built when it is padded, and turning
# each text's mask into a Python list took ~15% of the tokenizer call (as the library does when it flattens).
UNPADDED = {"common": {"return_tensors": None}, "text": {"padding": False, "return_attention_mask": False}}
# Characters kept per token the model keeps before a text is cut. Prose runs at ~4-5 characters per
# token; a prefix this long nearly always holds more tokens than the model keeps (else it is redone).
CUT_CHARS_PER_TOKEN = 12
# Tokenizer parts under which a cut before a space keeps the tokens before it unchanged.
_LOCAL_NORMALIZERS = {
    "BertNormalizer",
    "Lowercase",
    "NFC",
    "NFD",
    "NFKC",
    "NFKD",
    "StripAccents",
    "Strip",
    "Prepend",
}
_WORD_PRE_TOKENIZERS = {"BertPreTokenizer", "Whitespace", "WhitespaceSplit", "Punctuation", "Digits"}
_SPACE_AFTER_WORD = re.compile(r"\S ")


def use_tokenizer_threads(threads: int | None) -> None:
    """Tokenize on this worker's share of the cores: the fast tokenizer's Rust thread pool (Rayon)
    is sized by RAYON_NUM_THREADS when first used and is used at all only with TOKENIZERS_PARALLELISM
    on. Set in the worker's own process, before its first tokenization; None leaves both alone."""
    if not threads:
        return
    os.environ["RAYON_NUM_THREADS"] = str(threads)
    os.environ["TOKENIZERS_PARALLELISM"] = "true" if threads > 1 else "false"


def cut_bound(tokenizer, max_tokens: int) -> int | None:
    """The length above which texts are cut before tokenizing, or None when this tokenizer's cuts
    could change its tokens (see the module docstring) or it keeps the last tokens, not the first."""
    if getattr(tokenizer, "truncation_side", "right") != "right" or not getattr(tokenizer, "is_fast", False):
        return None
    try:
        spec = json.loads(tokenizer.backend_tokenizer.to_str())
    except (AttributeError, ValueError):
        return None
    if not (_local_normalizer(spec.get("normalizer")) and _word_pre_tokenizer(spec.get("pre_tokenizer"))):
        return None
    for added in spec.get("added_tokens") or []:  # matched on the raw text, before anything else
        if added.get("rstrip") or any(c.isspace() for c in added.get("content", "")):
            return None
    return CUT_CHARS_PER_TOKEN * max_tokens


def _local_normalizer(part) -> bool:
    if part is None:
        return True
    if part.get("type") == "Sequence":
        return all(_local_normalizer(p) for p in part.get("normalizers", []))
    return part.get("type") in _LOCAL_NORMALIZERS


def _word_pre_tokenizer(part) -> bool:
    if part is None:
        return False  # the whole text is one word
    kind = part.get("type")
    if kind == "Sequence":
        parts = part.get("pretokenizers", [])
        return (
            bool(parts)
            and any(_word_pre_tokenizer(p) for p in parts)
            and all(_pre_tokenizer_ok(p) for p in parts)
        )
    return _pre_tokenizer_ok(part) and kind != "Digits" and kind != "Punctuation"


def _pre_tokenizer_ok(part) -> bool:
    kind = part.get("type")
    if kind == "ByteLevel":
        return part.get("use_regex", True)
    if kind == "Metaspace":
        return part.get("split", True)
    return kind in _WORD_PRE_TOKENIZERS


def cut_point(text: str, bound: int) -> int | None:
    """Where to cut `text` (at most ~`bound` characters kept): the last space at or before `bound`
    that follows a non-space, else the first one after it; None when there is none."""
    p = text.rfind(" ", 0, bound + 1)
    while p > 0:
        if not text[p - 1].isspace():
            return p
        start_of_run = len(text[:p].rstrip())
        p = text.rfind(" ", 0, start_of_run + 1) if start_of_run else -1
    m = _SPACE_AFTER_WORD.search(text, bound)
    return m.start() + 1 if m else None


def tokenize(
    model, texts: list[str], *, prompt: str | None, max_tokens: int, cut_at: int | None = None
) -> Prepared:
    """Token ids (unpadded), counts and truncation flags of `texts` as `model.encode` would see them.

    `cut_at` (from `cut_bound`): texts longer than this are cut before tokenizing, keeping the same
    tokens (rows whose cut kept too few are tokenized again whole)."""
    if not texts:
        return Prepared([], np.zeros(0, np.int64), np.zeros(0, bool), {}, {"input_ids": []})
    inputs, cut_rows = list(texts), []
    if cut_at:
        for i, text in enumerate(texts):
            if len(text) > cut_at:
                p = cut_point(text, cut_at)
                if p is not None and p < len(text):
                    inputs[i] = text[:p]
                    cut_rows.append(i)
    feats = model.preprocess(inputs, prompt=prompt, processing_kwargs=UNPADDED)
    ids = feats["input_ids"]
    if len(ids) != len(texts):
        raise RuntimeError(
            f"the model's preprocess returned {len(ids)} sequences for {len(texts)} texts "
            "(flattened inputs?); chatspace needs one per text"
        )
    encodings = getattr(feats, "encodings", None)
    if cut_rows:
        _redo_short_cuts(model, feats, texts, cut_rows, prompt)
    lengths = np.fromiter(map(len, ids), dtype=np.int64, count=len(ids))
    embedded_chars = None
    if encodings:
        # A truncated row has the truncation length, the longest any row can have: only rows of the
        # longest length are asked (building `overflowing` costs a Python object per row).
        truncated = np.zeros(len(ids), dtype=bool)
        longest = np.flatnonzero(lengths == lengths.max()).tolist() if len(ids) else []
        truncated[longest] = [bool(encodings[i].overflowing) for i in longest]
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


def _redo_short_cuts(model, feats, texts: list[str], cut_rows: list[int], prompt: str | None) -> None:
    """Tokenize again, whole, the cut rows the tokenizer did not have to truncate (their cut may have
    dropped tokens the model would keep), and put them in place in `feats`."""
    encodings = feats.encodings
    redo = [i for i in cut_rows if not encodings[i].overflowing]
    if not redo:
        return
    again = model.preprocess([texts[i] for i in redo], prompt=prompt, processing_kwargs=UNPADDED)
    n = len(texts)
    for key, values in feats.items():
        if isinstance(values, list) and len(values) == n and key in again:
            for j, i in enumerate(redo):
                values[i] = again[key][j]
    for j, i in enumerate(redo):
        encodings[i] = again.encodings[j]


def embedded_char_counts(
    texts: list[str], encodings, truncated: np.ndarray, *, prompt_chars: int = 0
) -> np.ndarray:
    """Characters of each text that reached the model: all of it, or, when truncated, up to the end
    of the last token kept (from the fast tokenizer's offsets into prompt + text; special tokens map
    to (0, 0), so the last token with a non-zero end is the last one kept)."""
    counts = np.fromiter(map(len, texts), dtype=np.int64, count=len(texts))
    for i in np.flatnonzero(truncated).tolist():
        end = next((e for _, e in reversed(encodings[i].offsets) if e), 0)
        counts[i] = max(0, end - prompt_chars)
    return counts
