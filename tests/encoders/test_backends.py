"""--backend onnx / openvino: the transformer exported once to ONNX and run by ONNX Runtime or OpenVINO,
checked against SentenceTransformer.encode on the same texts; --quantize int8 as a labelled variant."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from chatspace.config import RunConfig
from chatspace.encoders.sentence_transformer import SentenceTransformerEncoder
from chatspace.errors import UsageError
from chatspace.hardware.devices import Device
from chatspace.stats import WorkerStats
from tests.helpers import cosine_rows, embed_args, run_cli, run_manifest, run_table, write_corpus

pytest.importorskip("onnxruntime")
pytest.importorskip("openvino")


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    return tmp_path_factory.mktemp("root")


@pytest.fixture(scope="module")
def texts150(texts) -> list[str]:
    return texts[:150] + [" ".join(texts[:60])]  # one row far past the model's 256 tokens


@pytest.fixture(scope="module")
def reference(st_model, texts150) -> np.ndarray:
    return st_model.encode(texts150, batch_size=32)


def _encode(root, texts: list[str], **options) -> tuple[np.ndarray, SentenceTransformerEncoder]:
    cfg = RunConfig.from_options(dataset="unused", output_root=str(root), **options)
    cache = root / "cache" / "onnx"
    # threads=None: this test process's tokenizer settings stay as they are
    enc = SentenceTransformerEncoder(cfg.encoder, Device("cpu", "cpu:0"), None, export_cache=cache)
    enc.load(WorkerStats())
    stats = WorkerStats()
    return enc.encode(enc.prepare(texts, stats), stats), enc


@pytest.mark.parametrize("backend", ["onnx", "openvino"])
def test_backend_vectors_equal_sentence_transformer(root, texts150, reference, backend):
    emb, enc = _encode(root, texts150, backend=backend, tokens_per_batch=1024)
    assert emb.shape == reference.shape and emb.dtype == np.float32
    cos = cosine_rows(emb, reference)
    assert cos.min() >= 0.99999, f"worst row {int(cos.argmin())}: {cos.min()}"
    d = enc.describe()
    assert d["backend"] == backend and d["dtype"] == "float32"
    onnx = root / "cache" / "onnx"
    # ONNX Runtime runs the fused copy of the export (MiniLM is BERT-family); OpenVINO the export itself
    runs = "model-ort-fused.onnx" if backend == "onnx" else "model.onnx"
    assert d["backend_model"].startswith(str(onnx)) and d["backend_model"].endswith("/" + runs)


def test_the_onnx_backend_runs_fused_attention(root, texts150):
    import onnx

    _, enc = _encode(root, texts150[:4], backend="onnx")
    graph = onnx.load(enc.describe()["backend_model"], load_external_data=False).graph
    ops = {node.op_type for node in graph.node}
    assert {"Attention", "SkipLayerNormalization", "BiasGelu"} <= ops, ops
    source = onnx.load(str(Path(enc.describe()["backend_model"]).with_name("model-eager.onnx"))).graph
    assert "Attention" not in {node.op_type for node in source.node}


def test_a_fused_graph_that_disagrees_is_set_aside(root, texts150, reference, monkeypatch):
    from chatspace.encoders import backends

    other = root / "disagree"
    other.mkdir()
    monkeypatch.setattr(backends, "_max_difference", lambda first, second: 0.5)
    emb, enc = _encode(other, texts150, backend="onnx")
    assert enc.describe()["backend_model"].endswith("/model.onnx")
    assert cosine_rows(emb, reference).min() >= 0.99999
    folder = Path(enc.describe()["backend_model"]).parent
    assert (folder / "model-ort-fused.rejected").is_file() and not (folder / "model-ort-fused.onnx").exists()


def test_the_export_is_made_once_and_reused(root, texts150):
    _, first = _encode(root, texts150[:8], backend="onnx")
    path = str(Path(first.describe()["backend_model"]).with_name("model.onnx"))
    exports = sorted(p.name for p in (root / "cache" / "onnx").rglob("*.onnx"))
    stamp = (root / "cache" / "onnx").joinpath(path).stat().st_mtime_ns
    _, second = _encode(root, texts150[:8], backend="openvino")
    assert second.describe()["backend_model"] == path
    assert sorted(p.name for p in (root / "cache" / "onnx").rglob("*.onnx")) == exports
    assert (root / "cache" / "onnx").joinpath(path).stat().st_mtime_ns == stamp
    assert not list((root / "cache" / "onnx").rglob("*.tmp"))


def test_openvino_bfloat16_is_really_bfloat16(root, texts150, reference):
    emb, enc = _encode(root, texts150, backend="openvino", dtype="bfloat16")
    cos = cosine_rows(emb, reference)
    assert cos.min() >= 0.999, cos.min()
    assert np.abs(emb - reference).max() > 1e-3  # not silently float32
    assert enc.describe()["dtype"] == "bfloat16"


def test_int8_is_a_labelled_variant_with_different_vectors(root, texts150, reference):
    emb, enc = _encode(root, texts150, backend="onnx", quantize="int8")
    d = enc.describe()
    assert d["quantize"] == "int8" and "int8" in d["backend_model"]
    cos = cosine_rows(emb, reference)
    assert 0.95 <= cos.mean() < 0.9999  # close, and measurably not the float32 vectors
    plain = RunConfig.from_options(dataset="d.jsonl", output_root=str(root), backend="onnx")
    assert plain.replace(quantize="int8").output_hash() != plain.output_hash()
    assert plain.output_hash() == plain.replace(backend="torch").output_hash()


def test_other_backends_run_on_the_cpu_only(root):
    cfg = RunConfig.from_options(dataset="unused", output_root=str(root), backend="onnx")
    enc = SentenceTransformerEncoder(cfg.encoder, Device("cuda", "cuda:0", "0"), None)
    with pytest.raises(UsageError, match="--backend onnx runs on the CPU"):
        enc.load(WorkerStats())


@pytest.mark.slow
def test_embed_hf_with_the_onnx_backend(tmp_path, texts, st_model):
    path, rows = write_corpus(tmp_path, texts, 40)
    out = tmp_path / "out"
    proc = run_cli(*embed_args(path, out, "--backend", "onnx"))
    assert proc.returncode == 0, proc.stderr
    table = run_table(out)
    ours = np.asarray(table.column("embedding").to_pylist(), dtype=np.float32)
    ref = st_model.encode(table.column("text").to_pylist(), batch_size=32)
    assert cosine_rows(ours, ref).min() >= 0.99999
    manifest = run_manifest(out)
    encoder = manifest["workers"][0]["encoder"]
    assert encoder["backend"] == "onnx" and encoder["backend_model"].startswith(str(out / "cache" / "onnx"))
    assert manifest["config"]["backend"] == "onnx"
    bad = run_cli(*embed_args(path, tmp_path / "bad", "--quantize", "int8"))
    assert bad.returncode == 2 and bad.stderr.strip().count("\n") == 0 and "--backend onnx" in bad.stderr


def test_openvino_says_which_precision_it_really_ran(root, texts150, reference, monkeypatch, caplog):
    """On a CPU without native bfloat16 OpenVINO compiles to float32 whatever the hint: the run's
    encoder description says float32 and a warning says so, instead of a bfloat16 label on f32 vectors."""
    import openvino

    real = openvino.Core

    class NoBf16Core(real):  # stands in for OpenVINO on an AVX2 CPU
        def compile_model(self, model, device, config):
            return super().compile_model(model, device, {**config, "INFERENCE_PRECISION_HINT": "f32"})

    monkeypatch.setattr(openvino, "Core", NoBf16Core)
    with caplog.at_level("WARNING", logger="chatspace.encoders.backends"):
        emb, enc = _encode(root, texts150[:20], backend="openvino", dtype="bfloat16")
    assert enc.describe()["dtype"] == "float32"
    assert "OpenVINO runs this model in float32 here, not bfloat16" in caplog.text
    assert cosine_rows(emb, reference[:20]).min() >= 0.99999  # float32 vectors, as said
