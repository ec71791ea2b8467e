"""``cascade backfill``: what to run (a range, or the gaps ``cascade status`` shows) and a progress bar.

Running the partitions, N worker processes at a time and resumable, is ``cascade.backfill``'s
job: any application may call it; this module only chooses the partitions and shows progress.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskID, TextColumn, TimeElapsedColumn

import cascade
from cascade import (
    BackfillInterrupted,
    BackfillReport,
    CascadeAsset,
    CascadeConfig,
    IngestionResult,
    PartitionFailure,
    State,
    open_catalog,
    parse_since,
    table_identifier,
    table_status,
)


def date_range(start: dt.date, end: dt.date) -> list[str]:
    return [(start + dt.timedelta(days=n)).isoformat() for n in range((end - start).days + 1)]


def status_plan(
    asset: CascadeAsset[Any, Any],
    config: CascadeConfig,
    *,
    branch: str,
    since: str | None,
    missing: bool,
    failed: bool,
    now: dt.datetime | None = None,
) -> list[str]:
    """The partitions ``cascade status`` shows as missing and/or failed, oldest first."""
    now = now or dt.datetime.now(dt.UTC)
    first = parse_since(since, now.date()) if since else None
    identifier = ".".join(table_identifier(asset.spec, config))
    status = table_status(open_catalog(config), asset.spec, identifier, branch=branch, now=now, since=first)
    states: list[State] = []
    if missing:
        states.append("missing")
    if failed:
        states.append("failed")
    return list(status.partitions(*states))


def backfill(
    asset: CascadeAsset[Any, Any],
    partitions: list[str],
    *,
    workers: int,
    branch: str,
    force: bool,
    config: CascadeConfig,
    console: Console,
    show_progress: bool,
) -> BackfillReport:
    """``cascade.backfill`` with a progress bar on ``console``; Ctrl-C gives the report so far (``interrupted``)."""
    bar = ProgressBar(console, f"{asset.spec.name} @ {branch}", show=show_progress)
    with bar.progress:
        try:
            return cascade.backfill(
                asset,
                partitions,
                workers=workers,
                branch=branch,
                force=force,
                config=config,
                on_start=bar.start,
                on_outcome=bar.advance,
            )
        except BackfillInterrupted as stopped:
            return stopped.report


class ProgressBar:
    """Partitions done of those to run, rows landed, rows/s and failures so far."""

    def __init__(self, console: Console, title: str, *, show: bool) -> None:
        self.title = title
        self.rows = 0
        self.failures = 0
        self.task: TaskID | None = None
        self.progress = Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("rows {task.fields[rows]:,}"),
            TextColumn("{task.fields[rate]:,.0f} rows/s"),
            TextColumn("failures {task.fields[failures]}"),
            TimeElapsedColumn(),
            console=console,
            disable=not show,
        )

    def start(self, todo: Sequence[str]) -> None:
        self.task = self.progress.add_task(self.title, total=len(todo), rows=0, rate=0.0, failures=0)

    def advance(self, outcome: IngestionResult | PartitionFailure) -> None:
        assert self.task is not None
        if isinstance(outcome, PartitionFailure):
            self.failures += 1
        else:
            self.rows += outcome.rows_extracted
        elapsed = self.progress.tasks[self.task].elapsed or 1e-9
        self.progress.update(self.task, advance=1, rows=self.rows, rate=self.rows / elapsed, failures=self.failures)
