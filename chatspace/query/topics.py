"""Labelled clusters: k-means on the vectors (faiss, spherical), labelled by class-based TF-IDF over each
cluster's texts, as BERTopic labels its topics (no language model needed).

Three passes over the shards, each holding one shard: sample and train the centroids; assign every row
(written to a temporary file) while keeping up to `texts_per_cluster` texts per cluster; then write
`id, cluster, label` with the labels the kept texts gave.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from chatspace.errors import UsageError
from chatspace.query import ann
from chatspace.query.vectors import Selection

TEXTS_PER_CLUSTER = 2000
TERMS_PER_LABEL = 3
TOP_TERMS = 10


@dataclass(frozen=True)
class ClusterParams:
    k: int
    iterations: int = 20
    seed: int = 42
    # k-means from several random starts, keeping the tightest: one start often splits a topic in two.
    restarts: int = 5
    texts_per_cluster: int = TEXTS_PER_CLUSTER


def train_centroids(selection: Selection, params: ClusterParams) -> np.ndarray:
    """Spherical k-means centroids, trained on an even sample (faiss uses 256 rows per centroid at most)."""
    faiss = ann.require_faiss()
    if params.k < 2:
        raise UsageError(f"--k must be at least 2, not {params.k}")
    if params.k > selection.rows:
        raise UsageError(f"--k {params.k} is more than the {selection.rows:,} rows selected")
    sample = np.ascontiguousarray(ann.training_sample(selection.blocks(), selection.rows))
    best, best_fit = None, -np.inf
    for start in range(params.restarts):
        kmeans = faiss.Kmeans(
            selection.dimension,
            params.k,
            niter=params.iterations,
            seed=params.seed + start,
            spherical=True,
            verbose=False,
            min_points_per_centroid=1,  # small datasets cluster too; faiss would only warn
        )
        kmeans.train(sample)
        similarity, _ = kmeans.index.search(sample, 1)
        fit = float(similarity.sum())  # how close the rows sit to their centres: higher is tighter
        if fit > best_fit:
            best, best_fit = kmeans.centroids, fit
    return best


def ctfidf(documents: list[str], top: int = TOP_TERMS) -> list[list[tuple[str, float]]]:
    """Each class's most distinctive terms: term frequency in the class times log(1 + A / f_t), where A
    is the average number of words per class and f_t the term's frequency over all classes (BERTopic)."""
    from sklearn.feature_extraction.text import CountVectorizer

    if not any(d.strip() for d in documents):
        return [[] for _ in documents]
    vectorizer = CountVectorizer(stop_words="english", token_pattern=r"(?u)\b[^\W\d_][\w-]{2,}\b")
    try:
        counts = vectorizer.fit_transform(documents)
    except ValueError:  # nothing but stop words
        return [[] for _ in documents]
    terms = vectorizer.get_feature_names_out()
    counts = counts.astype(np.float64)
    words_per_class = np.asarray(counts.sum(axis=1)).ravel()
    average = words_per_class.mean() or 1.0
    frequency = np.asarray(counts.sum(axis=0)).ravel()
    idf = np.log(1 + average / np.maximum(frequency, 1))
    tf = counts.multiply(1 / np.maximum(words_per_class, 1)[:, None]).tocsr()
    scores = tf.multiply(idf).tocsr()
    out = []
    for row in range(scores.shape[0]):
        values = scores.getrow(row).toarray().ravel()
        best = np.argsort(-values)[:top]
        out.append([(str(terms[i]), round(float(values[i]), 6)) for i in best if values[i] > 0])
    return out


def cluster(selection: Selection, params: ClusterParams, output: str | Path, progress=None) -> dict[str, Any]:
    """Write `output` (id, cluster, label, similarity to the centre, dataset, run_id) and return the
    sidecar's content: each cluster's size, label and top terms."""
    centroids = train_centroids(selection, params)
    faiss = ann.require_faiss()
    centres = faiss.IndexFlatIP(selection.dimension)
    centres.add(np.ascontiguousarray(centroids / np.linalg.norm(centroids, axis=1, keepdims=True)))
    sizes = np.zeros(params.k, dtype=np.int64)
    kept: list[list[str]] = [[] for _ in range(params.k)]
    with tempfile.TemporaryDirectory(prefix="chatspace-cluster-") as tmp:
        assigned = Path(tmp) / "assigned.parquet"
        with pq.ParquetWriter(str(assigned), _ASSIGNED) as writer:
            for shard, vectors in selection.blocks():
                similarity, nearest = centres.search(vectors, 1)
                rows = selection.read(shard, ["id", "dataset", "run_id", "text"])
                labels = nearest[:, 0]
                sizes += np.bincount(labels, minlength=params.k)
                for text, c in zip(rows.column("text").to_pylist(), labels.tolist(), strict=True):
                    if len(kept[c]) < params.texts_per_cluster:
                        kept[c].append(text or "")
                writer.write_table(
                    pa.table(
                        {
                            "id": rows.column("id"),
                            "cluster": pa.array(labels, pa.int32()),
                            "similarity": pa.array(similarity[:, 0], pa.float32()),
                            "dataset": rows.column("dataset"),
                            "run_id": rows.column("run_id"),
                        },
                        schema=_ASSIGNED,
                    )
                )
                if progress is not None:
                    progress(shard.rows)
        terms = ctfidf([" ".join(texts) for texts in kept])
        names = [
            ", ".join(t for t, _ in ts[:TERMS_PER_LABEL]) or f"cluster {c}" for c, ts in enumerate(terms)
        ]
        labels_by_cluster = pa.array(names, pa.string())
        with pq.ParquetWriter(str(output), _OUTPUT) as writer:
            for batch in pq.ParquetFile(assigned).iter_batches():
                table = pa.Table.from_batches([batch])
                label = labels_by_cluster.take(table.column("cluster"))
                writer.write_table(
                    pa.table(
                        {
                            "id": table.column("id"),
                            "cluster": table.column("cluster"),
                            "label": label,
                            "similarity": table.column("similarity"),
                            "dataset": table.column("dataset"),
                            "run_id": table.column("run_id"),
                        },
                        schema=_OUTPUT,
                    )
                )
    return {
        "method": "kmeans (faiss, spherical)",
        "k": params.k,
        "iterations": params.iterations,
        "restarts": params.restarts,
        "seed": params.seed,
        "rows": int(sizes.sum()),
        "labels": f"c-TF-IDF over up to {params.texts_per_cluster:,} texts per cluster (scikit-learn CountVectorizer, English stop words)",
        "runs": [m.get("run_id") for _, m in selection.runs],
        "clusters": [
            {"cluster": c, "label": names[c], "size": int(sizes[c]), "top_terms": terms[c]}
            for c in np.argsort(-sizes, kind="stable").tolist()
        ],
    }


_ASSIGNED = pa.schema(
    [
        ("id", pa.string()),
        ("cluster", pa.int32()),
        ("similarity", pa.float32()),
        ("dataset", pa.string()),
        ("run_id", pa.string()),
    ]
)
_OUTPUT = pa.schema(
    [
        ("id", pa.string()),
        ("cluster", pa.int32()),
        ("label", pa.string()),
        ("similarity", pa.float32()),
        ("dataset", pa.string()),
        ("run_id", pa.string()),
    ]
)


def sidecar_path(output: str | Path) -> Path:
    p = Path(output)
    return p.with_suffix(".json") if p.suffix else p.with_name(p.name + ".json")
