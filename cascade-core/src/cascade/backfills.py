"""``cascade.backfill``: many partitions of one asset, resumable, in parallel worker processes.

    plan (skip what is committed) -> warm up -> run (in process, or in workers) -> report

Each partition is one ``cascade.run``, committed atomically as ever; concurrent commits to the
table from several workers are the merge's business (head check and re-planning, and the
writer lock on PostgreSQL), exactly as for runs started by an orchestrator. One worker runs in
this process; more run in worker processes (:mod:`cascade.workers`), since runs are mostly
Python work and threads would share one interpreter lock.

Ctrl-C: the first stops handing out partitions and lets the running ones finish; the second
aborts those too (each unwinds; its commit landed whole or not at all). Either way the call
raises :class:`BackfillInterrupted`, which carries the report of what finished. Running the
same backfill again resumes: partitions already committed on the branch are skipped.
"""

from __future__ import annotations

import contextlib
import importlib
import signal
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from types import FrameType, MappingProxyType
from typing import Any

from cascade.config import CascadeConfig, load_config
from cascade.ingestion import CascadeAsset
from cascade.results import IngestionResult
from cascade.workers import (
    Job,
    Outcome,
    PartitionFailure,
    StartMethod,
    WorkerPool,
    default_start_method,
    interrupted,
    run_partition,
)

POLL_SECONDS = 0.2  # how often the parent, waiting for outcomes, looks at Ctrl-C
# Imported before workers fork, so that none pays for them; see warm_up.
WARM_UP_MODULES = ("cascade.runner", "cascade.maintenance", "pyiceberg.catalog.sql", "dlt.sources.rest_api")


@dataclass(frozen=True)
class BackfillReport:
    """What a backfill did: partitions planned, skipped (already committed), landed and failed."""

    asset: str
    branch: str
    planned: tuple[str, ...]
    skipped: tuple[str, ...]
    succeeded: Mapping[str, IngestionResult] = field(default_factory=lambda: MappingProxyType({}))
    failures: Mapping[str, PartitionFailure] = field(default_factory=lambda: MappingProxyType({}))
    interrupted: bool = False
    workers: int = 1
    seconds: float = 0.0

    @property
    def failed(self) -> Mapping[str, str]:
        """Each failed partition's message (its error's first line, redacted); ``failures`` has the kinds."""
        return MappingProxyType({p: f.message for p, f in self.failures.items()})

    @property
    def rows(self) -> int:
        """Rows extracted by the partitions that landed."""
        return sum(r.rows_extracted for r in self.succeeded.values())

    @property
    def partitions_per_second(self) -> float:
        finished = len(self.succeeded) + len(self.failures)
        return finished / self.seconds if self.seconds > 0 else 0.0

    def as_dict(self) -> dict[str, Any]:
        """Plain values for JSON output; ``failed`` maps each failed partition to its message."""
        return {
            "asset": self.asset,
            "branch": self.branch,
            "planned": list(self.planned),
            "skipped": list(self.skipped),
            "succeeded": sorted(self.succeeded),
            "failed": dict(self.failed),
            "failure_kinds": {p: f.kind for p, f in self.failures.items()},
            "rows_extracted": self.rows,
            "rows_inserted": sum(r.rows_inserted for r in self.succeeded.values()),
            "interrupted": self.interrupted,
            "workers": self.workers,
            "seconds": round(self.seconds, 3),
        }


class BackfillInterrupted(KeyboardInterrupt):
    """Ctrl-C stopped a backfill; ``report`` says what finished before it stopped."""

    def __init__(self, report: BackfillReport) -> None:
        super().__init__(f"backfill of {report.asset!r} interrupted")
        self.report = report


def backfill(
    asset: CascadeAsset[Any, Any] | str,
    partitions: Sequence[str],
    *,
    workers: int = 1,
    branch: str | None = None,
    force: bool = False,
    config: CascadeConfig | None = None,
    on_start: Callable[[Sequence[str]], None] | None = None,
    on_outcome: Callable[[IngestionResult | PartitionFailure], None] | None = None,
    start_method: StartMethod | None = None,
) -> BackfillReport:
    """Run ``asset`` for each of ``partitions`` (``YYYY-MM-DD``), ``workers`` at a time, and report.

    Partitions already committed on the branch are skipped unless ``force``. ``on_start``
    receives the partitions that will run; ``on_outcome`` each one's result or failure as it
    finishes (in this process, in finishing order). A failed partition does not stop the
    others. ``start_method`` picks how worker processes start (default: fork on Linux, spawn
    elsewhere; spawned workers find the asset by name through plugin discovery).
    Raises :class:`BackfillInterrupted` on Ctrl-C (see the module's docstring).
    """
    from cascade.asset_registry import registry
    from cascade.naming import resolve_branch

    started = time.perf_counter()
    chosen = registry().get(asset) if isinstance(asset, str) else asset
    config = config or load_config()
    target = resolve_branch(branch, {}, config)
    skip = set() if force else already_ingested(chosen, target, config) & set(partitions)
    todo = [p for p in partitions if p not in skip]
    if on_start is not None:
        on_start(todo)
    tally = Tally(on_outcome)
    with Interrupts(inline=workers <= 1 or len(todo) <= 1) as interrupts:
        try:
            if interrupts.inline:
                run_inline(chosen, todo, target, config, tally, interrupts)
            else:
                method = start_method or default_start_method()
                run_in_workers(Job(chosen, target, config), todo, min(workers, len(todo)), method, tally, interrupts)
        except KeyboardInterrupt:
            if not interrupts.stopping:
                raise  # not a Ctrl-C of ours (another thread's interrupt_main, say)
    report = BackfillReport(
        asset=chosen.spec.name,
        branch=target,
        planned=tuple(partitions),
        skipped=tuple(sorted(skip)),
        succeeded=MappingProxyType(dict(sorted(tally.succeeded.items()))),
        failures=MappingProxyType(dict(sorted(tally.failed.items()))),
        interrupted=interrupts.stopping,
        workers=workers,
        seconds=time.perf_counter() - started,
    )
    if interrupts.stopping:
        raise BackfillInterrupted(report)
    return report


def already_ingested(asset: CascadeAsset[Any, Any], branch: str, config: CascadeConfig) -> set[str]:
    """Partitions that a committed run of ``asset`` wrote on ``branch``, read from the table's snapshots."""
    from cascade.catalog import open_catalog
    from cascade.naming import table_identifier
    from cascade.tables import ingested_partitions

    catalog = open_catalog(config)
    identifier = ".".join(table_identifier(asset.spec, config))
    if not catalog.table_exists(identifier):
        return set()
    table = catalog.load_table(identifier)
    if branch not in table.metadata.refs:
        return set()
    return ingested_partitions(table, asset.spec.name, branch)


@dataclass
class Tally:
    """Outcomes as they come in, each passed on to the caller's ``on_outcome``."""

    on_outcome: Callable[[Outcome], None] | None
    succeeded: dict[str, IngestionResult] = field(default_factory=dict)
    failed: dict[str, PartitionFailure] = field(default_factory=dict)

    def add(self, outcome: Outcome) -> None:
        if isinstance(outcome, PartitionFailure):
            self.failed[outcome.partition] = outcome
        else:
            self.succeeded[outcome.partition] = outcome
        if self.on_outcome is not None:
            self.on_outcome(outcome)


class Interrupts:
    """Counts Ctrl-C (SIGINT) while a backfill runs, instead of raising in the middle of it.

    In process (``inline``), the second one raises ``KeyboardInterrupt`` into the running
    partition. Only the main thread receives signals; called from another, nothing changes.
    """

    def __init__(self, *, inline: bool) -> None:
        self.inline = inline
        self.count = 0
        self._previous: Any = None
        self._installed = False

    @property
    def stopping(self) -> bool:
        return self.count >= 1

    @property
    def aborting(self) -> bool:
        return self.count >= 2

    def __enter__(self) -> Interrupts:
        if threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGINT, self._handle)
            self._installed = True
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self._installed:
            signal.signal(signal.SIGINT, self._previous)

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        self.count += 1
        if self.aborting and self.inline:
            raise KeyboardInterrupt


def run_inline(
    asset: CascadeAsset[Any, Any],
    todo: Sequence[str],
    branch: str,
    config: CascadeConfig,
    tally: Tally,
    interrupts: Interrupts,
) -> None:
    """One partition after another, in this process."""
    for partition in todo:
        if interrupts.stopping:
            return
        try:
            outcome = run_partition(asset, partition, branch, config)
        except KeyboardInterrupt:
            if not interrupts.aborting:
                raise
            outcome = interrupted(partition)
        if interrupts.aborting:  # a failure now is the abort's, whatever error a library made of it
            tally.add(outcome if isinstance(outcome, IngestionResult) else interrupted(partition))
            return
        tally.add(outcome)


def run_in_workers(
    job: Job, todo: Sequence[str], size: int, start_method: StartMethod, tally: Tally, interrupts: Interrupts
) -> None:
    """Hand the partitions out to ``size`` worker processes, one at a time each, until done or stopped."""
    if start_method == "fork":
        assert isinstance(job.asset, CascadeAsset)
        warm_up(job.asset)
    queue = deque(todo)
    with contextlib.closing(WorkerPool(job, size, start_method)) as pool:
        while True:
            if interrupts.aborting:
                for outcome in pool.abort():
                    tally.add(outcome)
                return
            if not interrupts.stopping and queue:
                pool.fill(min(size, len(pool.busy) + len(queue)))  # at the start, and for workers that died
                for worker in pool.idle[: len(queue)]:
                    pool.assign(worker, queue.popleft())
            if not pool.busy and (interrupts.stopping or not queue):
                return
            for outcome in pool.wait(POLL_SECONDS):
                tally.add(outcome)


def warm_up(asset: CascadeAsset[Any, Any]) -> None:
    """Import in this process what a run of ``asset`` imports, so that workers forked from it need not.

    Most of a first run's extra seconds are imports: dlt's REST source, pyiceberg's SQL catalog,
    and pandera's pandas backend, which only a first validation loads (validating no rows
    against the asset's own model does it). Best effort: whatever is missed here, each worker
    imports for itself.
    """
    for name in WARM_UP_MODULES:
        with contextlib.suppress(ImportError):
            importlib.import_module(name)
    spec = asset.spec
    if spec.validate and spec.validation_schema is not None:
        from cascade.validation import validate_batch

        with contextlib.suppress(Exception):
            validate_batch(spec.table_schema.as_arrow().empty_table(), spec.validation_schema)
