"""Set-up the encoder test modules share: the 200 mixed-length texts with their library encodings, and
one compiled encoder (compiling is most of a compile test's time; the tests only read the encoder)."""

from __future__ import annotations

import numpy as np
import pytest


@pytest.fixture(scope="session")
def texts200(texts) -> list[str]:
    # Mix the order so that lengths are not sorted in the input (results must come back in input order).
    rng = np.random.default_rng(0)
    return [texts[i] for i in rng.permutation(200)]


@pytest.fixture(scope="session")
def reference(st_model, texts200) -> np.ndarray:
    """SentenceTransformer.encode of texts200, computed once; read-only so no test can change it."""
    emb = st_model.encode(texts200, batch_size=32)
    emb.setflags(write=False)
    return emb


@pytest.fixture(scope="session")
def compiled_encoder():
    """--compile-model with 64-token buckets and a 512-token budget, warmed up (and so compiled) once.

    Yields (encoder, counters right after warm-up). A test runs its own batches through it and checks
    that its run compiled nothing beyond what warm-up did."""
    pytest.importorskip("torch._inductor")
    import torch

    from tests.encoders.test_encoder import _encoder

    with torch._dynamo.config.patch(fail_on_recompile_limit_hit=True):
        enc = _encoder(compile_model=True, bucket_max_tokens=64, tokens_per_batch=512)
    return enc, enc.compile_counters
