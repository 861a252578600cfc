"""A run decided before anything is written: which rows of which source, in which units, by which
executor, into which layout. `plan_run` reads the configuration once and checks what can fail early
(the cluster, the output root, the model, the source's fields). No run's output is written yet: the
root is only created and checked writable, and a source may keep its line index under datasets/.

The supervisor then prepares the output, executes the plan and writes its manifest (vLLM's
`LLMEngine.from_engine_args`: config -> executor class -> construct).
"""

from __future__ import annotations

import dataclasses
import time
from collections import deque
from dataclasses import dataclass
from typing import TYPE_CHECKING

from chatspace.config import Mode, RunConfig
from chatspace.data.identity import identity_digest
from chatspace.data.sampling import Selection, select_run_rows
from chatspace.data.sources import Source, open_run_source
from chatspace.data.units import WorkUnit, plan_units
from chatspace.pool.executors import get_executor_class
from chatspace.store.layout import RunLayout, ensure_writable_output
from chatspace.store.manifest import choose_sampler

if TYPE_CHECKING:
    from chatspace.pool.executors.base import Executor


@dataclass(frozen=True)
class RunPlan:
    """Everything a run does, decided from its configuration; the run id joins once the output is
    prepared (a new id, or the id of the run being resumed)."""

    config: RunConfig
    layout: RunLayout  # the run's final place; an --overwrite builds beside it and switches at the end
    source: Source
    selection: Selection
    units: tuple[WorkUnit, ...]  # unit i: the slice [i*R, (i+1)*R) of the selection
    executor_class: type[Executor]
    planning_seconds: float
    source_digest: str | None = None  # of the source's identity: every unit record carries it
    run_id: str | None = None

    @property
    def selected_rows(self) -> int:
        return self.selection.count

    @property
    def unit_sizes(self) -> list[int]:
        return [u.size for u in self.units]

    @property
    def source_identity(self) -> dict | None:
        """What the source is (its files and their versions), recorded so a resume reads the same data."""
        return self.source.spec.identity

    def with_run_id(self, run_id: str) -> RunPlan:
        """The plan of run `run_id`, which its configuration records too."""
        return dataclasses.replace(self, run_id=run_id, config=self.config.replace(run_id=run_id))

    def pending(self, done: dict[int, dict]) -> deque[WorkUnit]:
        """The units still to do, in order, given the records of those already done."""
        return deque(u for u in self.units if u.index not in done)


def plan_run(cfg: RunConfig) -> RunPlan:
    """The plan of one run; what cannot run (a missing model, a field the data lacks, a cluster that
    does not answer) fails here as one usage error, before any output or worker exists."""
    started = time.perf_counter()
    executor_class = get_executor_class(cfg.execution.executor)
    executor_class.check(cfg.execution)  # e.g. a Ray cluster that does not answer
    output = ensure_writable_output(cfg.output.output_root)
    layout = RunLayout.for_config(cfg, output)
    cfg = choose_sampler(layout, cfg)  # --n: the sampler of the run this one resumes, else the newest
    if cfg.mode is Mode.SENTENCE_TRANSFORMER:  # a misspelled model fails before any worker exists
        from chatspace.encoders.locate import check_model

        check_model(cfg.encoder, hub=executor_class.workers_share_this_machine)
    source = open_run_source(cfg.data, layout.datasets_dir)
    digest = identity_digest(source.spec.identity)
    selection = select_run_rows(cfg, source.num_rows)
    units = tuple(plan_units(selection, cfg.output.rows_per_shard))
    seconds = time.perf_counter() - started
    return RunPlan(cfg, layout, source, selection, units, executor_class, seconds, digest)
