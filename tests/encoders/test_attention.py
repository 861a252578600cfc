"""Unpadded (varlen) batches: sentence-transformers 6 flattens a whole preprocess call when flash
attention is on. Flash attention needs a GPU, so an eager stand-in that honours the same varlen
arguments (cu_seq_lens_q: each sequence attends only to itself) takes its place at that boundary."""

from __future__ import annotations

import pytest

from chatspace.config import RunConfig
from chatspace.encoders.sentence_transformer import SentenceTransformerEncoder
from chatspace.hardware.devices import Device
from chatspace.stats import WorkerStats
from tests.helpers import cosine_rows

FLASH_KEYS = {"cu_seq_lens_q", "cu_seq_lens_k", "max_length_q", "max_length_k", "seq_idx"}


def varlen_standin(module, query, key, value, attention_mask, scaling=None, dropout=0.0, **kwargs):
    """flash_attn_varlen_func's contract in eager torch: (1, heads, total, dim) split at cu_seq_lens_q."""
    import torch

    cu = kwargs["cu_seq_lens_q"].tolist()
    parts = [
        torch.nn.functional.scaled_dot_product_attention(
            query[:, :, s:e], key[:, :, s:e], value[:, :, s:e], scale=scaling
        )
        for s, e in zip(cu[:-1], cu[1:], strict=True)
    ]
    return torch.cat(parts, dim=2).transpose(1, 2).contiguous(), None


@pytest.fixture(scope="module")
def flattening_encoder():
    """The packaged MiniLM with sentence-transformers' flattening switched on, as it is with
    flash_attention_2 on a GPU (the same collator, keys and position offset), and the stand-in."""
    from transformers import AttentionInterface, DataCollatorWithFlattening
    from transformers.masking_utils import AttentionMaskInterface, sdpa_mask

    AttentionInterface.register("varlen_standin", varlen_standin)
    AttentionMaskInterface.register("varlen_standin", sdpa_mask)
    enc = SentenceTransformerEncoder(
        RunConfig.from_options(dataset="unused", output_root="/tmp/unused").encoder,
        Device("cpu", "cpu:0"),
        None,
    )
    enc.load(WorkerStats())
    first = enc._model[0]
    first.model.set_attn_implementation("varlen_standin")
    first.data_collator = DataCollatorWithFlattening(
        return_seq_idx=True, return_flash_attn_kwargs=True, return_position_ids=True
    )
    if first.model_forward_params is not None:
        first.model_forward_params |= FLASH_KEYS
    first._flatten_position_offset = first._infer_flatten_position_offset()
    first.can_flatten_inputs = True
    return enc


def _preprocess(enc, texts):
    return enc._model.preprocess(
        texts, processing_kwargs={"common": {"return_tensors": None}, "text": {"padding": False}}
    )


def test_flattening_loses_per_text_lengths_and_prepare_says_so(flattening_encoder, texts):
    picked = texts[:30]
    assert len(_preprocess(flattening_encoder, picked)["input_ids"]) == 1  # the library's flattening
    with pytest.raises(RuntimeError, match="returned 1 sequences for 30 texts"):
        flattening_encoder.prepare(picked, WorkerStats())


def test_unpadded_batches_equal_encode_and_compute_no_padding(flattening_encoder, st_model, texts):
    enc = flattening_encoder
    picked = texts[:80]
    reference = st_model.encode(picked, batch_size=32)
    enc._take_over_flattening(enc._model)  # what load() does when the library would flatten
    enc._planner.varlen = True
    assert enc._varlen and not enc._model[0].can_flatten_inputs
    stats = WorkerStats()
    prepared = enc.prepare(picked, stats)
    assert len(prepared.token_counts) == len(picked)  # one length per text again
    emb = enc.encode(prepared, stats)
    assert cosine_rows(emb, reference).min() >= 0.99999
    assert stats.padded_tokens == stats.tokens  # nothing padded, nothing wasted
    assert enc.describe()["unpadded_batches"] is True
