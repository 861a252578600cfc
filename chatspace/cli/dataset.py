"""`describe-dataset` (and its first name, `download-dataset`): a dataset's facts before embedding it."""

from __future__ import annotations

import copy
import os
from pathlib import Path
from typing import Any

import click

from chatspace.cli.options import SHARED_OPTIONS, config_option


@click.command(
    "describe-dataset",
    epilog="""\b
Examples:
  chatspace describe-dataset --name chatspace/resources/demo.jsonl --output-root demo-output
  chatspace describe-dataset --name path/to/parquet-folder --split test
  chatspace describe-dataset --name HuggingFaceFW/fineweb --subset sample-10BT""",
)
@click.option("--name", "--dataset", "name", required=True, help="Hub dataset id or local path.")
@config_option("subset", help=SHARED_OPTIONS["subset"])
@click.option("--split", help="Only this split (default: every split).")
@config_option("source", help=SHARED_OPTIONS["source"])
@config_option(
    "output_root",
    help="Where to keep the description (default: $CHATSPACE_ROOT, else ~/.cache/chatspace/describe).",
)
@click.option(
    "--sample-rows", type=int, default=200, show_default=True, help="Rows read for text-field statistics."
)
def describe_dataset(**params: Any) -> None:
    """Describe a dataset without downloading it: splits, rows, files, features, fields to embed."""
    from chatspace.store.datasets import download_dataset as run

    # Asked for (--output-root, $CHATSPACE_ROOT): kept in that root. Otherwise into the user's cache, so
    # describing never needs a writable /workspace.
    params["output_root"] = params.get("output_root") or os.environ.get("CHATSPACE_ROOT") or _cache_root()
    click.echo(run(**params).render())


def _cache_root() -> str:
    base = Path(os.environ.get("CHATSPACE_CACHE") or "~/.cache/chatspace").expanduser()
    return str(base / "describe")


# The command's first name, kept working (hidden from the listing).
download_alias = copy.copy(describe_dataset)
download_alias.name, download_alias.hidden = "download-dataset", True
