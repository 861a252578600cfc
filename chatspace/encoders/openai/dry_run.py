"""The OpenAI-mode dry run: what an --execute run would send, and what it would cost, without sending it.

It reads and extracts the selected rows exactly as a run would, counts tokens with the model's real
tokenizer (offline), and plans requests shard by shard with the encoder's own planner, so its numbers
are the run's numbers. It never contacts the embeddings API (a Hub dataset is still read from the Hub
or its cache, as a run would read it).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from chatspace.config import DataConfig, RunConfig
from chatspace.data.extract import extract_rows, needed_columns
from chatspace.data.sampling import SAMPLER_VERSION, select_run_rows
from chatspace.data.sources import Source, open_run_source
from chatspace.encoders.base import CHUNK_ROWS, Prepared
from chatspace.encoders.openai.encoder import OpenAIEncoder
from chatspace.encoders.openai.models import price_per_million
from chatspace.encoders.openai.planning import RequestPlan
from chatspace.encoders.openai.settings import OpenAISettings, openai_settings
from chatspace.errors import ChatspaceError
from chatspace.stats import WorkerStats

READ_CHUNK = 8192
#: The run's options a report repeats as they are.
RUN_OPTIONS = ("dataset", "split", "subset", "model", "request_max_inputs", "request_max_tokens", "on_long")


@dataclass
class DryRunReport:
    """What an --execute run would send and cost; `render()` is the printed summary."""

    dataset: str
    split: str
    subset: str | None
    model: str
    base_url: str
    tokenizer: str
    exact_tokens: bool  # False: counts are an approximation (the model's encoding is unknown)
    source_rows: int = 0
    selected: int = 0
    rows: int = 0  # rows that would be embedded
    skipped: dict[str, int] = field(default_factory=dict)
    tokens: int = 0  # tokens that would be sent (after truncation)
    truncated: int = 0
    max_input_tokens: int = 0
    longest_input_tokens: int = 0
    requests: int = 0
    shards: int = 0
    request_max_inputs: int = 0
    request_max_tokens: int = 0
    dimension: int | None = None
    price_per_million: float | None = None
    estimated_cost: float | None = None  # US dollars; None when the model's price is unknown
    output_dir: str = ""
    manifest_path: str = ""
    on_long: str = "truncate"
    api_key_set: bool = False

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def count(self, prepared: Prepared, skipped: Counter[str]) -> None:
        """Add one prepared chunk: what its requests would carry, and the rows the encoder skips."""
        plan: RequestPlan = prepared.payload
        skipped.update(prepared.skipped.values())
        kept = prepared.token_counts[plan.rows]
        self.rows += len(plan.rows)
        self.tokens += int(kept.sum())
        self.truncated += int(prepared.truncated.sum())
        self.requests += len(plan.requests)
        if len(kept):
            self.longest_input_tokens = max(self.longest_input_tokens, int(kept.max()))

    def render(self) -> str:
        approx = "" if self.exact_tokens else " (approximate: the model's tokenizer is unknown)"
        dataset = self.dataset + (f" [{self.subset}]" if self.subset else "")
        skipped = ", ".join(f"{k} {v:,}" for k, v in sorted(self.skipped.items())) or "none"
        if self.estimated_cost is None:
            cost = f"unknown (no price known for model {self.model!r})"
        else:
            dollars = (
                f"{self.estimated_cost:,.2f}" if self.estimated_cost >= 0.01 else f"{self.estimated_cost:.6f}"
            )
            cost = f"${dollars} at ${self.price_per_million:g} per 1M tokens" + (
                " (from approximate token counts)" if not self.exact_tokens else ""
            )
        over = ""
        if self.on_long == "truncate" and self.truncated:
            over = f"; {self.truncated:,} inputs over {self.max_input_tokens:,} tokens truncated"
        elif self.on_long == "skip" and self.skipped.get("too_long"):
            over = f"; {self.skipped['too_long']:,} inputs over {self.max_input_tokens:,} tokens skipped"
        key_note = (
            "OPENAI_API_KEY set" if self.api_key_set else "OPENAI_API_KEY not set: needed with --execute"
        )
        dimension = (
            f", {self.dimension} dimensions" if self.dimension else ", dimension learnt from the server"
        )
        lines = [
            "OpenAI embeddings dry run: no request sent",
            f"  dataset:    {dataset} (split {self.split}), {self.source_rows:,} rows",
            f"  selected:   {self.selected:,} rows; {self.rows:,} to embed; skipped: {skipped}",
            f"  model:      {self.model}{dimension}",
            f"  endpoint:   {self.base_url} ({key_note})",
            f"  tokenizer:  {self.tokenizer}{approx}",
            f"  tokens:     {self.tokens:,} to send; longest input {self.longest_input_tokens:,}{over}",
            f"  requests:   {self.requests:,} (at most {self.request_max_inputs:,} inputs and "
            f"{self.request_max_tokens:,} tokens each; {self.shards:,} shard{'' if self.shards == 1 else 's'})",
            f"  est. cost:  {cost}",
            f"  output:     {self.output_dir}",
            f"  manifest:   {self.manifest_path}",
        ]
        return "\n".join(lines)


def dry_run(cfg: RunConfig, layout: Any, *, settings: OpenAISettings | None = None) -> DryRunReport:
    """Count what an OpenAI-mode run of `cfg` would send; never contacts the embeddings API.

    `layout` is where the run would write (a chatspace.store.layout.RunLayout): the report names its
    output and manifest, and the dataset's line index or converted copy goes to its datasets/ folder.
    """
    if settings is None:
        settings = openai_settings(require_key=False)
    encoder = OpenAIEncoder(cfg.replace(execute=False).encoder, settings=settings)
    price = price_per_million(cfg.encoder.model)
    report = DryRunReport(
        **{name: cfg.option_value(name) for name in RUN_OPTIONS},
        base_url=settings.display_url,
        api_key_set=bool(settings.api_key),
        tokenizer=encoder.tokenizer_name,
        exact_tokens=encoder.exact_token_counts,
        max_input_tokens=encoder.max_tokens,
        dimension=encoder.describe()["dimension"],
        price_per_million=price,
        output_dir=layout.output.url(layout.embeddings_dir),
        manifest_path=layout.output.url(layout.manifest_path),
    )
    source = open_run_source(cfg.data, layout.datasets_dir)
    try:
        # A preview of a fresh run: its --n sampler is the newest (a resume keeps its run's; same count).
        sampling = cfg.sampling
        fresh = (
            cfg.replace(sampler=SAMPLER_VERSION)
            if sampling.n is not None and sampling.sampler is None
            else cfg
        )
        selection = select_run_rows(fresh, source.num_rows)
        report.source_rows, report.selected = source.num_rows, selection.count
        skipped: Counter[str] = Counter()
        stats = WorkerStats()
        rows_per_shard = cfg.output.rows_per_shard
        for shard_start in range(0, selection.count, rows_per_shard):
            report.shards += 1
            rows = np.asarray(selection.rows(shard_start, shard_start + rows_per_shard), dtype=np.int64)
            texts = _shard_texts(cfg.data, source, rows, skipped)
            # Plan as a worker does: per chunk of the shard's texts (requests never span two chunks).
            for start in range(0, len(texts), CHUNK_ROWS):
                report.count(encoder.prepare(texts[start : start + CHUNK_ROWS], stats), skipped)
    finally:
        source.close()
    report.skipped = dict(skipped)
    report.estimated_cost = None if price is None else report.tokens / 1_000_000 * price
    return report


def _shard_texts(cfg: DataConfig, source: Source, shard: np.ndarray, skipped: Counter[str]) -> list[str]:
    """The texts a worker would extract from one shard's rows (skips counted by reason)."""
    texts: list[str] = []
    columns = needed_columns(cfg.text_field, cfg.id_field)
    for start in range(0, len(shard), READ_CHUNK):
        chunk = shard[start : start + READ_CHUNK]
        read = source.read(chunk, columns)
        if len(read) != len(chunk):
            raise ChatspaceError(f"{cfg.dataset}: read {len(read)} rows where {len(chunk)} were asked for")
        usable = extract_rows(
            chunk.tolist(),
            read,
            text_field=cfg.text_field,
            mode=cfg.extract,
            id_field=cfg.id_field,
            split=cfg.base_split,
            skipped=skipped,
        )
        texts.extend(text for _, _, text in usable)
    return texts
