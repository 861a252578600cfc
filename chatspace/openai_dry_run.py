"""The OpenAI-mode dry run: what an --execute run would send, and what it would cost, without sending it.

It reads and extracts the selected rows exactly as a run would, counts tokens with the model's real
tokenizer (offline), and plans requests shard by shard with the encoder's own planner, so its numbers
are the run's numbers. It never contacts the embeddings API (a Hub dataset is still read from the Hub
or its cache, as a run would read it).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from chatspace.config import RunConfig
from chatspace.data.extract import check_holds_conversations, extract_rows, needed_columns
from chatspace.data.sampling import select_rows
from chatspace.data.sources import check_fields, open_source
from chatspace.encoders.openai_api import OpenAIEncoder, RequestPlan, price_per_million
from chatspace.errors import ChatspaceError
from chatspace.metrics import WorkerStats
from chatspace.openai_env import OpenAISettings, openai_settings
from chatspace.pool.worker import CHUNK_ROWS
from chatspace.store.layout import RunLayout

READ_CHUNK = 8192


@dataclass
class DryRunReport:
    dataset: str
    split: str
    subset: str | None
    model: str
    base_url: str
    tokenizer: str
    exact_tokens: bool  # False: counts are an approximation (the model's encoding is unknown)
    source_rows: int
    selected: int
    rows: int  # rows that would be embedded
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


def dry_run(cfg: RunConfig, cache_dir: Path, *, settings: OpenAISettings | None = None) -> DryRunReport:
    """Count what an OpenAI-mode run of `cfg` would send; never contacts the embeddings API."""
    if settings is None:
        settings = openai_settings(require_key=False)
    encoder = OpenAIEncoder(cfg.replace(execute=False), settings=settings)
    source = open_source(
        cfg.dataset, split=cfg.base_split, subset=cfg.subset, source=cfg.source, cache_dir=cache_dir
    )
    try:
        check_fields(source.columns, cfg.text_field, cfg.id_field, cfg.dataset, flat=source.spec.flat_columns)
        check_holds_conversations(source, cfg.text_field, cfg.extract)
        selection = select_rows(
            source.num_rows,
            n=cfg.n,
            p=cfg.p,
            seed=cfg.seed,
            row_range=cfg.split_spec.row_range(source.num_rows),
            max_rows=cfg.max_rows,
        )
        columns = needed_columns(cfg.text_field, cfg.id_field)
        skipped: Counter[str] = Counter()
        stats = WorkerStats()
        rows = tokens = truncated = requests = longest = shards = 0
        indices = selection.indices
        # Read, extract and plan as a worker does: per shard, then per chunk of its extracted texts
        # (requests never span two encode calls).
        for shard_start in range(0, len(indices), cfg.rows_per_shard):
            shards += 1
            shard = indices[shard_start : shard_start + cfg.rows_per_shard]
            texts: list[str] = []
            for start in range(0, len(shard), READ_CHUNK):
                chunk = shard[start : start + READ_CHUNK]
                read = source.read(chunk, columns)
                if len(read) != len(chunk):
                    raise ChatspaceError(
                        f"{cfg.dataset}: read {len(read)} rows where {len(chunk)} were asked for"
                    )
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
            for start in range(0, len(texts), CHUNK_ROWS):
                prepared = encoder.prepare(texts[start : start + CHUNK_ROWS], stats)
                plan: RequestPlan = prepared.payload
                skipped.update(prepared.skipped.values())
                kept = prepared.token_counts[plan.rows]
                rows += len(plan.rows)
                tokens += int(kept.sum())
                truncated += int(prepared.truncated.sum())
                requests += len(plan.requests)
                if len(kept):
                    longest = max(longest, int(kept.max()))
    finally:
        source.close()

    price = price_per_million(cfg.model)
    layout = RunLayout.for_config(cfg)
    return DryRunReport(
        dataset=cfg.dataset,
        split=cfg.split,
        subset=cfg.subset,
        model=cfg.model,
        base_url=settings.display_url,
        tokenizer=encoder.tokenizer_name,
        exact_tokens=encoder.exact_token_counts,
        source_rows=source.num_rows,
        selected=len(selection.indices),
        rows=rows,
        skipped=dict(skipped),
        tokens=tokens,
        truncated=truncated,
        max_input_tokens=encoder.max_tokens,
        longest_input_tokens=longest,
        requests=requests,
        shards=shards,
        request_max_inputs=cfg.request_max_inputs,
        request_max_tokens=cfg.request_max_tokens,
        dimension=encoder.describe()["dimension"],
        price_per_million=price,
        estimated_cost=None if price is None else tokens / 1_000_000 * price,
        output_dir=str(layout.embeddings_dir),
        manifest_path=str(layout.manifest_path),
        on_long=cfg.on_long,
        api_key_set=bool(settings.api_key),
    )
