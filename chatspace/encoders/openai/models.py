"""What is known of OpenAI's embedding models: their names, dimensions, tokenizers and prices.

A model not listed here still works (any OpenAI-compatible server): its dimension is learnt from one
probe request, its tokens are approximated, and its price is unknown.
"""

from __future__ import annotations

#: Longest input the embedding models take (OpenAI's cookbook limit for the 8192-token context).
MAX_INPUT_TOKENS = 8191
#: Output dimensions of the known models (a `dimensions` request overrides them).
KNOWN_DIMENSIONS = {
    "text-embedding-3-small": 1536,
    "text-embedding-3-large": 3072,
    "text-embedding-ada-002": 1536,
}
#: The tokenizer of the known models.
MODEL_ENCODINGS = {
    "text-embedding-3-small": "cl100k_base",
    "text-embedding-3-large": "cl100k_base",
    "text-embedding-ada-002": "cl100k_base",
}
#: US dollars per million input tokens.
PRICES_PER_MILLION = {
    "text-embedding-3-small": 0.02,
    "text-embedding-3-large": 0.13,
    "text-embedding-ada-002": 0.10,
}


def canonical_model(model: str) -> str:
    """`openai/text-embedding-3-small` and `Text-Embedding-3-Small` name the same known model."""
    name = model.strip().lower()
    tail = name.rsplit("/", 1)[-1]
    return tail if tail in KNOWN_DIMENSIONS else name


def price_per_million(model: str) -> float | None:
    return PRICES_PER_MILLION.get(canonical_model(model))
