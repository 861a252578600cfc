"""Set-up the encoder test modules share: the 200 mixed-length texts and their library encodings."""

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
