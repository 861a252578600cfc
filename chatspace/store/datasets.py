"""The `datasets/raw/` part of an output root: what `describe-dataset` found, kept beside the caches.

`{output_root}/datasets/raw/{source}/{dataset}/{subset or split or "default"}/info.json`, plus
`summary.txt` (the printed text). Describing is `chatspace.data.describe`; this is where it is kept.
"""

from __future__ import annotations

from pathlib import Path

from chatspace.data.describe import FORMAT, DatasetReport, check_request, inspect_dataset
from chatspace.data.sources import dataset_label
from chatspace.store.layout import ensure_writable_output, local_datasets_dir, slug
from chatspace.store.manifest import now_iso


def download_dataset(
    name: str,
    subset: str | None = None,
    split: str | None = None,
    source: str = "auto",
    output_root: str | Path = "/workspace",
    sample_rows: int = 200,
) -> DatasetReport:
    """Describe a Hub dataset or a local path and write the description under `output_root`.

    `split` limits the report to one split (all splits otherwise); `sample_rows` rows of one split (the
    one asked for, else `train`, else the first) are read for the text-field statistics.
    """
    check_request(source, sample_rows)
    output = ensure_writable_output(output_root)
    info = inspect_dataset(name, subset, split, source, sample_rows, cache_dir=local_datasets_dir(output))
    local = info["source"] == "local"
    label = dataset_label(name, local) if local else name
    part = (subset if not local else None) or split or "default"
    out_dir = output.join("datasets", "raw", info["source"], slug(label), slug(part))
    info = {"format": FORMAT, "inspected_at": now_iso(), **info}
    info_path = out_dir / "info.json"
    report = DatasetReport(info, info_path if output.is_local else output.url(info_path))
    output.write_json(info_path, info)
    output.write_atomic(out_dir / "summary.txt", (report.render() + "\n").encode())
    return report
