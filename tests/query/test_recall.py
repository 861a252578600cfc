"""The index's recall@10 against exact search at 100k vectors, with the parameters `chatspace index`
uses by default. The vectors are a mixture of topics on the unit sphere (text embeddings cluster; on
uniform noise no index beats a scan)."""

from __future__ import annotations

import numpy as np
import pytest

from chatspace.query import ann

pytestmark = pytest.mark.slow
ROWS, DIM, TOPICS, QUERIES, K = 100_000, 128, 1000, 300, 10


def _mixture(n: int, seed: int) -> np.ndarray:
    centres = np.random.default_rng(0).standard_normal((TOPICS, DIM)).astype(np.float32)
    rng = np.random.default_rng(seed)
    x = centres[rng.integers(0, TOPICS, n)] / np.sqrt(DIM) + 0.08 * rng.standard_normal((n, DIM)).astype(
        np.float32
    )
    return x / np.linalg.norm(x, axis=1, keepdims=True)


@pytest.fixture(scope="module")
def data():
    vectors, queries = _mixture(ROWS, 1), _mixture(QUERIES, 2)
    scores = queries @ vectors.T
    truth = np.argpartition(-scores, K, axis=1)[:, :K]  # the exact top K (a set: their order is unused)
    return vectors, queries, truth


@pytest.mark.parametrize("kind, quantize", [("hnsw", "none"), ("ivf", "none"), ("hnsw", "int8")])
def test_recall_at_10_is_at_least_095_at_100k_vectors(data, kind, quantize):
    faiss = ann.require_faiss()
    vectors, queries, truth = data
    params = ann.IndexParams(kind=kind, quantize=quantize).resolved(ROWS)
    blocks = lambda: ((None, vectors[s : s + 10_000]) for s in range(0, ROWS, 10_000))  # noqa: E731
    index = ann.LoadedIndex(ann.build(faiss, params, DIM, ROWS, blocks), {}, params)
    _, found = index.search(queries, K)
    recall = np.mean([len(set(f) & set(t)) / K for f, t in zip(found, truth, strict=True)])
    assert recall >= 0.95, recall
