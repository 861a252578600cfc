"""Texts cut by characters before tokenizing keep exactly the tokens the model keeps.

Each case tokenizes the same texts with and without the cut and compares token ids, counts, the
truncation flag and the characters that reached the model, row by row; the cut is moved across the
whole range where a prefix holds fewer, as many, and more tokens than the model keeps.
"""

from __future__ import annotations

import os

import numpy as np
import pytest

from chatspace.encoders.tokenize import cut_bound, cut_point, tokenize, use_tokenizer_threads

MAX_TOKENS = 256


@pytest.fixture(scope="module")
def model(st_model):
    st_model.max_seq_length = MAX_TOKENS
    return st_model


def _long_texts(texts: list[str]) -> list[str]:
    """Real prose, multibyte text and whitespace runs, each well past the model's 256 tokens."""
    prose = " ".join(texts[:80])
    return [
        prose,
        prose.replace(" ", "  "),  # every gap a run of two spaces
        prose.replace(". ", ".\n\n   \t "),  # mixed whitespace runs after sentences
        "word" + " " * 5000 + prose,  # a run longer than any cut, right at the start
        prose[:900] + " " * 3000 + prose,  # a run straddling the cut
        "naïve café crème brûlée, señor; Ærøskøbing " * 120,  # accented (precomposed)
        "cafe\u0301 re\u0301sume\u0301 nai\u0308ve " * 200,  # combining marks after the base letter
        "日本語のテキストと English words 混在 します。 " * 150,  # CJK (each character a word for BERT)
        "emoji 😀🚀 flags 🇫🇷🇯🇵 and ZWJ 👩‍💻 sequences " * 150,  # astral and joined characters
        "Ελληνικά κείμενα και русский текст, العربية أيضاً " * 150,  # Greek, Cyrillic, Arabic
        "x" * 20000,  # no space at all: never cut
        "a" * 4000 + " " + prose,  # one very long word, then a space after the bound
        prose + " " * 4000,  # trailing whitespace after the tokens kept
    ]


def _same(a, b) -> None:
    assert len(a.texts) == len(b.texts)
    for i in range(len(a.texts)):
        assert a.payload["input_ids"][i] == b.payload["input_ids"][i], f"row {i}: ids differ"
        assert a.payload["token_type_ids"][i] == b.payload["token_type_ids"][i], f"row {i}"
    np.testing.assert_array_equal(a.token_counts, b.token_counts)
    np.testing.assert_array_equal(a.truncated, b.truncated)
    np.testing.assert_array_equal(a.embedded_chars, b.embedded_chars)
    assert a.texts == b.texts  # the user's texts, never the cut ones


@pytest.mark.parametrize("prompt", [None, "passage: "])
def test_cut_texts_keep_the_tokens_the_model_keeps(model, texts, prompt):
    rows = _long_texts(texts) + texts[:40]  # short texts are never cut
    whole = tokenize(model, rows, prompt=prompt, max_tokens=MAX_TOKENS)
    assert whole.truncated[:10].all()  # the long texts really are truncated
    bound = cut_bound(model.tokenizer, MAX_TOKENS)
    assert bound is not None and bound < len(rows[0])
    # From cuts that keep too few tokens (redone whole) to ones that keep plenty.
    for cut_at in (100, 600, 900, 1000, 1100, 1200, 1400, 2000, bound):
        _same(tokenize(model, rows, prompt=prompt, max_tokens=MAX_TOKENS, cut_at=cut_at), whole)


def test_cut_straddling_the_token_limit_char_by_char(model, texts):
    """Move the cut one character at a time across the point where the prefix reaches 256 tokens."""
    text = " ".join(texts[:40])
    enc = model.tokenizer(text, truncation=True, max_length=MAX_TOKENS)
    end_of_last_kept = max(e for _, e in enc.encodings[0].offsets)
    whole = tokenize(model, [text], prompt=None, max_tokens=MAX_TOKENS)
    for cut_at in range(end_of_last_kept - 30, end_of_last_kept + 30):
        _same(tokenize(model, [text], prompt=None, max_tokens=MAX_TOKENS, cut_at=cut_at), whole)


def test_cut_point_rules():
    assert cut_point("alpha beta gamma", 8) == 5  # the space before "beta"
    assert cut_point("alpha    beta", 7) == 5  # the start of the run, after the word
    assert cut_point("alpha\n beta", 7) is None  # never just after a "\n" (it may join the word before)
    assert cut_point("x" * 50, 10) is None
    assert cut_point("x" * 50 + " tail", 10) == 50  # the first cut after the bound
    assert cut_point(" " * 20 + "word", 10) is None


def test_no_cut_for_tokenizers_whose_tokens_could_change(model):
    from tokenizers import normalizers

    tok = model.tokenizer
    assert cut_bound(tok, MAX_TOKENS) == 12 * MAX_TOKENS
    backend = tok.backend_tokenizer
    saved_side, saved_norm = tok.truncation_side, backend.normalizer
    try:
        tok.truncation_side = "left"  # keeps the last tokens: a cut at the start would lose them
        assert cut_bound(tok, MAX_TOKENS) is None
        tok.truncation_side = saved_side
        backend.normalizer = normalizers.Replace("a b", "ab")  # may join across a space
        assert cut_bound(tok, MAX_TOKENS) is None
    finally:
        tok.truncation_side, backend.normalizer = saved_side, saved_norm
    assert cut_bound(tok, MAX_TOKENS) == 12 * MAX_TOKENS


def _trained(kind: str, corpus: list[str]):
    """A real byte-level BPE or Metaspace/Unigram tokenizer, trained here on real prose."""
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    if kind == "byte-level-bpe":
        tok = Tokenizer(models.BPE())
        tok.normalizer = normalizers.NFC()
        tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
        tok.decoder = decoders.ByteLevel()
        trainer = trainers.BpeTrainer(vocab_size=2000, initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    else:
        tok = Tokenizer(models.Unigram())
        tok.normalizer = normalizers.NFKC()
        tok.pre_tokenizer = pre_tokenizers.Metaspace()
        trainer = trainers.UnigramTrainer(vocab_size=2000, unk_token="<unk>", special_tokens=["<unk>"])
    tok.train_from_iterator(corpus, trainer)
    return PreTrainedTokenizerFast(tokenizer_object=tok, truncation_side="right")


@pytest.mark.parametrize("kind", ["byte-level-bpe", "metaspace-unigram"])
def test_cut_keeps_tokens_for_other_tokenizer_families(texts, kind):
    tok = _trained(kind, texts[:2000])
    limit = 128
    bound = cut_bound(tok, limit)
    assert bound is not None
    for text in _long_texts(texts):
        full = tok(text, truncation=True, max_length=limit)
        for cut_at in (300, 500, 700, 1000, bound):
            p = cut_point(text, cut_at)
            if p is None or p >= len(text):
                continue
            prefix = tok(text[:p], truncation=True, max_length=limit)
            if prefix.encodings[0].overflowing:  # the rule: only then are the prefix's tokens used
                assert prefix["input_ids"] == full["input_ids"], (kind, cut_at, text[:40])
                assert prefix.encodings[0].offsets == full.encodings[0].offsets


def test_tokenizer_threads_are_the_workers_share(monkeypatch):
    monkeypatch.setenv("TOKENIZERS_PARALLELISM", "false")
    monkeypatch.delenv("RAYON_NUM_THREADS", raising=False)
    use_tokenizer_threads(None)
    assert os.environ["TOKENIZERS_PARALLELISM"] == "false" and "RAYON_NUM_THREADS" not in os.environ
    use_tokenizer_threads(6)
    assert os.environ["TOKENIZERS_PARALLELISM"] == "true" and os.environ["RAYON_NUM_THREADS"] == "6"
    use_tokenizer_threads(1)
    assert os.environ["TOKENIZERS_PARALLELISM"] == "false" and os.environ["RAYON_NUM_THREADS"] == "1"
