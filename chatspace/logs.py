"""Quieting the libraries around the encoder: they log every request or file at INFO and draw their
own progress bars, which would fight the supervisor's one bar."""

from __future__ import annotations

import logging
import os

NOISY_LOGGERS = (
    "sentence_transformers",
    "transformers",
    "httpx",
    "httpx2",
    "openai",
    "urllib3",
    "filelock",
    "huggingface_hub",
    "datasets",
)


def quiet_libraries(level: int = logging.INFO) -> None:
    """Their loggers to WARNING (or `level` if higher); their progress bars off (workers only)."""
    for name in NOISY_LOGGERS:
        logging.getLogger(name).setLevel(max(logging.WARNING, level))


def quiet_worker_environment() -> None:
    """Set before the libraries are imported in a worker process."""
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("TQDM_DISABLE", "1")


def plural(n: int, word: str) -> str:
    """`1 unit`, `3 units`: counts in messages read as English."""
    return f"{n:,} {word}{'' if n == 1 else 's'}"
