"""Snapshot expiry: what a branch keeps, the coverage an expired snapshot leaves behind, and the
upkeep every merge does itself so that a table's per-commit cost does not grow with its age.

:func:`cascade.maintenance.expire_snapshots` runs the same plan on demand, with retries.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass, field

from pyiceberg.exceptions import CommitFailedException
from pyiceberg.table import Table
from pyiceberg.table.refs import MAIN_BRANCH, SnapshotRefType
from pyiceberg.table.snapshots import Snapshot
from pyiceberg.table.update import AssertRefSnapshotId, AssertTableUUID, TableRequirement
from pyiceberg.table.update.snapshot import ExpireSnapshots

from cascade.coverage import encode_runs, lineage_runs, runs_property
from cascade.errors import MaintenanceError
from cascade.pyiceberg_compat import commit_once, staged_updates
from cascade.tables import coverage_property, encode_coverage, lineage_coverage
from cascade.telemetry import traced


@dataclass(frozen=True)
class ExpiryResult:
    """What expiry removed (or, in a dry run, would remove)."""

    snapshots_expired: tuple[int, ...]
    snapshots_kept: int
    coverage_recorded: int  # kept snapshots that now carry the partitions of their expired ancestors
    attempts: int


@dataclass(frozen=True)
class ExpiryPlan:
    """Snapshots to remove and the coverage ledger entries to write and drop in the same commit."""

    expired: tuple[int, ...]
    kept: int
    coverage: dict[str, str] = field(default_factory=dict)
    runs: dict[str, str] = field(default_factory=dict)  # the recent runs' time, run id, rows (cascade.coverage)
    dropped_coverage: tuple[str, ...] = ()
    refs: dict[str, int] = field(default_factory=dict)


MAX_SNAPSHOTS = "cascade.history.max-snapshots"
"""Table property: the snapshots a branch keeps when merges expire old ones themselves (0: never)."""
DEFAULT_MAX_SNAPSHOTS = 100
LEAST_MAX_SNAPSHOTS = 60  # above HISTORY_SEARCH_DEPTH: a writer unsure of its commit still finds it
EXPIRY_SLACK = 50  # expire once per this many commits past the limit, not on every commit


def expire_on_commit(table: Table) -> ExpiryResult | None:
    """The upkeep a merge does itself, so a table's per-commit cost does not grow with its age.

    pyiceberg reads, copies and rewrites all of ``metadata.json`` on every commit, and it grows
    with every snapshot. Once a table holds ``cascade.history.max-snapshots`` (100) plus 50
    snapshots, this expires the oldest down to each branch's last 100, recording their coverage
    in the ledger as ``cascade maintain`` does. One attempt: when another writer wins the race,
    a later commit does the upkeep. Returns what was expired, or ``None`` when nothing was due.
    """
    try:
        limit = int(table.properties.get(MAX_SNAPSHOTS, DEFAULT_MAX_SNAPSHOTS))
    except ValueError:
        raise MaintenanceError(
            f"table {_name(table)}: {MAX_SNAPSHOTS}={table.properties[MAX_SNAPSHOTS]!r} is not a whole number"
        ) from None
    if limit <= 0 or len(table.metadata.snapshots) <= max(limit, LEAST_MAX_SNAPSHOTS) + EXPIRY_SLACK:
        return None
    plan = plan_expiry(table, cutoff_ms=int(time.time() * 1000) + 1, retain_last=max(limit, LEAST_MAX_SNAPSHOTS))
    if not plan.expired:
        return None
    try:
        with traced("maintenance.expire", table=_name(table), on_commit=True):
            commit_expiry(table, plan)
    except CommitFailedException:
        return None  # another writer moved a ref first; the next commit's upkeep tries again
    return ExpiryResult(plan.expired, plan.kept, len(plan.coverage), 1)


def plan_expiry(table: Table, *, cutoff_ms: int, retain_last: int) -> ExpiryPlan:
    """Which snapshots go, and the coverage each kept snapshot whose parent goes must carry."""
    metadata = table.metadata
    by_id = {s.snapshot_id: s for s in metadata.snapshots}  # Table.snapshot_by_id scans the list
    keep = {ref.snapshot_id for ref in metadata.refs.values()}
    main = metadata.refs.get(MAIN_BRANCH)
    for name, ref in metadata.refs.items():
        if ref.snapshot_ref_type == SnapshotRefType.BRANCH:
            lineage = _ancestor_ids(by_id, ref.snapshot_id)
            keep |= set(lineage[:retain_last])
            if main is not None and name != MAIN_BRANCH:
                keep |= set(_path_down_to(lineage, main.snapshot_id))
    expired = {s.snapshot_id for s in metadata.snapshots if s.timestamp_ms < cutoff_ms and s.snapshot_id not in keep}
    coverage, runs = {}, {}
    for snapshot in metadata.snapshots:
        if snapshot.snapshot_id in expired or snapshot.parent_snapshot_id not in expired:
            continue
        below = lineage_coverage(table, by_id.get(snapshot.parent_snapshot_id), by_id)
        if below:
            coverage[coverage_property(snapshot.snapshot_id)] = encode_coverage(below)
        if recent := lineage_runs(table, by_id.get(snapshot.parent_snapshot_id), by_id):
            runs[runs_property(snapshot.snapshot_id)] = encode_runs(recent)
    dropped = tuple(
        name
        for snapshot_id in sorted(expired)
        for name in (coverage_property(snapshot_id), runs_property(snapshot_id))
        if name in metadata.properties
    )
    return ExpiryPlan(
        expired=tuple(sorted(expired)),
        kept=len(metadata.snapshots) - len(expired),
        coverage=coverage,
        runs=runs,
        dropped_coverage=dropped,
        refs={name: ref.snapshot_id for name, ref in metadata.refs.items()},
    )


def commit_expiry(table: Table, plan: ExpiryPlan) -> None:
    """Remove the plan's snapshots and write its coverage in one commit, if no ref moved meanwhile."""
    transaction = table.transaction()
    if plan.coverage or plan.runs:
        transaction.set_properties({**plan.coverage, **plan.runs})
    if plan.dropped_coverage:
        transaction.remove_properties(*plan.dropped_coverage)
    ExpireSnapshots(transaction).by_ids(list(plan.expired)).commit()  # refuses a ref head
    requirements: tuple[TableRequirement, ...] = (
        AssertTableUUID(uuid=table.metadata.table_uuid),
        *(AssertRefSnapshotId(snapshot_id=snapshot_id, ref=name) for name, snapshot_id in plan.refs.items()),  # type: ignore[call-arg]
    )
    # One attempt with these requirements; pyiceberg's own retry would apply the removal to a
    # table whose refs may have moved. _with_retries plans again instead.
    commit_once(table, staged_updates(transaction), requirements)


def _path_down_to(lineage: list[int], snapshot_id: int) -> list[int]:
    """A branch's snapshots down to ``snapshot_id`` (main's head), when that is one of its ancestors.

    Kept so that the branch still descends from main: ``cascade branch publish`` fast-forwards
    main only when main's head is an ancestor of the branch's head.
    """
    return lineage[: lineage.index(snapshot_id)] if snapshot_id in lineage else []


def _ancestor_ids(by_id: Mapping[int, Snapshot], snapshot_id: int) -> list[int]:
    found: list[int] = []
    snapshot = by_id.get(snapshot_id)
    while snapshot is not None:
        found.append(snapshot.snapshot_id)
        parent = snapshot.parent_snapshot_id
        snapshot = by_id.get(parent) if parent is not None else None
    return found


def _name(table: Table) -> str:
    return ".".join(table.name())
