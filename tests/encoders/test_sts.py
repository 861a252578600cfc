"""STS Benchmark through the whole pipeline: the published all-MiniLM-L6-v2 score, 82.03 x100."""

from __future__ import annotations

import csv

import numpy as np
import pyarrow.parquet as pq
import pytest

from tests.helpers import SHARED_DATA, run_cli, write_jsonl

STS_TEST = SHARED_DATA / "stsbenchmark" / "sts-test.csv"

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        not STS_TEST.is_file(),
        reason=f"STS Benchmark data not present at {STS_TEST} (it ships beside the project, not in it)",
    ),
]


def _pairs():
    with open(STS_TEST, newline="", encoding="utf-8") as fh:
        for row in csv.reader(fh, delimiter="\t", quoting=csv.QUOTE_NONE):
            yield float(row[4]), row[5], row[6]


def test_sts_benchmark_spearman(tmp_path):
    import pandas as pd

    pairs = list(_pairs())
    assert len(pairs) == 1379
    sentences = sorted({s for _, a, b in pairs for s in (a, b)})
    ids = {s: f"s{i}" for i, s in enumerate(sentences)}
    data = write_jsonl(tmp_path / "sts.jsonl", [{"id": ids[s], "text": s} for s in sentences])
    proc = run_cli(
        "embed-hf",
        "--dataset",
        str(data),
        "--id-field",
        "id",
        "--devices",
        "cpu",
        "--output-root",
        str(tmp_path / "out"),
        "--no-progress",
    )
    assert proc.returncode == 0, proc.stderr
    table = pq.ParquetDataset(sorted((tmp_path / "out").glob("embeddings/*/*/*/*.parquet"))).read()
    vec = dict(
        zip(table.column("id").to_pylist(), np.asarray(table.column("embedding").to_pylist()), strict=True)
    )
    assert len(vec) == len(sentences)
    a = np.stack([vec[ids[s]] for _, s, _ in pairs])
    b = np.stack([vec[ids[s]] for _, _, s in pairs])
    cos = (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))
    gold = [g for g, _, _ in pairs]
    spearman = pd.Series(cos).corr(pd.Series(gold), method="spearman") * 100
    assert abs(spearman - 82.03) <= 0.05, spearman
