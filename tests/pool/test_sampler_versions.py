"""The --n sampler's version is part of a run's identity: a run made before versions were recorded
(version 1) resumes with version 1 and verifies; a fresh run records the newest and resumes with it."""

from __future__ import annotations

import numpy as np
import orjson
import pytest

from chatspace.config import RunConfig
from chatspace.data import sampling
from chatspace.pool import run_plan
from chatspace.pool.supervisor import run_embedding
from chatspace.store.verify import verify
from tests.helpers import run_table, write_corpus

pytestmark = pytest.mark.slow

ROWS, N, SEED = 150, 60, 3  # 3 units of 20: the sampler is what is tested, not the size


@pytest.fixture
def corpus(tmp_path, texts, monkeypatch):
    # Versions 1 and 2 differ only on large draws; below this limit they differ on this small corpus too.
    monkeypatch.setattr(sampling, "OLD_DRAW_LIMIT", 10)
    path, _ = write_corpus(tmp_path, texts, ROWS)
    return path


def _cfg(path, out, **extra) -> RunConfig:
    return RunConfig.from_options(
        dataset=str(path),
        id_field="id",
        output_root=str(out),
        devices=("cpu",),
        rows_per_shard=20,
        n=N,
        seed=SEED,
        progress=False,
        **extra,
    )


def _rows(out) -> list[int]:
    return sorted(int(i.removeprefix("doc-")) for i in run_table(out).column("id").to_pylist())


def _drop_last_unit(result) -> None:
    """As if the run had stopped before its last unit: its shard and record gone."""
    layout = result.layout
    last = result.manifest["plan"]["units"] - 1
    path = layout.output.path
    (path / layout.shard_path(last)).unlink()
    (path / layout.unit_record_path(last)).unlink()


def test_a_run_made_before_sampler_versions_resumes_with_its_rows(corpus, tmp_path, monkeypatch):
    old_rows = sampling.select_rows(ROWS, n=N, p=None, seed=SEED, sampler=1).indices.tolist()
    new_rows = sampling.select_rows(ROWS, n=N, p=None, seed=SEED).indices.tolist()
    assert old_rows != new_rows
    out = tmp_path / "old"
    # The previous version: no sampler chosen, so version 1 drew the rows and none was recorded.
    with monkeypatch.context() as m:
        m.setattr(run_plan, "choose_sampler", lambda final, cfg: cfg)
        old = run_embedding(_cfg(corpus, out))
    assert old.manifest["config"]["sampler"] is None and old.manifest["sampling"]["sampler"] == 1
    assert old.manifest["config_hash"] == _cfg(corpus, out).output_hash()  # the hash runs had before
    assert _rows(out) == old_rows
    _drop_last_unit(old)

    resumed = run_embedding(_cfg(corpus, out, resume=True))
    assert resumed.manifest["status"] == "complete" and resumed.manifest["config"]["sampler"] is None
    assert resumed.manifest["config_hash"] == old.manifest["config_hash"]
    assert _rows(out) == old_rows
    assert verify(out)[1] == []


def test_a_fresh_run_records_the_newest_sampler_and_resumes_with_it(corpus, tmp_path):
    new_rows = sampling.select_rows(ROWS, n=N, p=None, seed=SEED).indices.tolist()
    out = tmp_path / "new"
    fresh = run_embedding(_cfg(corpus, out))
    assert fresh.manifest["config"]["sampler"] == fresh.manifest["sampling"]["sampler"] == 2
    assert fresh.manifest["config_hash"] != _cfg(corpus, out).output_hash()
    assert _rows(out) == new_rows
    records = sorted(fresh.layout.output.path.joinpath(fresh.layout.units_dir).glob("*.json"))
    assert {orjson.loads(r.read_bytes())["config_hash"] for r in records} == {fresh.manifest["config_hash"]}
    _drop_last_unit(fresh)

    resumed = run_embedding(_cfg(corpus, out, resume=True))
    assert resumed.manifest["status"] == "complete"
    assert resumed.manifest["config"]["sampler"] == sampling.SAMPLER_VERSION
    assert _rows(out) == new_rows
    assert verify(out)[1] == []
    # --overwrite starts afresh, with the newest sampler.
    again = run_embedding(_cfg(corpus, out, overwrite=True))
    assert again.manifest["config"]["sampler"] == sampling.SAMPLER_VERSION and _rows(out) == new_rows
    assert np.array_equal(_rows(out), new_rows)
