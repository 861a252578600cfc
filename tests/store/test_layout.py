"""Output names are safe: nothing can land outside the root."""

from __future__ import annotations

import pytest

from chatspace.errors import UsageError
from chatspace.store.layout import RunLayout, ensure_writable_root, slug


@pytest.mark.parametrize(
    "name", ["../../etc", "..", ".", "/abs/path", "a/../../b", "~user", "x\\..\\y", "", "\x00bad", "..."]
)
def test_slug_is_one_safe_component(name):
    s = slug(name)
    assert s and "/" not in s and "\\" not in s and s not in (".", "..") and not s.startswith(".")


def test_hub_ids_stay_readable():
    assert slug("HuggingFaceFW/fineweb") == "HuggingFaceFW__fineweb"
    assert slug("sentence-transformers/all-MiniLM-L6-v2") == "sentence-transformers__all-MiniLM-L6-v2"


def test_layout_paths_stay_under_root(tmp_path):
    layout = RunLayout.for_run(tmp_path, "../../evil/model", "../../data", "sub/../..", "../split")
    for p in (layout.embeddings_dir, layout.index_dir, layout.shard_path(3), layout.manifest_path):
        assert p.resolve().is_relative_to(tmp_path.resolve())
    assert layout.shard_path(3).name == "shard-00003.parquet"


def test_subset_joins_dataset_part(tmp_path):
    layout = RunLayout.for_run(tmp_path, "m", "HuggingFaceFW/fineweb", "sample-10BT", "train")
    assert (
        layout.embeddings_dir.relative_to(tmp_path).as_posix()
        == "embeddings/m/HuggingFaceFW__fineweb__sample-10BT/train"
    )


def test_unwritable_root_is_a_usage_error(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(UsageError, match="not writable"):
        ensure_writable_root(blocker / "sub")
