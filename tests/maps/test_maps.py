"""reduce-embeddings and visualize-embeddings, end to end: two real runs (plain text, and the first
assistant turns of chats) embedded by the CLI, reduced by every method, and the map drawn by headless
Chromium from disk and from the local server, clicked and searched like a person would."""

from __future__ import annotations

import re
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np
import orjson
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tests.helpers import CHATSPACE, REPO, run_cli
from tests.helpers.browser import Chromium, find_chromium

pytest.importorskip("umap", reason="needs the map extra: pip install 'chatspace[map]'")
pytest.importorskip("openTSNE", reason="needs the map extra: pip install 'chatspace[map]'")
pytest.importorskip("plotly", reason="needs the map extra: pip install 'chatspace[map]'")

DEMO = REPO / "chatspace" / "resources" / "demo.jsonl"
ROWS_PER_RUN = 120


@pytest.fixture(scope="module")
def two_runs(tmp_path_factory) -> Path:
    """One output root holding a plain-text run (`texts`) and a chat first-assistant run (`chats`)."""
    base = tmp_path_factory.mktemp("maps")
    # The demo file as it is (its few broken rows included), once per shape, ids made distinct.
    lines = [line for line in DEMO.read_bytes().splitlines() if line.strip()]
    for prefix, name in (("t", "texts.jsonl"), ("c", "chats.jsonl")):
        out = []
        for line in lines:
            try:
                row = orjson.loads(line)
            except orjson.JSONDecodeError:
                out.append(line)
                continue
            if isinstance(row, dict) and isinstance(row.get("id"), str):
                row["id"] = f"{prefix}-{row['id']}"
            out.append(orjson.dumps(row))
        (base / name).write_bytes(b"\n".join(out) + b"\n")
    root = base / "out"
    common = ("--id-field", "id", "--devices", "cpu", "--n", str(ROWS_PER_RUN), "--output-root", str(root))
    run_cli("embed-hf", "--dataset", str(base / "texts.jsonl"), *common, "--no-progress", check=True)
    run_cli(
        "embed-hf",
        "--dataset",
        str(base / "chats.jsonl"),
        "--text-field",
        "conversation",
        "--extract",
        "first-assistant",
        *common,
        "--no-progress",
        check=True,
    )
    return root


def stored_rows(root: Path) -> dict[str, dict]:
    import chatspace

    table = chatspace.load_embeddings(root, columns=["id", "dataset", "split", "text", "embedding"])
    return {r["id"]: r for r in table.to_pylist()}


def reduce(root_or_dirs, out: Path, *args: str) -> pa.Table:
    dirs = [str(d) for d in (root_or_dirs if isinstance(root_or_dirs, list) else [root_or_dirs])]
    proc = run_cli(
        "reduce-embeddings", "--embedding-dirs", *dirs, "--output", str(out), "--no-progress", *args
    )
    assert proc.returncode == 0, proc.stderr
    return pq.read_table(out)


@pytest.fixture(scope="module")
def reduced(two_runs, tmp_path_factory):
    """`reduce-embeddings --method M` of both runs, run once per method for the module (the UMAP one is
    also the map the browser tests draw): M -> the coordinates file."""
    done: dict[str, Path] = {}

    def by(method: str) -> Path:
        if method not in done:
            out = tmp_path_factory.mktemp(f"coords-{method}") / "coords.parquet"
            reduce(two_runs, out, "--method", method)
            done[method] = out
        return done[method]

    return by


@pytest.mark.slow
@pytest.mark.parametrize("method", ["pca", "umap", "tsne"])
def test_every_method_gives_one_finite_point_per_row_with_its_dataset(two_runs, reduced, method):
    stored = stored_rows(two_runs)
    coords = reduced(method)
    table = pq.read_table(coords)
    rows = table.to_pylist()
    assert len(rows) == len(stored) > ROWS_PER_RUN
    assert sorted(r["id"] for r in rows) == sorted(stored)  # one point per row, none twice
    for r in rows:
        assert np.isfinite([r["x"], r["y"]]).all()
        assert r["dataset"] == stored[r["id"]]["dataset"]
        assert r["text"] == stored[r["id"]]["text"]
        assert r["model"] and r["run_id"]
    datasets = {r["dataset"] for r in rows}
    assert len(datasets) == 2 and {Path(d).stem for d in datasets} == {"texts", "chats"}
    side = orjson.loads(coords.with_suffix(".json").read_bytes())
    assert side["method"] == method and side["points"] == len(rows)
    assert {i["dataset"] for i in side["inputs"]} == datasets
    assert all(i["run_id"] and i["manifest"] for i in side["inputs"])
    assert set(side["timings"]) >= {"read_s", "reduce_s", "total_s"}


@pytest.mark.slow
def test_pca_equals_numpy_pca_of_the_same_vectors(two_runs, tmp_path):
    from sklearn.decomposition import PCA

    stored = stored_rows(two_runs)
    table = reduce(two_runs, tmp_path / "pca.parquet", "--method", "pca", "--n-components", "3")
    ids = table.column("id").to_pylist()
    got = np.column_stack([table.column(a).to_numpy() for a in "xyz"]).astype(np.float64)
    X = np.asarray([stored[i]["embedding"] for i in ids], dtype=np.float64)
    centered = X - X.mean(axis=0)
    _, _, vt = np.linalg.svd(centered, full_matrices=False)
    want = centered @ vt[:3].T
    signs = np.sign((got * want).sum(axis=0))  # a component's sign is a convention
    np.testing.assert_allclose(got, want * signs, atol=1e-4 * np.abs(want).max())
    np.testing.assert_allclose(got, PCA(3).fit_transform(X), atol=1e-4 * np.abs(want).max())


@pytest.mark.slow
@pytest.mark.parametrize("method", ["umap", "tsne"])
def test_coordinates_are_deterministic_for_a_seed(two_runs, tmp_path, method):
    args = ("--method", method, "--max-samples", "80", "--sample-seed", "7", "--seed", "3")
    a = reduce(two_runs, tmp_path / "a.parquet", *args)
    b = reduce(two_runs, tmp_path / "b.parquet", *args)
    assert a.column("id").to_pylist() == b.column("id").to_pylist()
    np.testing.assert_array_equal(a.column("x").to_numpy(), b.column("x").to_numpy())
    np.testing.assert_array_equal(a.column("y").to_numpy(), b.column("y").to_numpy())
    c = reduce(two_runs, tmp_path / "c.parquet", *args[:-1], "4")
    assert not np.array_equal(a.column("x").to_numpy(), c.column("x").to_numpy())


def test_tsne_interpolates_by_fft_on_large_2d_maps_and_uses_barnes_hut_below(monkeypatch):
    """The maps above are small (Barnes-Hut); a 2-D map of FFT_FROM_POINTS points or more takes the FFT
    method (3-D maps always Barnes-Hut: openTSNE's FFT exists up to 2-D)."""
    import openTSNE

    from chatspace.maps import reduce as reduce_mod
    from chatspace.maps.params import ReduceParams

    asked = []

    class RecordingTSNE:
        def __init__(self, **options):
            asked.append((options["negative_gradient_method"], options["n_components"]))

        def fit(self, vectors):
            return np.zeros((len(vectors), asked[-1][1]))

    monkeypatch.setattr(openTSNE, "TSNE", RecordingTSNE)
    at = reduce_mod.FFT_FROM_POINTS
    for n, dims in ((at, 2), (at - 1, 2), (at, 3)):
        params = ReduceParams(method="tsne", n_components=dims)
        coords, info = reduce_mod.tsne_reduce(np.zeros((n, 4), np.float32), params, False)
        assert coords.shape == (n, dims) and info["negative_gradient_method"] == asked[-1][0]
    assert [method for method, _ in asked] == ["fft", "bh", "bh"]


@pytest.mark.slow
def test_max_samples_draws_per_dataset_reproducibly_by_sample_seed(two_runs, tmp_path):
    def ids(seed: str, name: str) -> list[str]:
        t = reduce(two_runs, tmp_path / name, "--method", "pca", "--max-samples", "30", "--sample-seed", seed)
        return t.column("id").to_pylist()

    first, again, other = ids("1", "a.parquet"), ids("1", "b.parquet"), ids("2", "c.parquet")
    assert first == again
    assert set(first) != set(other)
    assert sum(i.startswith("t-") for i in first) == 30
    assert sum(i.startswith("c-") for i in first) == 30
    # One dataset's draw does not depend on which other inputs come along.
    alone = reduce(
        two_runs, tmp_path / "d.parquet", "--method", "pca", "--max-samples", "30", "--sample-seed", "1",
        "--dataset", "chats",
    ).column("id").to_pylist()  # fmt: skip
    assert alone == [i for i in first if i.startswith("c-")]


@pytest.mark.slow
def test_shard_folders_and_selection_read_like_roots(two_runs, tmp_path):
    folder = next(p for p in (two_runs / "embeddings").rglob("texts") if p.is_dir())
    from_folder = reduce(folder, tmp_path / "f.parquet", "--method", "pca")
    by_selection = reduce(two_runs, tmp_path / "s.parquet", "--method", "pca", "--dataset", "texts")
    assert sorted(from_folder.column("id").to_pylist()) == sorted(by_selection.column("id").to_pylist())
    assert {Path(d).stem for d in by_selection.column("dataset").to_pylist()} == {"texts"}


@pytest.mark.slow
def test_inputs_of_different_dimensions_are_one_clear_line(two_runs, tmp_path):
    shard = next((two_runs / "embeddings").rglob("shard-*.parquet"))
    table = pq.read_table(shard)
    vectors = np.asarray(table.column("embedding").to_pylist(), dtype=np.float32)[:, :100]
    other = tmp_path / "other-model"
    other.mkdir()
    smaller = table.set_column(
        table.schema.get_field_index("embedding"),
        "embedding",
        pa.FixedSizeListArray.from_arrays(pa.array(vectors.ravel()), 100),
    ).set_column(table.schema.get_field_index("model"), "model", pa.array(["other/model"] * table.num_rows))
    pq.write_table(smaller, other / "shard-00000.parquet")
    proc = run_cli(
        "reduce-embeddings",
        "--embedding-dirs",
        str(two_runs),
        str(other),
        "--output",
        str(tmp_path / "x.parquet"),
    )
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "different models or dimensions" in lines[0], proc.stderr
    assert "384" in lines[0] and "100" in lines[0] and "Traceback" not in proc.stderr
    assert not (tmp_path / "x.parquet").exists()


def test_bad_inputs_are_one_line_and_exit_2(tmp_path):
    proc = run_cli(
        "reduce-embeddings",
        "--embedding-dirs",
        str(tmp_path / "nope"),
        "--output",
        str(tmp_path / "o.parquet"),
    )
    assert proc.returncode == 2 and "does not exist" in proc.stderr and "Traceback" not in proc.stderr
    empty = tmp_path / "empty"
    empty.mkdir()
    proc = run_cli("reduce-embeddings", str(empty), "--output", str(tmp_path / "o.parquet"))
    assert proc.returncode == 2 and "no manifest" in proc.stderr and "Traceback" not in proc.stderr
    proc = run_cli(
        "visualize-embeddings",
        "--input",
        str(tmp_path / "missing.parquet"),
        "--output",
        str(tmp_path / "m.html"),
    )
    assert proc.returncode == 2 and "does not exist" in proc.stderr and "Traceback" not in proc.stderr


# --- the map, as a person sees it ------------------------------------------------------------------


@pytest.fixture(scope="module")
def chromium() -> str:
    path = find_chromium()
    if path is None:
        pytest.skip(
            "Chromium is not installed (`make browser` installs Debian's chromium; it needs apt-get as root)"
        )
    return path


@pytest.fixture(scope="module")
def coords(reduced) -> Path:
    return reduced("umap")


# Where a point sits on screen: plotly's axis scales (linear to pixels) plus the plot's offsets.
POINT_PIXELS = """(() => {
  const gd = document.getElementById('map'), box = gd.getBoundingClientRect();
  const xa = gd._fullLayout.xaxis, ya = gd._fullLayout.yaxis, rows = chatspaceMap.rows;
  return rows.x.map((x, r) => [r, box.left + xa._offset + xa.l2p(x), box.top + ya._offset + ya.l2p(rows.y[r])]);
})()"""


MARKERS = (
    "document.getElementById('map')._fullData.map(t => ({color: t.marker.color, opacity: t.marker.opacity}))"
)


def _loneliest(points: list[list[float]], width: int, height: int) -> tuple[int, float, float]:
    """The on-screen point farthest from every other one, so a click on it can only mean it."""
    p = np.asarray(points, dtype=float)
    inside = (p[:, 1] > 40) & (p[:, 1] < width - 240) & (p[:, 2] > 80) & (p[:, 2] < height - 40)
    xy = p[:, 1:]
    d = np.sqrt(((xy[:, None, :] - xy[None, :, :]) ** 2).sum(-1))
    np.fill_diagonal(d, np.inf)
    score = np.where(inside, d.min(1), -1)
    k = int(score.argmax())
    return int(p[k, 0]), float(p[k, 1]), float(p[k, 2])


def _trace_colour_pixels(png: Path, markers: list[dict]) -> list[int]:
    """How many pixels of the screenshot show each trace's marker colour (as drawn on white)."""
    import matplotlib.image as mpimg

    img = (mpimg.imread(png)[..., :3] * 255).astype(int)
    counts = []
    for m in markers:
        assert m["opacity"] >= 0.5, f"markers this faint are not what a person can see: {m}"
        rgb = np.array([int(m["color"][i : i + 2], 16) for i in (1, 3, 5)])
        on_white = m["opacity"] * rgb + (1 - m["opacity"]) * 255
        assert np.abs(on_white - 255).sum() > 90, f"markers this close to the white page are invisible: {m}"
        counts.append(int((np.abs(img - on_white).sum(-1) < 30).sum()))
    return counts


def drawn_pixels(
    browser: Chromium, png: Path, markers: list[dict], at_least: int, wait: float = 60
) -> list[int]:
    """Screenshots until every trace shows `at_least` pixels of its colour (WebGL draws after the
    page says it is ready) or `wait` seconds pass; returns the last counts."""
    deadline = time.monotonic() + wait
    while True:
        counts = _trace_colour_pixels(browser.screenshot(png), markers)
        if all(n > at_least for n in counts) or time.monotonic() > deadline:
            return counts
        time.sleep(0.5)


def check_map_in_browser(browser: Chromium, url: str, coords_path: Path, shots: Path) -> None:
    table = pq.read_table(coords_path)
    texts = dict(zip(table.column("id").to_pylist(), table.column("text").to_pylist(), strict=True))
    browser.open(url)
    browser.wait_for("document.body.dataset.mapReady === '1'")
    # WebGL drew the points: the canvas is there and the screenshot shows each dataset's colour.
    assert browser.js("document.querySelectorAll('#map canvas').length") >= 1
    markers = browser.js(MARKERS)
    assert len(markers) == 2
    counts = drawn_pixels(browser, shots / "map.png", markers, at_least=600)
    assert all(n > 600 for n in counts), f"too few pixels of the trace colours {markers}: {counts}"

    # Click a point: the panel shows that row's id and full text.
    row, x, y = _loneliest(browser.js(POINT_PIXELS), browser.width, browser.height)
    row_id = browser.js(f"chatspaceMap.rows.id[{row}]")
    browser.click(x, y)
    shown = browser.wait_for(
        f"!document.getElementById('detail').hidden && document.querySelector('#detail .row-id')"
        f" && document.querySelector('#detail .row-id').textContent === {orjson.dumps(row_id).decode()}"
        " && document.querySelector('#detail .row-text').textContent",
        timeout=30,
    )
    assert shown.startswith(texts[row_id]), (row_id, shown[:200])
    browser.screenshot(shots / "clicked.png")

    # Search by text: the count matches the rows that hold it, and a match opens its text.
    word = max(re.findall(r"[A-Za-z]{6,}", texts[row_id]), key=len).lower()
    expected = sum(word in (i + "\n" + (t or "")).lower() for i, t in texts.items())
    browser.type_into("#search", word)
    counted = browser.wait_for("document.getElementById('search-count').textContent", timeout=30)
    assert counted == f"{expected} match{'es' if expected != 1 else ''}", (word, counted)
    listed = browser.js(
        "[...document.querySelectorAll('#detail .match .row-id')].map(e => e.textContent.trim())"
    )
    assert row_id in listed


@pytest.mark.slow
def test_map_file_draws_points_and_shows_a_rows_text_in_chromium(chromium, coords, tmp_path):
    html = tmp_path / "map.html"
    png = tmp_path / "map-static.png"
    proc = run_cli("visualize-embeddings", "--input", str(coords), "--output", str(html), "--png", str(png))
    assert proc.returncode == 0, proc.stderr
    page = html.read_text()
    assert "<script src=" not in page and "cdn" not in page.lower()[:2000]  # everything inline: opens offline
    with Chromium(chromium) as browser:
        check_map_in_browser(browser, html.as_uri(), coords, tmp_path)
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 10_000


@pytest.mark.slow
def test_served_map_answers_200_and_draws_in_chromium(chromium, coords, tmp_path):
    proc = subprocess.Popen(
        [*CHATSPACE, "visualize-embeddings", "--input", str(coords), "--host", "127.0.0.1", "--port", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=REPO,
        # Ctrl-C reaches it as it reaches a command in a terminal, also when the suite itself runs as a
        # background job (whose children start with SIGINT ignored)
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),  # noqa: PLW1509
    )
    try:
        line = proc.stdout.readline()
        url = re.search(r"http://127\.0\.0\.1:\d+/", line)
        assert url, (line, proc.poll())
        with urllib.request.urlopen(url.group(0), timeout=30) as resp:
            assert resp.status == 200 and resp.headers["Content-Type"].startswith("text/html")
            assert b"chatspaceMap" in resp.read()
        with Chromium(chromium) as browser:
            check_map_in_browser(browser, url.group(0), coords, tmp_path)
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, proc.stderr.read()


@pytest.mark.slow
def test_map_of_100k_points_draws_and_searches(chromium, tmp_path):
    rng = np.random.default_rng(0)
    n = 100_000
    centres = rng.normal(0, 10, size=(3, 2))
    which = rng.integers(0, 3, size=n)
    xy = (centres[which] + rng.normal(0, 1.5, size=(n, 2))).astype(np.float32)
    words = np.array(["alpha", "bravo", "charlie", "delta", "echo", "foxtrot", "golf", "hotel"])
    texts = [f"row {i}: {' '.join(words[rng.integers(0, 8, size=6)])}" for i in range(n)]
    texts[12345] = "row 12345: the needle in the haystack"
    table = pa.table(
        {
            "id": [f"r{i}" for i in range(n)],
            "dataset": [f"set-{w}" for w in which],
            "preview": texts,
            "text": texts,
            "x": xy[:, 0],
            "y": xy[:, 1],
        }
    )
    coords = tmp_path / "big.parquet"
    pq.write_table(table, coords)
    html = tmp_path / "big.html"
    run_cli("visualize-embeddings", "--input", str(coords), "--output", str(html), check=True)
    with Chromium(chromium) as browser:
        browser.open(html.as_uri(), timeout=180)
        browser.wait_for("document.body.dataset.mapReady === '1'", timeout=180)
        assert (
            browser.js(
                "document.getElementById('map')._fullData.map(t => t.x.length).reduce((a, b) => a + b)"
            )
            == n
        )
        counts = drawn_pixels(browser, tmp_path / "big.png", browser.js(MARKERS), at_least=5000)
        assert all(c > 5000 for c in counts), counts
        browser.type_into("#search", "needle")
        assert (
            browser.wait_for("document.getElementById('search-count').textContent", timeout=60) == "1 match"
        )
        assert browser.js("document.querySelector('#detail .match .row-id').textContent.trim()") == "r12345"


def test_cli_help_lists_the_map_commands_without_loading_them():
    code = (
        "import sys, chatspace.cli; from click.testing import CliRunner;"
        "r = CliRunner().invoke(chatspace.cli.cli, ['--help']); assert r.exit_code == 0, r.output;"
        "assert 'reduce-embeddings' in r.output and 'visualize-embeddings' in r.output;"
        "print(sorted(m for m in ('umap', 'openTSNE', 'sklearn', 'plotly', 'matplotlib', 'numba') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"
