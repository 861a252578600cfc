"""Reading results where people read them: `load_embeddings(as_=...)` with decoded metadata,
`chatspace.connect` / `chatspace sql` (duckdb with the `FLOAT[dim]` cast done), and the README's
nearest-neighbour snippets, each run as written against a real run of the demo data."""

from __future__ import annotations

import re
import shlex
import subprocess
import sys

import numpy as np
import orjson
import pyarrow as pa
import pytest

import chatspace
from chatspace.errors import UsageError
from chatspace.store.reader import to_numpy
from tests.helpers import CHATSPACE, REPO, run_cli, write_jsonl

DEMO = REPO / "chatspace" / "resources" / "demo.jsonl"


@pytest.fixture(scope="module")
def demo_root(tmp_path_factory):
    """The first 40 rows of the shipped demo data, embedded for real, under `{cwd}/demo-output`."""
    d = tmp_path_factory.mktemp("frames")
    rows = [orjson.loads(line) for line in DEMO.read_text().splitlines()[:40]]
    data = write_jsonl(d / "demo.jsonl", rows)
    proc = run_cli(
        "embed-hf", "--dataset", str(data), "--id-field", "id", "--devices", "cpu",
        "--rows-per-shard", "16", "--output-root", str(d / "demo-output"), "--no-progress",
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    return d / "demo-output"


def _expected_neighbours(root, query_id: str = "demo-0001", k: int = 5) -> list[str]:
    ids, X = chatspace.load_embeddings(root, as_="numpy")
    X = X / np.linalg.norm(X, axis=1, keepdims=True)
    scores = X @ X[list(ids).index(query_id)]
    return [ids[i] for i in np.argsort(-scores)[:k]]


@pytest.mark.slow
def test_as_decodes_metadata_for_each_library(demo_root):
    import pandas as pd
    import polars as pl

    raw = chatspace.load_embeddings(demo_root)
    assert pa.types.is_string(raw.schema.field("metadata").type)  # the default is the table as stored
    stored = [orjson.loads(m) for m in raw.column("metadata").to_pylist()]
    assert stored[0]["tokens"] > 0
    # As a struct, every row has every key the run wrote (text_chars only on truncated rows): null elsewhere.
    keys = sorted({k for m in stored for k in m})
    stored = [{k: m.get(k) for k in keys} for m in stored]

    table = chatspace.load_embeddings(demo_root, as_="arrow")
    assert pa.types.is_struct(table.schema.field("metadata").type)
    assert [{k: m[k] for k in keys} for m in table.column("metadata").to_pylist()] == stored
    assert table.drop(["metadata"]).equals(raw.drop(["metadata"]))

    df = chatspace.load_embeddings(demo_root, as_="pandas")
    n = raw.num_rows
    assert isinstance(df, pd.DataFrame) and len(df) == n > 30
    assert [{k: m[k] for k in keys} for m in df["metadata"]] == stored
    assert isinstance(df["metadata"][0], dict)
    np.testing.assert_array_equal(np.stack(df["embedding"]), to_numpy(raw)[1])

    pl_df = chatspace.load_embeddings(demo_root, as_="polars", columns=["id", "metadata", "embedding"])
    assert pl_df.columns == ["id", "metadata", "embedding"]
    assert pl_df.schema["embedding"] == pl.Array(pl.Float32, 384)
    assert isinstance(pl_df.schema["metadata"], pl.Struct)
    assert pl_df["metadata"].struct.field("tokens").to_list() == [m["tokens"] for m in stored]

    ids, X = chatspace.load_embeddings(demo_root, as_="numpy")
    assert ids.tolist() == raw.column("id").to_pylist() and X.shape == (n, 384) and X.dtype == np.float32

    with pytest.raises(UsageError, match="as_='excel' is not one of arrow, pandas, polars, numpy"):
        chatspace.load_embeddings(demo_root, as_="excel")


@pytest.mark.slow
def test_duckdb_view_has_the_fixed_size_cast(demo_root):
    con = chatspace.connect(demo_root)
    types = dict(con.sql("select column_name, column_type from (describe embeddings)").fetchall())
    assert types["embedding"] == "FLOAT[384]" and types["metadata"] == "JSON"
    rows = con.sql(
        "select id, array_cosine_similarity(embedding, (select embedding from embeddings where id = "
        "'demo-0001')) as score, metadata->>'tokens' as tokens from embeddings order by score desc limit 5"
    ).fetchall()
    assert [r[0] for r in rows] == _expected_neighbours(demo_root)
    assert rows[0][1] == pytest.approx(1.0, abs=1e-5) and int(rows[0][2]) > 0
    # The same filters as load_embeddings; a filter that matches nothing is the reader's one line.
    rows_in_run = chatspace.load_embeddings(demo_root).num_rows
    assert con.sql("select count(*) from embeddings").fetchall()[0][0] == rows_in_run
    with pytest.raises(UsageError, match="no run under .* matches split='test'"):
        chatspace.connect(demo_root, split="test")


@pytest.mark.slow
def test_sql_command_prints_results_and_refuses_bad_sql_in_one_line(demo_root):
    query = (
        "select id, array_cosine_similarity(embedding, (select embedding from embeddings "
        "where id = 'demo-0001')) as score from embeddings order by score desc limit 5"
    )
    proc = run_cli("sql", str(demo_root), query, "--format", "json")
    assert proc.returncode == 0, proc.stderr
    got = [orjson.loads(line) for line in proc.stdout.splitlines()]
    assert [r["id"] for r in got] == _expected_neighbours(demo_root)

    proc = run_cli("sql", str(demo_root), "select split, count(*) as n from embeddings group by split")
    rows_in_run = chatspace.load_embeddings(demo_root).num_rows
    assert proc.returncode == 0 and "train" in proc.stdout and str(rows_in_run) in proc.stdout

    proc = run_cli("sql", str(demo_root), "select nope from embeddings")
    assert proc.returncode == 2
    assert proc.stderr.count("\n") == 1 and "query failed" in proc.stderr and "nope" in proc.stderr
    assert "Traceback" not in proc.stderr


def _readme_snippets() -> list[tuple[str, str]]:
    readme = (REPO / "README.md").read_text()
    section = readme.split("### Nearest neighbours, in each library", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```(python)?\n(.*?)```", section, flags=re.S)
    return [("python" if lang else "shell", body) for lang, body in blocks]


@pytest.mark.slow
def test_readme_nearest_neighbour_snippets_run_as_written(demo_root):
    snippets = _readme_snippets()
    assert [body.split("\n", 1)[0] for kind, body in snippets if kind == "python"] == [
        "# numpy",
        "# pandas",
        "# polars",
        "# duckdb",
    ]
    assert any(kind == "shell" for kind, _ in snippets)
    expected = _expected_neighbours(demo_root)
    for kind, body in snippets:
        if kind == "python":
            cmd = [sys.executable, "-c", body]
        else:
            args = shlex.split(body.strip())
            assert args[:2] == ["chatspace", "sql"]
            cmd = [*CHATSPACE, *args[1:]]
        proc = subprocess.run(cmd, cwd=demo_root.parent, capture_output=True, text=True, timeout=240)
        assert proc.returncode == 0, f"{body}\n{proc.stderr}"
        found = re.findall(r"demo-\d{4}", proc.stdout)
        assert found[:5] == expected, f"{body}\n{proc.stdout}"
