"""Table maintenance: expire snapshots, compact small files, rewrite manifests, remove orphan files.

Every step is safe against concurrent ``cascade run`` / ``merge_into`` on the same table:

- *compaction* and *manifest rewrites* commit one snapshot that asserts the branch head they
  planned against (as :func:`cascade.merge.commit.commit_plan` does); when a writer got there first
  they delete what they wrote, re-read the table and plan again. A writer that loses to them
  re-plans the same way. On a PostgreSQL catalog they also take Cascade's per-table writer lock,
  so they queue with the writers instead of throwing work away;
- *expiry* asserts that no branch or tag moved since it chose what to remove, and never removes
  the head of a branch or tag (pyiceberg's ``ExpireSnapshots`` refuses that too), nor a
  branch's snapshots back to main's head when it forked from there (publish needs that). In the same
  commit it records, per kept snapshot whose parent it removes, which partitions each asset
  committed below it (:func:`cascade.tables.ingested_partitions` reads that ledger), so backfill
  resume survives expiry, and the recent partitions' last runs (:mod:`cascade.coverage`), so
  ``cascade status`` does too. ``cascade history`` shows only the snapshots kept;
- *orphan removal* lists the files under the table's location first, then reads the metadata:
  a file is removed only if nothing in the metadata (any snapshot of any ref, manifests,
  manifest lists, metadata files, statistics) references it and it is older than the safety
  window, so files of an in-flight writer, or of a run that died, stay while they could still
  be committed.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import math
import time
import uuid
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass
from typing import Any, TypeVar

import pyarrow as pa
from pyiceberg.exceptions import CommitFailedException
from pyiceberg.expressions import AlwaysTrue
from pyiceberg.io import FileIO
from pyiceberg.io.pyarrow import ArrowScan, PyArrowFileIO
from pyiceberg.manifest import (
    DataFile,
    ManifestContent,
    ManifestEntry,
    ManifestFile,
    write_manifest,
    write_manifest_list,
)
from pyiceberg.table import FileScanTask, Table, TableProperties
from pyiceberg.table.refs import MAIN_BRANCH, SnapshotRefType
from pyiceberg.table.snapshots import Operation, Snapshot, Summary
from pyiceberg.table.update import (
    AddSnapshotUpdate,
    AssertRefSnapshotId,
    AssertTableUUID,
    SetSnapshotRefUpdate,
    TableRequirement,
    TableUpdate,
)

from cascade.catalog import writer_lock
from cascade.errors import MaintenanceError, SchemaMismatchError, TransientError
from cascade.expiry import ExpiryResult, commit_expiry, plan_expiry
from cascade.maintenance_policy import MaintenancePolicy
from cascade.merge.chunked import drop_abandoned_staging_branches
from cascade.merge.commit import COMMIT_ID, commit_plan, find_commit, with_retries
from cascade.merge.plan import MergePlan
from cascade.pyiceberg_compat import commit_once, write_data_files
from cascade.telemetry import traced

OPERATION = "cascade.operation"  # in the summary of every snapshot maintenance commits
SMALL_FILE_RATIO = 0.75  # a data file below this share of the target size is small (Iceberg's default)
LOCK_WAIT_SECONDS = 60.0
TOTALS = (
    "total-records",
    "total-files-size",
    "total-data-files",
    "total-delete-files",
    "total-position-deletes",
    "total-equality-deletes",
)

R = TypeVar("R")


class MaintenanceConflictError(TransientError):
    """Concurrent commits kept invalidating a maintenance step; nothing of it was committed."""


@dataclass(frozen=True)
class CompactionResult:
    """What compaction rewrote: per partition, small data files into files near the target size."""

    partitions: int
    files_removed: int
    files_added: int
    rows: int
    bytes_removed: int
    bytes_added: int
    snapshot_id: int | None
    attempts: int


@dataclass(frozen=True)
class ManifestRewriteResult:
    """The branch head's data manifests before and after the rewrite."""

    manifests_before: int
    manifests_after: int
    snapshot_id: int | None
    attempts: int


@dataclass(frozen=True)
class OrphanResult:
    """Files under the table's location that no metadata references."""

    files_removed: tuple[str, ...]
    bytes_removed: int
    files_too_young: int  # unreferenced, but inside the safety window: kept
    files_referenced: int


@dataclass(frozen=True)
class MaintenanceReport:
    """Every step run on one table, in the order run; ``None`` for a step not asked for."""

    table: str
    branch: str
    dry_run: bool
    compaction: CompactionResult | None = None
    manifests: ManifestRewriteResult | None = None
    expiry: ExpiryResult | None = None
    orphans: OrphanResult | None = None
    seconds: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class CompactionPlan:
    """Groups of small data files of one partition each (about a target's worth), planned against one head."""

    base_snapshot_id: int | None
    groups: tuple[tuple[DataFile, ...], ...]

    @property
    def files(self) -> tuple[DataFile, ...]:
        return tuple(data_file for group in self.groups for data_file in group)

    @property
    def partitions(self) -> int:
        return len({repr(tuple(group[0].partition)) for group in self.groups})  # type: ignore[arg-type]


def maintain(
    table: Table,
    policy: MaintenancePolicy,
    *,
    expire: bool = True,
    branch: str = MAIN_BRANCH,
    dry_run: bool = False,
    now: dt.datetime | None = None,
    attempts: int = 20,
) -> MaintenanceReport:
    """Run the steps ``policy`` asks for on ``table``: compact, rewrite manifests, expire, remove orphans.

    Compaction and manifest rewrites work on ``branch``; expiry and orphan removal on the whole
    table. Expiry runs after the rewrites, so the snapshots they replaced can go in the same
    run, and orphan removal last, so the files those snapshots held can too (once old enough).
    """
    now = now or dt.datetime.now(dt.UTC)
    started = time.monotonic()
    compaction = manifests = expiry = orphans = None
    if policy.compact:
        compaction = compact_files(
            table, target_file_size=policy.target_file_size, branch=branch, dry_run=dry_run, attempts=attempts
        )
    if policy.rewrite_manifests:
        manifests = rewrite_manifests(table, branch=branch, dry_run=dry_run, attempts=attempts)
    if expire:
        expiry = expire_snapshots(
            table,
            older_than=policy.expire_older_than,
            retain_last=policy.retain_last,
            now=now,
            dry_run=dry_run,
            attempts=attempts,
        )
    if policy.remove_orphans:
        orphans = remove_orphan_files(table, older_than=policy.orphan_older_than, now=now, dry_run=dry_run)
    return MaintenanceReport(
        table=_name(table),
        branch=branch,
        dry_run=dry_run,
        compaction=compaction,
        manifests=manifests,
        expiry=expiry,
        orphans=orphans,
        seconds=round(time.monotonic() - started, 3),
    )


# --- expiry ---------------------------------------------------------------------------------


def expire_snapshots(
    table: Table,
    *,
    older_than: dt.timedelta,
    retain_last: int,
    now: dt.datetime | None = None,
    dry_run: bool = False,
    attempts: int = 20,
) -> ExpiryResult:
    """Remove snapshots older than ``older_than``, keeping each branch's last ``retain_last`` and every ref head."""
    if retain_last < 1:
        raise MaintenanceError(f"table {_name(table)}: retain_last must be at least 1, got {retain_last}")
    cutoff_ms = int(((now or dt.datetime.now(dt.UTC)) - older_than).timestamp() * 1000)
    if not dry_run:  # a dead merge's staging branch would keep its snapshots (and their files) forever
        _with_retries(
            table, "dropping abandoned staging branches", attempts, lambda t: drop_abandoned_staging_branches(t, now)
        )

    def attempt(current: Table) -> ExpiryResult:
        plan = plan_expiry(current, cutoff_ms=cutoff_ms, retain_last=retain_last)
        if plan.expired and not dry_run:
            commit_expiry(current, plan)
        return ExpiryResult(plan.expired, plan.kept, len(plan.coverage), 0)

    with traced("maintenance.expire", table=_name(table), dry_run=dry_run):
        result, tries = _with_retries(table, "expiring snapshots", attempts, attempt)
    return ExpiryResult(result.snapshots_expired, result.snapshots_kept, result.coverage_recorded, tries)


# --- compaction -----------------------------------------------------------------------------


def compact_files(
    table: Table,
    *,
    target_file_size: int,
    branch: str = MAIN_BRANCH,
    dry_run: bool = False,
    attempts: int = 20,
) -> CompactionResult:
    """Rewrite each partition's small data files into files near ``target_file_size``, in one snapshot.

    Rows are copied as read (same keys, values and ``_cascade_ingested_at``), sorted by the
    table's unique key when it records one, so merges can prune the new files by key range.
    """
    commit_id = uuid.uuid4().hex

    def attempt(current: Table) -> CompactionResult:
        with writer_lock(current, branch, wait_seconds=LOCK_WAIT_SECONDS) as locked:
            current = current.refresh() if locked else current
            plan = plan_compaction(current, branch=branch, target_file_size=target_file_size)
            removed = plan.files
            if not removed or dry_run:
                return CompactionResult(
                    plan.partitions, len(removed), 0, sum(f.record_count for f in removed),
                    sum(f.file_size_in_bytes for f in removed), 0, None, 0,
                )  # fmt: skip
            written = rewrite_groups(current, plan.groups, target_file_size)
            properties = {OPERATION: "compact", COMMIT_ID: commit_id}
            snapshot_id = _commit_or_clean(
                current,
                branch,
                commit_id,
                [f.file_path for f in written],
                lambda: commit_plan(current, _replacing(plan), written, branch=branch, properties=properties),
            )
        return CompactionResult(
            partitions=plan.partitions,
            files_removed=len(removed),
            files_added=len(written),
            rows=sum(f.record_count for f in written),
            bytes_removed=sum(f.file_size_in_bytes for f in removed),
            bytes_added=sum(f.file_size_in_bytes for f in written),
            snapshot_id=snapshot_id,
            attempts=0,
        )

    with traced("maintenance.compact", table=_name(table), branch=branch, dry_run=dry_run):
        result, tries = _with_retries(table, "compacting data files", attempts, attempt)
    return CompactionResult(**{**asdict(result), "attempts": tries})


def plan_compaction(table: Table, *, branch: str, target_file_size: int) -> CompactionPlan:
    """Per partition of the current spec, the small data files of ``branch``'s head, where there are two or more."""
    head = table.snapshot_by_name(branch)
    if head is None:
        return CompactionPlan(None, ())
    spec_id = table.spec().spec_id
    small: dict[tuple[Any, ...], list[DataFile]] = defaultdict(list)
    for manifest in _data_manifests(table, head):
        for entry in manifest.fetch_manifest_entry(table.io, discard_deleted=True):
            data_file = entry.data_file
            if data_file.spec_id == spec_id and data_file.file_size_in_bytes < target_file_size * SMALL_FILE_RATIO:
                small[tuple(data_file.partition)].append(data_file)  # type: ignore[arg-type]
    groups = [
        group
        for _, files in sorted(small.items(), key=_partition_order)
        for group in _bins(sorted(files, key=lambda f: f.file_path), target_file_size)
    ]
    return CompactionPlan(head.snapshot_id, tuple(group for group in groups if len(group) > 1))


def _bins(files: list[DataFile], target_file_size: int) -> list[tuple[DataFile, ...]]:
    """A partition's small files in runs of about ``target_file_size`` bytes: one run read in memory at a time."""
    bins: list[list[DataFile]] = [[]]
    size = 0
    for data_file in files:
        if bins[-1] and size + data_file.file_size_in_bytes > target_file_size:
            bins.append([])
            size = 0
        bins[-1].append(data_file)
        size += data_file.file_size_in_bytes
    return [tuple(b) for b in bins]


def rewrite_groups(table: Table, groups: Sequence[Sequence[DataFile]], target_file_size: int) -> list[DataFile]:
    """Write each group's rows as new data files near ``target_file_size``; commits nothing."""
    keys = [k for k in table.metadata.properties.get("cascade.unique-key", "").split(",") if k]
    schema = table.schema()
    keys = [k for k in keys if k in schema.column_names]
    # pyiceberg sizes the files it writes by this table property; only this write sees the change.
    metadata = table.metadata.model_copy(
        update={
            "properties": {
                **table.metadata.properties,
                TableProperties.WRITE_TARGET_FILE_SIZE_BYTES: str(target_file_size),
            }
        }
    )
    written: list[DataFile] = []
    try:
        for group in groups:
            rows = read_data_files(table, group)
            expected = sum(f.record_count for f in group)
            if rows.num_rows != expected:
                raise MaintenanceError(
                    f"table {_name(table)}: read {rows.num_rows} rows from {len(group)} data files that hold "
                    f"{expected}; compaction stopped with nothing committed"
                )
            if keys:
                rows = rows.sort_by([(k, "ascending") for k in keys])
            written.extend(write_data_files(metadata, rows, table.io, keys))
    except BaseException:
        _delete_paths(table.io, [f.file_path for f in written])
        raise
    return written


def read_data_files(table: Table, files: Iterable[DataFile]) -> pa.Table:
    """The rows of ``files`` in the table's current schema (pyiceberg's own reader, so evolved files read right)."""
    scan = ArrowScan(table.metadata, table.io, table.schema(), AlwaysTrue())
    return scan.to_table([FileScanTask(data_file) for data_file in files])


def _replacing(plan: CompactionPlan) -> MergePlan:
    """The compaction as a merge plan that replaces its files, for the merge engine's guarded commit."""
    return MergePlan(
        base_snapshot_id=plan.base_snapshot_id,
        replaced_files=plan.files,
        rows_to_write=pa.table({}),
        rows_inserted=0,
        rows_updated=0,
        rows_unchanged=0,
        files_considered=len(plan.files),
        files_read=len(plan.files),
        bytes_read=sum(f.file_size_in_bytes for f in plan.files),
    )


def _partition_order(item: tuple[tuple[Any, ...], list[DataFile]]) -> tuple[tuple[bool, Any], ...]:
    return _sortable(item[0])


def _sortable(partition: tuple[Any, ...]) -> tuple[tuple[bool, Any], ...]:
    """A partition tuple as a sort key that nulls cannot break (a field's values share one type)."""
    return tuple((value is None, "" if value is None else value) for value in partition)


# --- manifests ------------------------------------------------------------------------------


def rewrite_manifests(
    table: Table,
    *,
    branch: str = MAIN_BRANCH,
    target_manifest_size: int | None = None,
    dry_run: bool = False,
    attempts: int = 20,
) -> ManifestRewriteResult:
    """Rewrite the branch head's data manifests into as few as ``target_manifest_size`` allows.

    The size defaults to the table's ``commit.manifest.target-size-bytes`` (8 MB). Entries keep
    their status-independent identity (file, snapshot id, sequence numbers) and are ordered by
    partition, so each new manifest covers a narrow partition range. One ``replace`` snapshot.
    """
    commit_id = uuid.uuid4().hex

    def attempt(current: Table) -> ManifestRewriteResult:
        with writer_lock(current, branch, wait_seconds=LOCK_WAIT_SECONDS) as locked:
            current = current.refresh() if locked else current
            head = current.snapshot_by_name(branch)
            if head is None:
                return ManifestRewriteResult(0, 0, None, 0)
            target = target_manifest_size or _manifest_target(current)
            before = _data_manifests(current, head)
            bins = _manifest_bins(current, before, target)
            after = sum(len(chunks) for chunks in bins.values())
            if after >= len(before) or dry_run:
                return ManifestRewriteResult(len(before), min(after, len(before)), None, 0)
            snapshot_id = _commit_manifests(current, head, branch, bins, commit_id)
        return ManifestRewriteResult(len(before), after, snapshot_id, 0)

    with traced("maintenance.rewrite_manifests", table=_name(table), branch=branch, dry_run=dry_run):
        result, tries = _with_retries(table, "rewriting manifests", attempts, attempt)
    return ManifestRewriteResult(result.manifests_before, result.manifests_after, result.snapshot_id, tries)


def _manifest_target(table: Table) -> int:
    value = table.metadata.properties.get(TableProperties.MANIFEST_TARGET_SIZE_BYTES)
    return int(value) if value else TableProperties.MANIFEST_TARGET_SIZE_BYTES_DEFAULT


def _data_manifests(table: Table, head: Snapshot) -> list[ManifestFile]:
    manifests = head.manifests(table.io)
    if any(m.content == ManifestContent.DELETES and (m.added_files_count or m.existing_files_count) for m in manifests):
        raise SchemaMismatchError(
            f"table {_name(table)} has delete files (merge-on-read); Cascade maintains copy-on-write tables only"
        )
    return [m for m in manifests if m.content == ManifestContent.DATA]


def _manifest_bins(table: Table, manifests: list[ManifestFile], target: int) -> dict[int, list[list[ManifestEntry]]]:
    """Per partition spec, the live entries split into ``ceil(total size / target)`` partition-ordered runs."""
    by_spec: dict[int, list[ManifestFile]] = defaultdict(list)
    for manifest in manifests:
        by_spec[manifest.partition_spec_id].append(manifest)
    bins: dict[int, list[list[ManifestEntry]]] = {}
    for spec_id, group in by_spec.items():
        entries = [e for m in group for e in m.fetch_manifest_entry(table.io, discard_deleted=True)]
        if not entries:
            continue
        entries.sort(key=lambda e: (_sortable(tuple(e.data_file.partition)), e.data_file.file_path))  # type: ignore[arg-type]
        count = max(1, math.ceil(sum(m.manifest_length for m in group) / target))
        size = math.ceil(len(entries) / count)
        bins[spec_id] = [entries[i : i + size] for i in range(0, len(entries), size)]
    return bins


def _commit_manifests(
    table: Table, head: Snapshot, branch: str, bins: dict[int, list[list[ManifestEntry]]], commit_id: str
) -> int:
    """Write the new manifests and manifest list and commit a ``replace`` snapshot guarded on the head."""
    metadata = table.metadata
    snapshot_id = metadata.new_snapshot_id()
    sequence_number = metadata.next_sequence_number()
    compression = metadata.properties.get(
        TableProperties.WRITE_AVRO_COMPRESSION, TableProperties.WRITE_AVRO_COMPRESSION_DEFAULT
    )
    locations = table.location_provider()
    write_id = uuid.uuid4()
    written: list[str] = []
    try:
        manifests = []
        for spec_id, chunks in bins.items():
            for chunk in chunks:
                path = locations.new_metadata_location(f"{write_id}-m{len(written)}.avro")
                written.append(path)
                writer = write_manifest(
                    format_version=metadata.format_version,
                    spec=metadata.specs()[spec_id],
                    schema=metadata.schema(),
                    output_file=table.io.new_output(path),
                    snapshot_id=snapshot_id,
                    avro_compression=compression,  # type: ignore[arg-type]
                )
                with writer:
                    for entry in chunk:
                        writer.existing(entry)
                manifests.append(writer.to_manifest_file())
        list_path = locations.new_metadata_location(f"snap-{snapshot_id}-0-{write_id}.avro")
        written.append(list_path)
        with write_manifest_list(
            format_version=metadata.format_version,
            output_file=table.io.new_output(list_path),
            snapshot_id=snapshot_id,
            parent_snapshot_id=head.snapshot_id,
            sequence_number=sequence_number,
            avro_compression=compression,  # type: ignore[arg-type]
        ) as list_writer:
            list_writer.add_manifests(manifests)
    except BaseException:
        _delete_paths(table.io, written)
        raise
    totals = {k: v for k, v in (head.summary.additional_properties if head.summary else {}).items() if k in TOTALS}
    snapshot = Snapshot(  # type: ignore[call-arg]
        snapshot_id=snapshot_id,
        parent_snapshot_id=head.snapshot_id,
        sequence_number=sequence_number,
        manifest_list=list_path,
        summary=Summary(Operation.REPLACE, **totals, **{OPERATION: "rewrite-manifests", COMMIT_ID: commit_id}),
        schema_id=metadata.current_schema_id,
    )
    updates: tuple[TableUpdate, ...] = (
        AddSnapshotUpdate(snapshot=snapshot),
        SetSnapshotRefUpdate(  # type: ignore[call-arg]
            snapshot_id=snapshot_id, parent_snapshot_id=head.snapshot_id, ref_name=branch, type=SnapshotRefType.BRANCH
        ),
    )
    requirements: tuple[TableRequirement, ...] = (
        AssertRefSnapshotId(snapshot_id=head.snapshot_id, ref=branch),  # type: ignore[call-arg]
        AssertTableUUID(uuid=metadata.table_uuid),
    )

    def commit() -> int:
        commit_once(table, updates, requirements)
        return snapshot_id

    return _commit_or_clean(table, branch, commit_id, written, commit)


# --- orphan files ---------------------------------------------------------------------------


def remove_orphan_files(
    table: Table, *, older_than: dt.timedelta, now: dt.datetime | None = None, dry_run: bool = False
) -> OrphanResult:
    """Delete files under the table's location that no metadata references and that are older than ``older_than``."""
    cutoff = ((now or dt.datetime.now(dt.UTC)) - older_than).timestamp()
    with traced("maintenance.remove_orphans", table=_name(table), dry_run=dry_run):
        # The listing comes first: a file committed after it is read from the metadata below,
        # and a file written after it is not in the listing.
        listed = list_files(table.io, table.location())
        referenced = referenced_files(table.refresh())
        unreferenced = [f for f in listed if f.path not in referenced]
        old = [f for f in unreferenced if f.modified is not None and f.modified < cutoff]
        if not dry_run:
            for orphan in old:
                with contextlib.suppress(FileNotFoundError):  # another maintenance run took it first
                    table.io.delete(orphan.location)
    return OrphanResult(
        files_removed=tuple(sorted(f.location for f in old)),
        bytes_removed=sum(f.size for f in old),
        files_too_young=len(unreferenced) - len(old),
        files_referenced=len(listed) - len(unreferenced),
    )


@dataclass(frozen=True)
class ListedFile:
    path: str  # scheme-less, as compared with the metadata's references
    location: str  # as the table's FileIO opens it
    size: int
    modified: float | None  # epoch seconds; None when the store does not say (never removed)


def referenced_files(table: Table) -> set[str]:
    """Every file the metadata references (scheme-less): metadata, manifest lists, manifests, data, statistics."""
    metadata = table.metadata
    paths = {table.metadata_location, *(entry.metadata_file for entry in metadata.metadata_log)}
    paths |= {s.statistics_path for s in metadata.statistics}
    paths |= {s.statistics_path for s in getattr(metadata, "partition_statistics", [])}
    manifests: dict[str, ManifestFile] = {}
    for snapshot in metadata.snapshots:
        paths.add(snapshot.manifest_list)
        for manifest in snapshot.manifests(table.io):
            manifests.setdefault(manifest.manifest_path, manifest)
    for path, manifest in manifests.items():
        paths.add(path)
        for entry in manifest.fetch_manifest_entry(table.io, discard_deleted=True):
            paths.add(entry.data_file.file_path)
    return {_scheme_less(p) for p in paths}


def list_files(io: FileIO, location: str) -> list[ListedFile]:
    """Every file under ``location`` with its size and modification time, through the table's FileIO."""
    scheme, netloc, root = PyArrowFileIO.parse_location(location)
    root = root.rstrip("/")
    bare = "://" not in location
    found: list[ListedFile] = []
    if isinstance(io, PyArrowFileIO):
        from pyarrow.fs import FileSelector, FileType

        filesystem = io.fs_by_scheme(scheme, netloc)
        for info in filesystem.get_file_info(FileSelector(root, recursive=True, allow_not_found=True)):
            if info.type == FileType.File and info.path.startswith(root + "/"):
                modified = info.mtime.timestamp() if info.mtime is not None else None
                found.append(ListedFile(info.path, _location(scheme, info.path, bare=bare), info.size or 0, modified))
        return found
    get_fs = getattr(io, "get_fs", None)
    if get_fs is None:
        raise MaintenanceError(f"cannot list files of {location}: FileIO {type(io).__name__} cannot list")
    filesystem = get_fs(scheme, netloc) if scheme not in ("file", "") else get_fs("file")
    for path, detail in filesystem.find(root, detail=True).items():
        path = path.rstrip("/") if scheme in ("file", "") else str(path)
        if not path.startswith(root + "/") or detail.get("type") == "directory":
            continue
        size = int(detail.get("size") or 0)
        found.append(ListedFile(path, _location(scheme, path, bare=bare), size, _modified(detail)))
    return found


def _modified(detail: dict[str, Any]) -> float | None:
    value = detail.get("mtime", detail.get("LastModified", detail.get("last_modified")))
    if isinstance(value, dt.datetime):
        return value.timestamp()
    if isinstance(value, (int, float)):
        return float(value)
    return None


def _scheme_less(location: str) -> str:
    return PyArrowFileIO.parse_location(location)[2]


def _location(scheme: str, path: str, *, bare: bool) -> str:
    """A listed path as a location the table's FileIO opens, in the form the table's location uses."""
    return path if bare else f"{scheme}://{path}"


# --- shared ---------------------------------------------------------------------------------


def _with_retries(table: Table, what: str, attempts: int, attempt: Callable[[Table], R]) -> tuple[R, int]:
    """Run ``attempt`` until it commits without a conflict (see :func:`cascade.merge.commit.with_retries`)."""
    return with_retries(
        table,
        attempts,
        attempt,
        gave_up=lambda: MaintenanceConflictError(
            f"table {_name(table)}: concurrent commits invalidated {what} {attempts} times; "
            "nothing was committed, try again"
        ),
    )


def _commit_or_clean(table: Table, branch: str, commit_id: str, written: list[str], commit: Callable[[], int]) -> int:
    """Commit; on a conflict delete what was written. On an unknown outcome, look for the commit first."""
    try:
        return commit()
    except (CommitFailedException, ValueError):
        _delete_paths(table.io, written)
        raise
    except Exception:
        checked, landed = find_commit(table, branch, commit_id)
        if landed is not None:
            return landed
        if checked:  # it did not land: the files are ours to remove
            _delete_paths(table.io, written)
        raise


def _delete_paths(io: FileIO, paths: Iterable[str]) -> None:
    for path in paths:
        with contextlib.suppress(OSError):  # an orphan file costs space, never correctness
            io.delete(path)


def _name(table: Table) -> str:
    return ".".join(table.name())
