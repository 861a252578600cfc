"""Other CPU runtimes for the model's transformer: ONNX Runtime and OpenVINO (`--backend`).

The SentenceTransformer's first module (the Hugging Face transformer) is exported once to ONNX with
`torch.onnx.export` and cached under the output root's `cache/onnx/<model key>/`; ONNX Runtime or
OpenVINO then runs it, on the worker's share of the cores. The modules after it (pooling, dense,
normalization) stay the library's own torch modules, so prompts, pooling and `--truncate-dim` behave
exactly as with `--backend torch`, and batches are the same buckets under the same token budgets.

sentence-transformers' own `backend="onnx"/"openvino"` goes through `optimum`, whose releases pin
transformers below the 5.x this package runs on, so the export is done here with torch itself.
For BERT-family models the onnx backend runs a second export, traced through the model's eager attention
(which ONNX Runtime's transformer optimizer recognises, unlike SDPA), with its fusions applied (attention,
skip layer norms, bias GELU) and checked against the unfused graph before it is used. OpenVINO keeps
the SDPA export: the eager graph's additive mask overflows to NaN in bfloat16. `--quantize int8` (ONNX
Runtime only) adds dynamic int8 quantization of the exported weights, per output channel, with
different vectors (a run identity of its own).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
import warnings
from pathlib import Path
from typing import Any

from chatspace.errors import ChatspaceError, UsageError

log = logging.getLogger(__name__)

EXPORT_VERSION = 1  # bump when the export recipe changes: older cached exports are not reused
_INPUTS = ("input_ids", "attention_mask", "token_type_ids")
_EXTRA = {"onnx": "onnxruntime", "openvino": "openvino"}


def check_device(backend: str, device_kind: str) -> None:
    if backend != "torch" and device_kind != "cpu":
        raise UsageError(f"--backend {backend} runs on the CPU; use --backend torch on {device_kind}")


def export_cache_dir(output_root: str | None) -> Path:
    """The exports' cache: `cache/onnx` under a local output root; for an object-store root (or none),
    a local folder ($CHATSPACE_CACHE, else ~/.cache/chatspace), since runtimes load from local files."""
    if output_root is None or ("://" in output_root and not output_root.startswith("file://")):
        return Path(os.environ.get("CHATSPACE_CACHE") or "~/.cache/chatspace").expanduser() / "onnx"
    return Path(output_root.removeprefix("file://")).expanduser() / "cache" / "onnx"


def model_key(model, model_path: str, revision: str | None) -> str:
    """A name for the export that changes whenever the weights, the architecture or the recipe do."""
    import torch

    digest = hashlib.sha256()
    digest.update(json.dumps([model_path, revision, EXPORT_VERSION, torch.__version__]).encode())
    transformer = model[0].model
    digest.update(transformer.config.to_json_string().encode())
    for name, tensor in sorted(transformer.state_dict().items()):
        digest.update(name.encode())
        flat = tensor.detach().reshape(-1)
        # Shape, dtype and a sample of values along the tensor: a changed checkpoint changes them.
        step = max(1, flat.numel() // 64)
        digest.update(repr((tuple(tensor.shape), str(tensor.dtype), flat[::step][:64].tolist())).encode())
    name = Path(model_path.rstrip("/")).name or "model"
    return f"{name}-{digest.hexdigest()[:16]}"


def input_names(model) -> tuple[str, ...]:
    """The transformer inputs the model's tokenizer produces (BERT-style models add token types)."""
    sample = model.preprocess(["x"], processing_kwargs={"common": {"return_tensors": None}})
    return tuple(n for n in _INPUTS if sample.get(n) is not None)


def exported_onnx(model, cache: Path, key: str, names: tuple[str, ...], quantize: str | None) -> Path:
    """The model's transformer as ONNX (and int8-quantized when asked), exported once into `cache`.
    Written under a temporary name and renamed, so concurrent workers never read half a file."""
    folder = cache / key
    path = folder / "model.onnx"
    if not path.is_file():
        folder.mkdir(parents=True, exist_ok=True)
        log.info("exporting the model to ONNX (once, into %s)", folder)
        _atomic(path, lambda tmp: _export(model, tmp, names))
    if quantize == "int8":
        quantized = folder / "model-int8-per-channel.onnx"
        if not quantized.is_file():
            from onnxruntime.quantization import QuantType, quantize_dynamic

            # Per output channel: per-tensor scales cost MiniLM-class models up to 0.1 of cosine on some rows.
            _atomic(
                quantized,
                lambda tmp: quantize_dynamic(
                    str(path), str(tmp), weight_type=QuantType.QInt8, per_channel=True
                ),
            )
        return quantized
    return path


# Model types whose encoder layers ONNX Runtime's BERT fusions understand (post-LN, GELU, absolute positions).
_FUSIBLE = {"bert", "roberta", "xlm-roberta", "camembert", "electra"}
_FUSED_TOLERANCE = 1e-4  # max |difference| per element to the unfused graph on a padded sample


def fused_onnx(model, plain: Path, names: tuple[str, ...]) -> Path:
    """ONNX Runtime's transformer fusions (attention, skip layer norms, bias GELU) of an eager-attention
    export, both made once beside `plain`; `plain` itself when the model is not BERT-family or the fused
    graph disagrees with its source on a padded sample. The mask stays the raw 0/1 mask, so left and
    right padding are both right."""
    fused = plain.with_name("model-ort-fused.onnx")
    rejected = plain.with_name("model-ort-fused.rejected")
    if fused.is_file():
        return fused
    config = model[0].model.config
    if config.model_type not in _FUSIBLE or rejected.is_file():
        return plain
    eager = plain.with_name("model-eager.onnx")
    if not eager.is_file():
        _atomic(eager, lambda tmp: _export(model, tmp, names, attention="eager"))
    from onnxruntime.transformers.fusion_options import FusionOptions
    from onnxruntime.transformers.optimizer import optimize_model

    options = FusionOptions("bert")
    options.enable_embed_layer_norm = False  # its mask index assumes right padding
    options.use_raw_attention_mask(True)

    def write(tmp: Path) -> None:
        optimized = optimize_model(
            str(eager),
            model_type="bert",
            num_heads=config.num_attention_heads,
            hidden_size=config.hidden_size,
            optimization_options=options,
            opt_level=0,
        )
        optimized.save_model_to_file(str(tmp))

    _atomic(fused, write)
    gap = _max_difference(eager, fused)
    if gap > _FUSED_TOLERANCE:
        log.warning("ONNX Runtime's fused graph differs by %.2g from the export; using the unfused one", gap)
        fused.unlink(missing_ok=True)
        rejected.touch()
        return plain
    return fused


def _max_difference(first: Path, second: Path) -> float:
    """Largest element difference of two graphs' outputs on a sample with padding on the right."""
    import numpy as np

    ort = _import("onnxruntime", "onnx")
    rng = np.random.default_rng(0)
    ids = rng.integers(1000, 2000, size=(3, 12), dtype=np.int64)
    mask = np.ones_like(ids)
    mask[1, 7:] = 0
    mask[2, 3:] = 0
    ids[mask == 0] = 0
    feed = {"input_ids": ids, "attention_mask": mask, "token_type_ids": np.zeros_like(ids)}
    outputs = []
    for path in (first, second):
        session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        wanted = {i.name for i in session.get_inputs()}
        outputs.append(session.run(None, {k: v for k, v in feed.items() if k in wanted})[0])
    keep = mask.astype(bool)  # padded positions' outputs are never pooled
    return float(np.abs(outputs[0][keep] - outputs[1][keep]).max())


def _atomic(path: Path, write) -> None:
    """Write `path` through `write(tmp)` and a rename; the exporters' tracing warnings and the
    quantizer's per-tensor log lines say nothing a user can act on, so they are kept quiet."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name + ".", suffix=".tmp")
    os.close(fd)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            logging.disable(logging.WARNING)
            try:
                write(Path(tmp))
            finally:
                logging.disable(logging.NOTSET)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _export(model, path: Path, names: tuple[str, ...], attention: str | None = None) -> None:
    """Trace the transformer, with the given attention implementation if any (eager for ONNX Runtime's
    fusions: SDPA exports as a pattern they do not recognise); the model's own is restored afterwards."""
    transformer = model[0].model
    before = getattr(transformer.config, "_attn_implementation", None)
    switch = attention is not None and hasattr(transformer, "set_attn_implementation") and before != attention
    if switch:
        transformer.set_attn_implementation(attention)
    try:
        _trace(transformer, path, names)
    finally:
        if switch:
            transformer.set_attn_implementation(before)


def _trace(transformer, path: Path, names: tuple[str, ...]) -> None:
    import torch

    class TokenEmbeddings(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.transformer = transformer

        def forward(self, *inputs):
            return self.transformer(**dict(zip(names, inputs, strict=True))).last_hidden_state

    example = torch.tensor([[101, 2023, 2003, 1037, 3231, 102], [101, 2023, 102, 0, 0, 0]], dtype=torch.long)
    example = example.clamp(max=transformer.config.vocab_size - 1)
    inputs = {
        "input_ids": example,
        "attention_mask": (example != 0).long(),
        "token_type_ids": torch.zeros_like(example),
    }
    axes = {n: {0: "batch", 1: "sequence"} for n in (*names, "token_embeddings")}
    with torch.inference_mode(False), torch.no_grad():
        torch.onnx.export(
            TokenEmbeddings().eval(),
            tuple(inputs[n] for n in names),
            str(path),
            input_names=list(names),
            output_names=["token_embeddings"],
            dynamic_axes=axes,
            opset_version=17,
            dynamo=False,
        )


class RuntimeForward:
    """Stands in for the SentenceTransformer's forward: the transformer on ONNX Runtime or OpenVINO,
    the library's own modules after it."""

    def __init__(
        self, backend: str, onnx_path: Path, model, names: tuple[str, ...], *, threads: int | None, dtype: str
    ):
        self.backend = backend
        self.onnx_path = onnx_path
        self.names = names
        self.rest = list(model)[1:]
        self.precision = "float32"
        if backend == "onnx":
            self._run = self._onnxruntime(onnx_path, threads)
        else:
            self._run = self._openvino(onnx_path, threads, dtype)

    def __call__(self, features: dict[str, Any]) -> dict[str, Any]:
        import torch

        feed = {n: features[n].numpy() for n in self.names}
        out = dict(features)
        out["token_embeddings"] = torch.from_numpy(self._run(feed))
        for module in self.rest:
            out = module(out)
        return out

    @staticmethod
    def _onnxruntime(path: Path, threads: int | None):
        ort = _import("onnxruntime", "onnx")
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.inter_op_num_threads = 1
        # The worker's tokenizer, reader and writer threads share these cores: no busy-waiting between runs.
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        if threads:
            options.intra_op_num_threads = threads
        session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        return lambda feed: session.run(["token_embeddings"], feed)[0]

    def _openvino(self, path: Path, threads: int | None, dtype: str):
        ov = _import("openvino", "openvino")
        config = {
            "INFERENCE_PRECISION_HINT": "bf16"
            if dtype == "bfloat16"
            else "f32",  # its CPU default may be bf16
            "PERFORMANCE_HINT": "LATENCY",
            "CACHE_DIR": str(path.parent / "openvino-cache"),
        }
        if threads:
            config["INFERENCE_NUM_THREADS"] = threads
        compiled = ov.Core().compile_model(str(path), "CPU", config)
        # What OpenVINO really runs in: without native bfloat16 (an AVX2 CPU) it falls back to float32.
        ran = compiled.get_property("INFERENCE_PRECISION_HINT").get_type_name()
        self.precision = {"bf16": "bfloat16", "f16": "float16", "f32": "float32"}.get(ran, ran)
        if self.precision != ("bfloat16" if dtype == "bfloat16" else "float32"):
            log.warning("OpenVINO runs this model in %s here, not %s", self.precision, dtype)
        request = compiled.create_infer_request()
        return lambda feed: request.infer(feed)[0].copy()


def _import(module: str, backend: str):
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError:
        raise ChatspaceError(
            f"--backend {backend} needs the {_EXTRA[backend]} package: pip install 'chatspace[cpu-backends]'"
        ) from None
