"""`chatspace search`, `index` and `near-duplicates` on an `s3://` root, against moto's S3 server: the
same answers as on the run's local copy."""

from __future__ import annotations

import orjson
import pytest

from tests.helpers import embed_args, run_cli, write_corpus

pytestmark = pytest.mark.slow


@pytest.fixture
def s3(s3_server):
    """The session's S3 server (this test's bucket is its own)."""
    return s3_server


def test_search_index_and_near_duplicates_on_an_s3_root(s3, tmp_path, texts):
    bucket = s3.make_bucket("query")
    url = f"s3://{bucket}/out"
    path, rows = write_corpus(tmp_path, texts, 40)
    run_cli(*embed_args(path, url, devices="cpu"), env=s3.env, check=True)

    query = rows[11]["text"]
    exact = run_cli("search", url, query, "-k", "3", "--format", "json", env=s3.env)
    assert exact.returncode == 0, exact.stderr
    found = orjson.loads(exact.stdout)
    assert found[0]["id"] == "doc-11" and found[0]["score"] >= 0.99 and found[0]["found_by"] == "exact"

    built = run_cli("index", url, "--kind", "hnsw", env=s3.env)
    assert built.returncode == 0, built.stderr
    assert s3.filesystem().glob(f"{bucket}/out/indexes/*/*/*/ann/index.faiss")
    assert run_cli("verify", url, env=s3.env).returncode == 0
    indexed = orjson.loads(
        run_cli("search", url, query, "-k", "3", "--format", "json", env=s3.env, check=True).stdout
    )
    assert [r["id"] for r in indexed] == [r["id"] for r in found] and indexed[0]["found_by"] == "hnsw"

    groups = tmp_path / "groups.parquet"
    dups = run_cli("near-duplicates", url, "--threshold", "0.99", "-o", str(groups), env=s3.env)
    assert dups.returncode == 0, dups.stderr
    assert groups.is_file() and "groups of near-duplicates" in dups.stdout
