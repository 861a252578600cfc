"""What the OpenAI-mode tests share: a config, an encoder against the fake server, the expected vectors."""

from __future__ import annotations

import bpe_openai
import numpy as np

from chatspace.config import RunConfig
from chatspace.encoders.openai.encoder import OpenAIEncoder
from chatspace.encoders.openai.settings import OpenAISettings
from chatspace.stats import WorkerStats
from tests.helpers.openai_fake_server import FakeEmbeddingServer, fake_vector

KEY = "sk-test-SECRET-0123456789abcdef"
ENV_VARS = ("OPENAI_API_KEY", "OPENAI_BASE_URL", "OPENAI_EMBED_MODEL", "OPENAI_TIMEOUT")


def make_cfg(**kw) -> RunConfig:
    base = dict(dataset="unused", mode="openai", model="text-embedding-3-small", dimensions=8, execute=True)
    base.update(kw)
    return RunConfig.from_options(**base)


def make_encoder(server: FakeEmbeddingServer, timeout: float = 5.0, **kw) -> OpenAIEncoder:
    settings = OpenAISettings(
        api_key=KEY, base_url=server.base_url, model="text-embedding-3-small", timeout=timeout
    )
    enc = OpenAIEncoder(make_cfg(**kw).encoder, settings=settings)
    enc.load(WorkerStats())
    return enc


def run(enc: OpenAIEncoder, texts: list[str]) -> tuple[np.ndarray, object, WorkerStats]:
    stats = WorkerStats()
    prepared = enc.prepare(texts, stats)
    return enc.encode(prepared, stats), prepared, stats


def expected(texts: list[str], dim: int = 8) -> np.ndarray:
    return np.stack([fake_vector(t, dim) for t in texts])


CL100K = bpe_openai.get_encoding("cl100k_base")


def n_tokens(text: str) -> int:
    return len(CL100K.encode_ordinary(text))


LONG = "The quick brown fox jumps over the lazy dog. " * 1000  # ~10k tokens
EMOJI_LONG = "naïve café 🎉 " * 3000
