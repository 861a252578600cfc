"""What the model really sees: the pipeline against a model card's plain reference (tokenizer + the
model + its pooling, no sentence-transformers), for a Qwen3-Embedding-shaped model with random weights:
a Qwen3 decoder, last-token pooling, left padding, L2 normalisation."""

from __future__ import annotations

import sys

import numpy as np
import pytest

from chatspace.config import RunConfig
from chatspace.encoders.sentence_transformer import SentenceTransformerEncoder
from chatspace.hardware.devices import Device
from chatspace.stats import WorkerStats
from tests.helpers import REPO, cosine_rows

SMALL = {  # Qwen3-Embedding-0.6B's architecture at test size (the full shape runs in `make gpu-check`)
    "hidden_size": 64,
    "intermediate_size": 128,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "head_dim": 16,
    "vocab_size": 30522,
}


@pytest.fixture(scope="module")
def qwen3_small(tmp_path_factory):
    sys.path.insert(0, str(REPO / "benchmarks"))
    import qwen3_random

    return str(
        qwen3_random.build(tmp_path_factory.mktemp("qwen3"), layers=2, max_seq_length=128, overrides=SMALL)
    )


def model_card_reference(path: str, texts: list[str], max_length: int) -> tuple[np.ndarray, np.ndarray]:
    """Qwen3-Embedding's model card, verbatim in substance: tokenize with left padding, run the model,
    take the last token's hidden state, L2-normalise. Returns (embeddings, tokens per text)."""
    import torch
    import torch.nn.functional as F
    from transformers import AutoModel, AutoTokenizer

    def last_token_pool(last_hidden_states, attention_mask):
        left_padding = attention_mask[:, -1].sum() == attention_mask.shape[0]
        if left_padding:
            return last_hidden_states[:, -1]
        sequence_lengths = attention_mask.sum(dim=1) - 1
        return last_hidden_states[torch.arange(last_hidden_states.shape[0]), sequence_lengths]

    tokenizer = AutoTokenizer.from_pretrained(path, padding_side="left")
    model = AutoModel.from_pretrained(path).eval()
    out = []
    counts = []
    for s in range(0, len(texts), 16):
        batch = tokenizer(
            texts[s : s + 16], padding=True, truncation=True, max_length=max_length, return_tensors="pt"
        )
        with torch.inference_mode():
            hidden = model(**batch).last_hidden_state
        out.append(F.normalize(last_token_pool(hidden, batch["attention_mask"]), p=2, dim=1).numpy())
        counts.extend(batch["attention_mask"].sum(dim=1).tolist())
    return np.concatenate(out), np.array(counts)


@pytest.fixture(scope="module")
def card_reference(qwen3_small):
    """model_card_reference, run once per (texts, max_length) for the module: the cases read it only."""
    computed: dict[tuple[tuple[str, ...], int], tuple[np.ndarray, np.ndarray]] = {}

    def reference(texts: list[str], max_length: int) -> tuple[np.ndarray, np.ndarray]:
        key = (tuple(texts), max_length)
        if key not in computed:
            emb, counts = model_card_reference(qwen3_small, texts, max_length)
            emb.setflags(write=False)
            counts.setflags(write=False)
            computed[key] = emb, counts
        return computed[key]

    return reference


@pytest.mark.parametrize("options", [{}, {"batch_size": 5}], ids=["token-budget", "rows5"])
def test_qwen3_shape_matches_the_model_card_reference(qwen3_small, card_reference, texts, options):
    picked = texts[:60]
    cfg = RunConfig.from_options(dataset="unused", output_root="/tmp/unused", model=qwen3_small, **options)
    enc = SentenceTransformerEncoder(cfg.encoder, Device("cpu", "cpu:0"), None)
    enc.load(WorkerStats())
    assert enc._model.tokenizer.padding_side == "left"
    stats = WorkerStats()
    prepared = enc.prepare(picked, stats)
    ref, ref_counts = card_reference(picked, enc.max_tokens)
    # One sequence per text (no flattening, no chat template), with exactly the reference's tokens.
    assert len(prepared.token_counts) == len(picked) == len(prepared.payload["input_ids"])
    assert prepared.token_counts.tolist() == ref_counts.tolist()
    emb = enc.encode(prepared, stats)
    assert emb.shape == ref.shape
    cos = cosine_rows(emb, ref)
    assert cos.min() >= 0.99999, f"worst row {int(cos.argmin())}: {cos.min()}"
