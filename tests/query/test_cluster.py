"""`chatspace cluster` and the labelled map, as a person checks them: three made-up topics come back as
three clusters whose labels name them, every row gets a cluster and a label, and the map drawn with
the clusters shows each label at its cluster's centre and in the hover (headless Chromium)."""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import orjson
import pyarrow.parquet as pq
import pytest

import chatspace
from tests.helpers import embed_args, run_cli, write_jsonl
from tests.helpers.browser import Chromium, find_chromium

TOPICS = {
    "cooking": (
        ["recipe", "oven", "flour", "butter", "sauce", "garlic", "bake", "simmer"],
        "Preheat the {0} and mix the {1} with {2}; this {3} tastes best when you {4} the {5} slowly.",
    ),
    "football": (
        ["goal", "striker", "referee", "penalty", "midfield", "league", "match", "goalkeeper"],
        "The {0} scored a {1} after the {2} gave a {3}; the {4} won the {5} in the last minute.",
    ),
    "astronomy": (
        ["telescope", "galaxy", "nebula", "orbit", "planet", "comet", "star", "eclipse"],
        "Through the {0} we watched the {1} near the {2}, where a {3} crossed the {4} of a distant {5}.",
    ),
}
PER_TOPIC = 40


@pytest.fixture(scope="module")
def topics_run(tmp_path_factory) -> Path:
    rng = random.Random(7)
    rows = []
    for topic, (words, template) in TOPICS.items():
        for i in range(PER_TOPIC):
            rows.append({"id": f"{topic}-{i}", "text": template.format(*rng.sample(words, 6))})
    rng.shuffle(rows)
    folder = tmp_path_factory.mktemp("topics")
    out = folder / "out"
    run_cli(
        *embed_args(write_jsonl(folder / "topics.jsonl", rows), out, "--rows-per-shard", "50"), check=True
    )
    return out


@pytest.fixture(scope="module")
def clustered(topics_run, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("clusters") / "clusters.parquet"
    proc = run_cli("cluster", str(topics_run), "--k", "3", "-o", str(out))
    assert proc.returncode == 0, proc.stderr
    assert "3 clusters of 120 rows" in proc.stdout
    return out


def test_three_topics_become_three_clusters_labelled_by_their_words(topics_run, clustered):
    table = pq.read_table(clustered).to_pandas()
    stored = chatspace.load_embeddings(topics_run, columns=["id", "text"]).to_pandas()
    assert sorted(table["id"]) == sorted(stored["id"]) and table["label"].notna().all()
    table = table.merge(stored, on="id")
    table["topic"] = table["id"].str.split("-").str[0]
    for topic in TOPICS:
        mine = table[table["topic"] == topic]
        assert mine["cluster"].nunique() == 1, (topic, mine["cluster"].value_counts().to_dict())
        label = mine["label"].iloc[0]
        others = table.loc[table["topic"] != topic, "text"].str.lower()
        # Distinctive: each term of the label is in most of the topic's texts and in no other topic's.
        for term in label.split(", "):
            pattern = rf"\b{term}\b"
            assert mine["text"].str.lower().str.contains(pattern).mean() >= 0.5, (topic, label, term)
            assert not others.str.contains(pattern).any(), (topic, label, term)
    sidecar = orjson.loads(clustered.with_suffix(".json").read_bytes())
    assert sorted(c["size"] for c in sidecar["clusters"]) == [PER_TOPIC] * 3
    assert all(len(c["top_terms"]) >= 3 for c in sidecar["clusters"])


def test_the_python_entry_point_writes_the_same_clusters(topics_run, clustered, tmp_path):
    info = chatspace.cluster(str(topics_run), 3, output=tmp_path / "again.parquet")
    again = pq.read_table(tmp_path / "again.parquet").to_pandas().set_index("id")
    first = pq.read_table(clustered).to_pandas().set_index("id")
    assert (again.loc[first.index, "label"] == first["label"]).all()  # same seed, same clusters
    assert info["rows"] == 120 and Path(info["sidecar"]).is_file()


def test_too_many_clusters_is_one_line(topics_run, tmp_path):
    proc = run_cli("cluster", str(topics_run), "--k", "500", "-o", str(tmp_path / "c.parquet"))
    assert proc.returncode == 2 and "more than the 120 rows" in proc.stderr


# --- the labelled map ---------------------------------------------------------------------------------

ANNOTATIONS = "[...document.querySelectorAll('#map .annotation-text')].map(e => e.textContent)"


@pytest.mark.slow
def test_the_labelled_map_shows_labels_at_centres_and_in_the_hover(topics_run, clustered, tmp_path):
    pytest.importorskip("plotly", reason="needs the map extra: pip install 'chatspace[map]'")
    chromium = find_chromium()
    if chromium is None:
        pytest.skip("Chromium is not installed (`make browser` installs Debian's chromium)")
    coords = tmp_path / "coords.parquet"
    run_cli(
        "reduce-embeddings",
        str(topics_run),
        "--method",
        "pca",
        "-o",
        str(coords),
        "--no-progress",
        check=True,
    )
    groups = tmp_path / "groups.parquet"
    run_cli("near-duplicates", str(topics_run), "--threshold", "0.9", "-o", str(groups), check=True)
    html = tmp_path / "map.html"
    proc = run_cli(
        "visualize-embeddings", "-i", str(coords), "--clusters", str(clustered), "--duplicates", str(groups),
        "-o", str(html), "--png", str(tmp_path / "map.png"),
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    sidecar = orjson.loads(clustered.with_suffix(".json").read_bytes())
    labels = {f"{c['cluster']}: {c['label']}" for c in sidecar["clusters"]}
    points = pq.read_table(coords).to_pandas().merge(pq.read_table(clustered).to_pandas(), on="id")

    with Chromium(chromium) as browser:
        browser.open(html.as_uri())
        browser.wait_for("document.body.dataset.mapReady === '1'")
        assert set(browser.js(ANNOTATIONS)) == labels
        # Each label sits at its cluster's centre: the median of its points, in data coordinates.
        placed = browser.js("document.getElementById('map').layout.annotations.map(a => [a.x, a.y, a.text])")
        for x, y, text in placed:
            number = int(text.removeprefix("<b>").split(":")[0])
            members = points[points["cluster"] == number]
            assert np.isclose(x, members["x"].median(), atol=1e-4) and np.isclose(
                y, members["y"].median(), atol=1e-4
            )
        legend = browser.js("document.getElementById('map').data.map(t => t.name)")
        assert {name.rsplit(" (", 1)[0] for name in legend} == labels
        # The mouse over a point: the hover shows the point's id and its cluster's label.
        from tests.maps.test_maps import POINT_PIXELS, _loneliest

        row, x, y = _loneliest(browser.js(POINT_PIXELS), browser.width, browser.height)
        row_id = browser.js(f"chatspaceMap.rows.id[{row}]")
        browser.call("Input.dispatchMouseEvent", type="mouseMoved", x=x, y=y)
        hover = browser.wait_for("(document.querySelector('#map .hovertext') || {}).textContent", timeout=30)
        point = points.set_index("id").loc[row_id]
        assert row_id in hover and f"cluster {point['cluster']}: {point['label']}" in hover, hover


def test_the_map_colours_by_near_duplicate_group_and_names_the_group_in_the_hover(tmp_path):
    pytest.importorskip("plotly", reason="needs the map extra: pip install 'chatspace[map]'")
    import pyarrow as pa

    from chatspace.maps.colour import attach_duplicates
    from chatspace.maps.page import build_figure, render_html

    points = pa.table(
        {
            "id": ["a", "b", "c", "d"],
            "dataset": ["x"] * 4,
            "run_id": ["r"] * 4,
            "x": [0.0, 1.0, 2.0, 3.0],
            "y": [0.0, 1.0, 0.0, 1.0],
            "preview": ["one", "two", "three", "four"],
        }
    )
    groups = tmp_path / "groups.parquet"
    pq.write_table(
        pa.table(
            {
                "id": ["b", "d"],
                "group": [0, 0],
                "nearest_id": ["d", "b"],
                "similarity": [0.97, 0.97],
                "run_id": ["r", "r"],
            }
        ),
        groups,
    )
    table = attach_duplicates(points, groups)
    figure = build_figure(table, "duplicates")
    names = {trace.name: list(trace.hovertext) for trace in figure.data}
    assert set(names) == {"has a near-duplicate (2)", "no near-duplicate (2)"}
    assert all("near-duplicate group 0 (similarity 0.970)" in h for h in names["has a near-duplicate (2)"])
    assert not any("near-duplicate group" in h for h in names["no near-duplicate (2)"])
    page = render_html(table, color_by="duplicates")
    assert '"traces":[[1,3],[0,2]]' in page  # the page's row lists follow the traces
