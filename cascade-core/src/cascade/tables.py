"""Looking at and managing Cascade's tables: history, ingested partitions, branches.

Orchestrator-agnostic helpers behind ``cascade history``, ``cascade backfill`` (resume) and
``cascade branch``; they read Iceberg metadata only, never a local state file.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass

from pyiceberg.catalog import Catalog
from pyiceberg.table import Table
from pyiceberg.table.refs import MAIN_BRANCH
from pyiceberg.table.snapshots import Snapshot

from cascade.catalog import branches, first_line
from cascade.errors import ConfigurationError, TerminalError
from cascade.naming import check_branch_name
from cascade.redaction import redact


class TableReadError(TerminalError):
    """A table's metadata cannot be read (a corrupt or missing metadata file)."""


def load_table(catalog: Catalog, identifier: str) -> Table:
    """``catalog.load_table``, with unreadable metadata reported as a terminal error naming the table."""
    from pyiceberg.exceptions import NoSuchTableError, ValidationError

    try:
        return catalog.load_table(identifier)
    except NoSuchTableError:
        raise
    except (ValidationError, ValueError, OSError) as error:
        reason = redact(first_line(str(error)))
        raise TableReadError(
            f"table {identifier}: its metadata could not be read ({type(error).__name__}: {reason}); "
            "the metadata file is corrupt or missing"
        ) from error


class BranchError(TerminalError):
    """A branch operation cannot be done (unknown branch, diverged history, main itself)."""


@dataclass(frozen=True)
class SnapshotRecord:
    """One snapshot as ``cascade history`` shows it."""

    snapshot_id: int
    committed_at: dt.datetime
    operation: str
    rows_added: int
    rows_removed: int
    total_rows: int | None
    run_id: str | None
    asset: str | None
    partition: str | None
    branch: str | None


@dataclass(frozen=True)
class TableSummary:
    identifier: str
    rows: int
    snapshots: int
    last_updated: dt.datetime | None
    branches: tuple[str, ...]


def _property(snapshot: Snapshot, key: str) -> str | None:
    return snapshot.summary.additional_properties.get(key) if snapshot.summary is not None else None


def _count(snapshot: Snapshot, key: str) -> int:
    return int(_property(snapshot, key) or 0)


def ancestry(table: Table, branch: str = MAIN_BRANCH) -> Iterator[Snapshot]:
    """The branch head and its ancestors, newest first."""
    snapshot = table.snapshot_by_name(branch)
    while snapshot is not None:
        yield snapshot
        parent = snapshot.parent_snapshot_id
        snapshot = table.snapshot_by_id(parent) if parent is not None else None


def history(table: Table, branch: str = MAIN_BRANCH) -> list[SnapshotRecord]:
    """The branch's snapshots, oldest first, with the Cascade run that made each."""
    records = [
        SnapshotRecord(
            snapshot_id=s.snapshot_id,
            committed_at=dt.datetime.fromtimestamp(s.timestamp_ms / 1000, dt.UTC),
            operation=str(s.summary.operation.value) if s.summary is not None else "?",
            rows_added=_count(s, "added-records"),
            rows_removed=_count(s, "deleted-records"),
            total_rows=int(t) if (t := _property(s, "total-records")) is not None else None,
            run_id=_property(s, "cascade.run-id"),
            asset=_property(s, "cascade.asset"),
            partition=_property(s, "cascade.partition"),
            branch=_property(s, "cascade.branch"),
        )
        for s in ancestry(table, branch)
    ]
    return records[::-1]


def ingested_partitions(table: Table, asset: str, branch: str = MAIN_BRANCH) -> set[str]:
    """Partitions of ``asset`` that a committed Cascade run wrote on ``branch``.

    Read from the summaries of the branch's snapshots and, for the snapshots that expiry removed,
    from the coverage ledger that the expiry recorded on the oldest snapshot it kept.
    """
    found: set[str] = set()
    for snapshot in ancestry(table, branch):
        if _property(snapshot, "cascade.asset") == asset and (partition := _property(snapshot, "cascade.partition")):
            found.add(partition)
        found |= recorded_coverage(table, snapshot.snapshot_id).get(asset, set())
    return found


# Expired snapshots take their summaries with them. Before removing them, expiry records which
# partitions each asset committed below every snapshot it keeps whose parent it removes, in a
# table property keyed by that snapshot's id and written in the same commit as the removal.
COVERAGE_PREFIX = "cascade.coverage."


def coverage_property(snapshot_id: int) -> str:
    return f"{COVERAGE_PREFIX}{snapshot_id}"


def recorded_coverage(table: Table, snapshot_id: int) -> dict[str, set[str]]:
    """The partitions per asset committed by the expired ancestors of ``snapshot_id``."""
    value = table.metadata.properties.get(coverage_property(snapshot_id))
    return decode_coverage(value) if value else {}


def lineage_coverage(
    table: Table, snapshot: Snapshot | None, by_id: Mapping[int, Snapshot] | None = None
) -> dict[str, set[str]]:
    """Partitions per asset committed by ``snapshot`` and its ancestors (recorded coverage included).

    ``by_id`` (every snapshot by id) spares a scan of the snapshot list per ancestor.
    """
    lookup = by_id if by_id is not None else {s.snapshot_id: s for s in table.metadata.snapshots}
    found: dict[str, set[str]] = {}
    while snapshot is not None:
        asset, partition = _property(snapshot, "cascade.asset"), _property(snapshot, "cascade.partition")
        if asset and partition:
            found.setdefault(asset, set()).add(partition)
        for name, partitions in recorded_coverage(table, snapshot.snapshot_id).items():
            found.setdefault(name, set()).update(partitions)
        parent = snapshot.parent_snapshot_id
        snapshot = lookup.get(parent) if parent is not None else None
    return found


def encode_coverage(coverage: Mapping[str, Iterable[str]]) -> str:
    """Compact JSON: runs of consecutive days as ``first..last``, anything else as itself."""
    return json.dumps(
        {asset: _day_runs(partitions) for asset, partitions in sorted(coverage.items())}, separators=(",", ":")
    )


def decode_coverage(value: str) -> dict[str, set[str]]:
    return {asset: {day for item in items for day in _expand(item)} for asset, items in json.loads(value).items()}


def _day_runs(partitions: Iterable[str]) -> list[str]:
    days, others = [], []
    for partition in set(partitions):
        day = _as_day(partition)
        if day is None:
            others.append(partition)
        else:
            days.append(day)
    runs: list[str] = []
    for day in sorted(days):
        if runs and runs[-1].rsplit("..", 1)[-1] == (day - dt.timedelta(days=1)).isoformat():
            runs[-1] = f"{runs[-1].split('..', 1)[0]}..{day.isoformat()}"
        else:
            runs.append(day.isoformat())
    return runs + sorted(others)


def _as_day(partition: str) -> dt.date | None:
    """The day a partition names, only when written exactly as ``YYYY-MM-DD``."""
    try:
        day = dt.date.fromisoformat(partition)
    except ValueError:
        return None
    return day if day.isoformat() == partition else None


def _expand(item: str) -> list[str]:
    first, sep, last = item.partition("..")
    start, end = _as_day(first), _as_day(last)
    if not sep or start is None or end is None:
        return [item]
    return [(start + dt.timedelta(days=n)).isoformat() for n in range((end - start).days + 1)]


def summarize(catalog: Catalog, identifier: str) -> TableSummary:
    table = load_table(catalog, identifier)
    head = table.current_snapshot()
    return TableSummary(
        identifier=identifier,
        rows=_count(head, "total-records") if head else 0,
        snapshots=len(table.snapshots()),
        last_updated=dt.datetime.fromtimestamp(table.metadata.last_updated_ms / 1000, dt.UTC),
        branches=tuple(sorted(branches(table))),
    )


def all_tables(catalog: Catalog) -> list[str]:
    return sorted(
        ".".join(identifier) for namespace in catalog.list_namespaces() for identifier in catalog.list_tables(namespace)
    )


def create_branch(table: Table, name: str, from_branch: str = MAIN_BRANCH) -> int:
    check_branch_name(name)
    if name in table.metadata.refs:
        raise BranchError(f"table {_name(table)}: branch {name!r} already exists")
    head = table.snapshot_by_name(from_branch)
    if head is None:
        raise BranchError(f"table {_name(table)}: branch {from_branch!r} has no snapshot to branch from")
    table.manage_snapshots().create_branch(head.snapshot_id, name).commit()
    return head.snapshot_id


def drop_branch(table: Table, name: str) -> None:
    if name == MAIN_BRANCH:
        raise BranchError(f"table {_name(table)}: main cannot be dropped")
    if name not in branches(table):
        raise BranchError(f"table {_name(table)}: no branch {name!r} (branches: {', '.join(sorted(branches(table)))})")
    table.manage_snapshots().remove_branch(name).commit()


def publish_branch(table: Table, name: str) -> int:
    """Fast-forward main to ``name``'s head when main is an ancestor of it; else refuse."""
    if name == MAIN_BRANCH:
        raise BranchError(f"table {_name(table)}: main cannot be published onto itself")
    head = table.snapshot_by_name(name)
    if head is None or name not in branches(table):
        raise BranchError(f"table {_name(table)}: no branch {name!r} (branches: {', '.join(sorted(branches(table)))})")
    main = table.snapshot_by_name(MAIN_BRANCH)
    if main is not None and main.snapshot_id not in {s.snapshot_id for s in ancestry(table, name)}:
        raise BranchError(
            f"table {_name(table)}: main has diverged from branch {name!r} (main's head {main.snapshot_id} is not "
            f"an ancestor of the branch); rebuild the branch from main and publish again"
        )
    table.manage_snapshots().set_current_snapshot(snapshot_id=head.snapshot_id).commit()
    return head.snapshot_id


def _name(table: Table) -> str:
    return ".".join(table.name())


def parse_identifier(identifier: str) -> str:
    parts = identifier.split(".")
    if len(parts) != 2 or not all(parts):
        raise ConfigurationError(f"{identifier!r} is not a table name of the form namespace.table")
    return identifier
