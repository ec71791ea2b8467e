"""Looking at and managing Cascade's tables: history, ingested partitions, branches.

Orchestrator-agnostic helpers behind ``cascade history``, ``cascade backfill`` (resume) and
``cascade branch``; they read Iceberg metadata only, never a local state file.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from dataclasses import dataclass

from pyiceberg.catalog import Catalog
from pyiceberg.table import Table
from pyiceberg.table.refs import MAIN_BRANCH
from pyiceberg.table.snapshots import Snapshot

from cascade.catalog import branches, check_branch_name, first_line
from cascade.errors import ConfigurationError, TerminalError
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
    """Partitions of ``asset`` that a committed Cascade run wrote on ``branch`` (from snapshot summaries)."""
    return {
        partition
        for snapshot in ancestry(table, branch)
        if _property(snapshot, "cascade.asset") == asset and (partition := _property(snapshot, "cascade.partition"))
    }


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
