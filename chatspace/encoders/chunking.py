"""Cut texts longer than the model's limit into windows the model embeds whole (`--long-text`).

A window holds at most the model's token limit less its special tokens and the prompt's tokens. Its
edges are token boundaries from the fast tokenizer's offsets, moved back to the start of a word where
the tokenizer marks words and the window stays at least half full; a window's text is the source text
between its first token's start and its last token's end. Consecutive windows share `overlap` tokens.
Each window's text is checked by tokenizing it again as the model will (prompt and special tokens
included) and shrunk until it fits, so a chunk row is never truncated.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from chatspace.errors import ChatspaceError


@dataclass(frozen=True)
class Window:
    """One chunk of a text: its characters [char_start, char_end) and how many tokens it holds."""

    char_start: int
    char_end: int
    tokens: int


class TextChunker:
    """Windows of long texts for one tokenizer, token limit and prompt."""

    def __init__(self, tokenizer: Any, max_tokens: int, prompt: str | None = None, overlap: int = 0):
        if not getattr(tokenizer, "is_fast", False):
            raise ChatspaceError(
                "--long-text chunk/mean needs the model's fast tokenizer (its offsets say where to cut); "
                "this model has only a slow one"
            )
        self.tokenizer = tokenizer
        self.max_tokens = max_tokens
        self.prompt = prompt or ""
        specials = tokenizer.num_special_tokens_to_add(pair=False)
        prompt_tokens = len(self._ids(self.prompt)) if self.prompt else 0
        self.window = max_tokens - specials - prompt_tokens
        if self.window < 2:
            raise ChatspaceError(
                f"--long-text: the model keeps {max_tokens} tokens, {specials + prompt_tokens} of them "
                "special tokens and prompt: no room for a chunk"
            )
        if overlap >= self.window // 2:
            raise ChatspaceError(
                f"--chunk-overlap {overlap} must be under half a chunk: this model's chunks hold "
                f"{self.window} tokens"
            )
        self.overlap = overlap

    def _ids(self, text: str) -> list[int]:
        return self.tokenizer(text, add_special_tokens=False, truncation=False, verbose=False)["input_ids"]

    def _fits(self, text: str) -> bool:
        """Whether the model keeps all of `text` (prompt and special tokens as it adds them)."""
        ids = self.tokenizer(self.prompt + text, add_special_tokens=True, truncation=False, verbose=False)[
            "input_ids"
        ]
        return len(ids) <= self.max_tokens

    def windows(self, texts: list[str]) -> list[list[Window] | None]:
        """Per text: its windows when it is longer than one window, else None (embedded as it is)."""
        if not texts:
            return []
        enc = self.tokenizer(
            texts,
            add_special_tokens=False,
            truncation=False,
            return_offsets_mapping=True,
            return_attention_mask=False,
            return_token_type_ids=False,
            verbose=False,
        )
        out: list[list[Window] | None] = []
        for i, text in enumerate(texts):
            offsets = enc["offset_mapping"][i]
            if len(offsets) <= self.window:
                out.append(None)
                continue
            words = enc.word_ids(i) if hasattr(enc, "word_ids") else None
            out.append(self._cut(text, offsets, words))
        return out

    def _cut(self, text: str, offsets: list[tuple[int, int]], words: list[int | None] | None) -> list[Window]:
        n, windows, start = len(offsets), [], 0
        while start < n:
            size = self.window
            while True:
                end = self._word_edge(start, min(start + size, n), words)
                window = Window(offsets[start][0], offsets[end - 1][1], end - start)
                if self._fits(text[window.char_start : window.char_end]) or end - start <= 1:
                    break
                size = end - start - max(1, (end - start) // 32)  # tokenized longer alone: shrink
            windows.append(window)
            if end >= n:
                break
            nxt = self._word_edge(start, end - self.overlap, words, backwards_to=start + 1)
            start = max(start + 1, nxt)
        return windows

    def _word_edge(
        self, start: int, end: int, words: list[int | None] | None, backwards_to: int | None = None
    ) -> int:
        """`end`, moved back to the first token of the word it would cut through (not below
        `backwards_to`, by default half a window after `start`); `end` itself when no word spans it."""
        if words is None or end <= start or end >= len(words):
            return end
        floor = backwards_to if backwards_to is not None else start + max(1, self.window // 2)
        e = end
        while e > floor and words[e] is not None and words[e] == words[e - 1]:
            e -= 1
        if e > floor or words[e] is None or words[e] != words[e - 1]:
            return e
        return end  # one word longer than half a window: cut it on a token boundary


def chunker_for(encoder: Any, overlap: int) -> TextChunker:
    """The chunker of a loaded local encoder (its tokenizer, limit and prompt)."""
    model = getattr(encoder, "model", None)
    if model is None or getattr(model, "tokenizer", None) is None:
        raise ChatspaceError("--long-text chunk/mean needs a local model with a tokenizer")
    return TextChunker(model.tokenizer, encoder.max_tokens, encoder.describe().get("prompt"), overlap)


def model_normalizes(encoder: Any) -> bool:
    """Whether the encoder's vectors come out unit length (the model ends in Normalize, or --normalize)."""
    if getattr(getattr(encoder, "cfg", None), "normalize", False):
        return True
    model = getattr(encoder, "model", None)
    try:
        return any(type(m).__name__ == "Normalize" for m in model)
    except TypeError:
        return False
