"""The dry run of `embed-dataset`: no request sent, real token counts, the same plan as the encoder."""

from __future__ import annotations

import pytest

from chatspace.config import RunConfig
from chatspace.encoders.openai.dry_run import dry_run
from chatspace.encoders.openai.models import MAX_INPUT_TOKENS
from chatspace.encoders.openai.planning import RequestPlan
from chatspace.encoders.openai.settings import (
    OpenAISettings,
)
from chatspace.errors import UsageError
from chatspace.store.layout import RunLayout
from tests.encoders.openai.common import CL100K, LONG, make_cfg, make_encoder, n_tokens, run

pytestmark = pytest.mark.timeout(60)


def _write_jsonl(path, texts):
    import orjson

    with open(path, "wb") as fh:
        for t in texts:
            fh.write(orjson.dumps({"text": t}) + b"\n")


def test_dry_run_sends_nothing_and_counts_real_tokens(server, tmp_path, monkeypatch):
    monkeypatch.setenv("OPENAI_BASE_URL", server.base_url)
    texts = [f"row {i}: " + "lorem ipsum dolor " * (i % 5) for i in range(40)] + [LONG, None, "   "]
    data = tmp_path / "data.jsonl"
    _write_jsonl(data, texts)
    cfg = RunConfig.from_options(
        dataset=str(data),
        mode="openai",
        model="text-embedding-3-small",
        request_max_inputs=16,
        rows_per_shard=25,
        output_root=str(tmp_path / "out"),
    )
    report = dry_run(cfg, RunLayout.for_config(cfg))
    assert server.requests == []
    real = [t for t in texts if isinstance(t, str) and t.strip()]
    truncated_long = n_tokens(CL100K.decode(CL100K.encode_ordinary(LONG)[:MAX_INPUT_TOKENS]))
    assert report.tokens == sum(n_tokens(t) for t in real if t is not LONG) + truncated_long
    assert (report.rows, report.selected, report.truncated) == (41, 43, 1)
    assert report.skipped == {"null": 1, "empty": 1}
    assert report.requests == 2 + 1  # shard of 25 rows: 16 + 9; shard of 18 rows, 2 skipped: 16
    assert report.estimated_cost == pytest.approx(report.tokens / 1e6 * 0.02)
    text = report.render()
    assert (
        "no request sent" in text
        and "OPENAI_API_KEY not set" in text
        and f"{report.tokens:,}" in text
        and "cl100k_base" in text
    )
    assert str(tmp_path / "out") in text and "$" in text and server.base_url in text


def test_dry_run_unknown_model_cost_unknown_and_skip_mode(tmp_path):
    data = tmp_path / "d.jsonl"
    _write_jsonl(data, ["abcdefgh", "x" * 40_000])
    cfg = RunConfig.from_options(dataset=str(data), mode="openai", model="local/bge", on_long="skip", n=2)
    report = dry_run(cfg, RunLayout.for_config(cfg, tmp_path), settings=OpenAISettings(api_key=None))
    assert report.exact_tokens is False and report.estimated_cost is None
    assert report.tokens == 2 and report.skipped == {"too_long": 1} and report.requests == 1
    text = report.render()
    assert "approximate" in text and "unknown" in text and "OPENAI_API_KEY" in text


def test_dry_run_plans_like_the_encoder(server, tmp_path):
    texts = [("word " * (1 + i % 40)).strip() for i in range(300)]
    data = tmp_path / "d.jsonl"
    _write_jsonl(data, texts)
    kw = dict(request_max_inputs=50, request_max_tokens=400, rows_per_shard=1000, dimensions=8)
    cfg = make_cfg(dataset=str(data), **kw)
    report = dry_run(cfg, RunLayout.for_config(cfg, tmp_path))
    enc = make_encoder(server, **kw)
    _, prepared, stats = run(enc, texts)
    plan: RequestPlan = prepared.payload
    assert report.requests == len(plan.requests) == len(server.requests)
    assert report.tokens == stats.tokens


def test_dry_run_plans_per_worker_chunk(tmp_path):
    data = tmp_path / "d.jsonl"
    _write_jsonl(data, [f"row {i}" for i in range(2500)])
    cfg = RunConfig.from_options(
        dataset=str(data), mode="openai", model="text-embedding-3-small", rows_per_shard=5000
    )
    report = dry_run(cfg, RunLayout.for_config(cfg, tmp_path), settings=OpenAISettings(api_key=None))
    # The worker hands the encoder 1024 rows at a time: 1024, 1024, 452 -> 4 requests each.
    assert (report.rows, report.shards, report.requests) == (2500, 1, 12)


def test_dry_run_unknown_field_is_a_usage_error(tmp_path):
    data = tmp_path / "d.jsonl"
    _write_jsonl(data, ["a"])
    cfg = RunConfig.from_options(dataset=str(data), mode="openai", text_field="body")
    with pytest.raises(UsageError, match="--text-field 'body'"):
        dry_run(cfg, RunLayout.for_config(cfg, tmp_path), settings=OpenAISettings(api_key=None))
