"""Encoders: the bucketed SentenceTransformer encoder and the OpenAI-compatible API encoder."""

from __future__ import annotations

from typing import TYPE_CHECKING

from chatspace.config import Mode

if TYPE_CHECKING:
    from chatspace.config import RunConfig
    from chatspace.encoders.base import Encoder
    from chatspace.hardware.devices import Device


def build_encoder(cfg: RunConfig, device: Device, threads: int | None) -> Encoder:
    """The encoder for one worker; imports the heavy libraries only here, inside the worker."""
    if cfg.mode is Mode.OPENAI:
        from chatspace.encoders.openai.encoder import OpenAIEncoder

        return OpenAIEncoder(cfg.encoder)
    from chatspace.encoders.backends import export_cache_dir
    from chatspace.encoders.sentence_transformer import SentenceTransformerEncoder

    cache = export_cache_dir(str(cfg.output.output_root))  # ONNX exports for --backend onnx / openvino
    return SentenceTransformerEncoder(cfg.encoder, device, threads, export_cache=cache)
