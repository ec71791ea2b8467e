"""``cascade backfill``: every partition in a range, N at a time, resumable, with a progress bar."""

from __future__ import annotations

import concurrent.futures
import datetime as dt
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

import cascade
from cascade import (
    CascadeAsset,
    CascadeConfig,
    CascadeError,
    IngestionResult,
    State,
    ingested_partitions,
    open_catalog,
    parse_since,
    redact,
    table_identifier,
    table_status,
)


@dataclass
class BackfillReport:
    """What a backfill did: partitions run, skipped, failed (with their errors), rows landed."""

    planned: list[str]
    skipped: list[str]
    succeeded: dict[str, IngestionResult] = field(default_factory=dict)
    failed: dict[str, str] = field(default_factory=dict)
    interrupted: bool = False

    def record(self, partition: str, future: concurrent.futures.Future[IngestionResult | None]) -> None:
        """Note a finished partition's outcome: its result, or its error's first line."""
        try:
            result = future.result()
        except CascadeError as error:
            self.failed[partition] = redact(str(error)).splitlines()[0]
        else:
            if result is not None:
                self.succeeded[partition] = result

    @property
    def rows(self) -> int:
        return sum(r.rows_extracted for r in self.succeeded.values())

    def as_dict(self) -> dict[str, Any]:
        return {
            "planned": self.planned,
            "skipped": self.skipped,
            "succeeded": sorted(self.succeeded),
            "failed": self.failed,
            "rows_extracted": self.rows,
            "rows_inserted": sum(r.rows_inserted for r in self.succeeded.values()),
            "interrupted": self.interrupted,
        }


def date_range(start: dt.date, end: dt.date) -> list[str]:
    return [(start + dt.timedelta(days=n)).isoformat() for n in range((end - start).days + 1)]


def already_ingested(asset: CascadeAsset[Any, Any], branch: str, config: CascadeConfig) -> set[str]:
    """Partitions that a committed run of ``asset`` wrote on ``branch``, read from the table's snapshots."""
    catalog = open_catalog(config)
    identifier = ".".join(table_identifier(asset.spec, config))
    if not catalog.table_exists(identifier):
        return set()
    table = catalog.load_table(identifier)
    if branch not in table.metadata.refs:
        return set()
    return ingested_partitions(table, asset.spec.name, branch)


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
    run: Callable[..., IngestionResult] = cascade.run,
) -> BackfillReport:
    skip = set() if force else already_ingested(asset, branch, config) & set(partitions)
    todo = [p for p in partitions if p not in skip]
    report = BackfillReport(planned=partitions, skipped=sorted(skip))
    stop = threading.Event()
    progress = Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("rows {task.fields[rows]:,}"),
        TextColumn("{task.fields[rate]:,.0f} rows/s"),
        TextColumn("failures {task.fields[failures]}"),
        TimeElapsedColumn(),
        console=console,
        disable=not show_progress,
    )

    def one(partition: str) -> IngestionResult | None:
        if stop.is_set():
            return None
        return run(asset, partition, branch=branch, config=config)

    with progress:
        task = progress.add_task(f"{asset.spec.name} @ {branch}", total=len(todo), rows=0, rate=0.0, failures=0)
        pool = concurrent.futures.ThreadPoolExecutor(max_workers=workers, thread_name_prefix="backfill")
        futures = {pool.submit(one, partition): partition for partition in todo}
        try:
            for future in concurrent.futures.as_completed(futures):
                report.record(futures[future], future)
                elapsed = progress.tasks[task].elapsed or 1e-9
                progress.update(
                    task, advance=1, rows=report.rows, rate=report.rows / elapsed, failures=len(report.failed)
                )
        except KeyboardInterrupt:
            # Runs already committing finish (each commit is atomic); queued ones never start.
            report.interrupted = True
            stop.set()
            for future in futures:
                future.cancel()
            for future, partition in futures.items():
                if not future.cancelled():
                    report.record(partition, future)
        finally:
            pool.shutdown(wait=True, cancel_futures=True)
    return report
