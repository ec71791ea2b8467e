"""The merge engine: an atomic upsert whose cost follows the data it touches, not the table.

``merge_into`` gives the table the semantics of a dict keyed by the unique key:
within a batch the last record wins; a stored key is replaced by the batch's record, unless
all its non-metadata columns are equal (then it is *unchanged* and keeps its stored
``_cascade_ingested_at``); a batch that changes nothing commits nothing.

How cost is kept to the touched data:
1. *partition pruning*: when exact (every partition source column is in the key, or the asset
   declares its partitions stable), only data files in the batch's partitions are considered;
2. *key-range pruning*: a file whose key min/max (from the manifests) cannot hold any batch key
   is skipped without being opened;
3. *key-column probe*: candidate files are opened for their key columns only; a file is read
   whole and rewritten only if it really holds a key the batch changes.
The rewritten files are replaced and the new rows added in one overwrite snapshot, on the
requested branch. A concurrent commit makes pyiceberg's validation fail; the merge is then
planned again against the new snapshot, within ``max_attempts``.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import random
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, cast

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from pyiceberg.conversions import from_bytes
from pyiceberg.exceptions import CommitFailedException, ValidationException
from pyiceberg.io.pyarrow import _dataframe_to_data_files, schema_to_pyarrow
from pyiceberg.manifest import DataFile, ManifestContent, ManifestFile
from pyiceberg.partitioning import PartitionSpec
from pyiceberg.schema import Schema
from pyiceberg.table import Table
from pyiceberg.table.refs import MAIN_BRANCH, SnapshotRefType
from pyiceberg.table.snapshots import Snapshot
from pyiceberg.table.update import AssertRefSnapshotId
from pyiceberg.types import (
    DateType,
    IntegerType,
    LongType,
    PrimitiveType,
    StringType,
    TimestampType,
    TimestamptzType,
)

from cascade.catalog import initialize_main
from cascade.conform import conform, null_safe_equal, reject_null_keys
from cascade.errors import MergeConflictError, SchemaMismatchError
from cascade.faults import crash_point
from cascade.snapshots import commit_overwrite
from cascade.spec import METADATA_COLUMNS
from cascade.telemetry import traced

POSITION = "__cascade_position"
OTHER_POSITION = "__cascade_other_position"
# Files probed at once. Each whole-file read holds its decoded rows, so peak memory grows
# with this (a 1M-row batch: 621 MB at 2, 835 MB at 4, 1.06 GB at 8 threads).
PROBE_THREADS = min(4, os.cpu_count() or 2)
COMMIT_ID = "cascade.commit-id"  # in every snapshot summary: finds a commit whose outcome was unknown
HISTORY_SEARCH_DEPTH = 50  # snapshots back from the head searched for it
CONFLICT_PAUSE = 0.02  # least back-off base, seconds; see _pause_after_conflict
CONFLICT_PAUSE_MAX = 10.0
PRUNABLE_KEY_TYPES = (StringType, IntegerType, LongType, DateType, TimestampType, TimestamptzType)


@dataclass(frozen=True)
class MergeOutcome:
    """What one ``merge_into`` did."""

    rows_in: int
    rows_inserted: int
    rows_updated: int
    rows_unchanged: int
    rows_deduplicated: int
    files_considered: int
    files_read: int
    files_rewritten: int
    files_added: int
    bytes_read: int
    bytes_written: int
    snapshot_id: int | None
    commit_attempts: int
    rows_deleted: int = 0

    @property
    def committed(self) -> bool:
        return self.commit_attempts > 0 and (self.files_added > 0 or self.files_rewritten > 0)

    @classmethod
    def nothing(cls, snapshot_id: int | None = None) -> MergeOutcome:
        """The outcome of a merge that had no rows to merge."""
        return cls(0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, snapshot_id, 0)


@dataclass(frozen=True)
class MergePlan:
    """The files to replace and the rows to write, planned against one snapshot."""

    base_snapshot_id: int | None
    replaced_files: tuple[DataFile, ...]
    rows_to_write: pa.Table
    rows_inserted: int
    rows_updated: int
    rows_unchanged: int
    files_considered: int
    files_read: int
    bytes_read: int
    rows_deleted: int = 0

    @property
    def changes_nothing(self) -> bool:
        return self.rows_inserted == 0 and self.rows_updated == 0 and self.rows_deleted == 0


BeforeCommit = Callable[[MergePlan], None]


@dataclass(frozen=True)
class PartitionReplace:
    """Replace one partition: stored rows whose ``column`` falls on ``day`` and whose key the batch
    lacks are deleted in the merge's snapshot, so the partition holds exactly the batch."""

    column: str
    day: dt.date
    keep: pa.Table | None = None  # keys of the whole batch, when it is merged in chunks

    def bounds(self, data_type: pa.DataType) -> tuple[Any, Any]:
        """The day as ``[low, high)`` in the column's own type (timestamps: UTC for a timestamptz)."""
        if pa.types.is_date(data_type):
            return self.day, self.day + dt.timedelta(days=1)
        start = dt.datetime.combine(self.day, dt.time())
        if getattr(data_type, "tz", None):
            start = start.replace(tzinfo=dt.UTC)
        return start, start + dt.timedelta(days=1)

    def holds(self, values: pa.ChunkedArray | pa.Array) -> npt.NDArray[np.bool_]:
        """Which values fall on the day."""
        low, high = self.bounds(values.type)
        low_scalar, high_scalar = pa.scalar(low, values.type), pa.scalar(high, values.type)
        inside = pc.and_(pc.greater_equal(values, low_scalar), pc.less(values, high_scalar))
        return np.asarray(pc.fill_null(inside, False).to_numpy(zero_copy_only=False), dtype=bool)


@dataclass
class _ReadCounter:
    """Files opened and bytes read while planning; safe to share between probe threads."""

    files: int = 0
    bytes: int = 0
    opened: set[str] = field(default_factory=set)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, path: str, nbytes: int) -> None:
        with self.lock:
            self.opened.add(path)
            self.files = len(self.opened)
            self.bytes += nbytes


def merge_into(
    table: Table,
    batch: pa.Table | pa.RecordBatchReader | Iterable[pa.Table],
    unique_key: str | Sequence[str],
    *,
    branch: str = MAIN_BRANCH,
    snapshot_properties: Mapping[str, str] | None = None,
    stable_partitions: bool = False,
    max_attempts: int = 20,
    before_commit: BeforeCommit | None = None,
    chunk_rows: int | None = None,
    replace: PartitionReplace | None = None,
    last_check: Callable[[], None] | None = None,
) -> MergeOutcome:
    """Upsert ``batch`` into ``table`` on ``unique_key`` in one atomic snapshot on ``branch``.

    With ``replace``, the rows of that partition whose keys the batch lacks are deleted in the
    same snapshot (an empty batch empties the partition).

    ``stable_partitions`` declares that a key's partition columns never change, so pruning to
    the batch's partitions is exact even when the partition source is not part of the key.
    ``before_commit`` is called with the plan just before committing; raising there aborts
    the merge with nothing committed. ``last_check`` is called immediately before the commit
    request, after the data files are written (the runner checks its deadline there); raising
    there removes the written files and aborts with nothing committed.

    ``chunk_rows`` bounds memory for batches larger than memory (and an iterable of tables is
    merged as those chunks): see :func:`merge_in_chunks`.
    """
    keys = (unique_key,) if isinstance(unique_key, str) else tuple(unique_key)
    if chunk_rows is not None:
        return merge_in_chunks(
            table,
            batch,
            keys,
            chunk_rows=chunk_rows,
            branch=branch,
            snapshot_properties=snapshot_properties,
            stable_partitions=stable_partitions,
            max_attempts=max_attempts,
            before_commit=before_commit,
            replace=replace,
            last_check=last_check,
        )
    if isinstance(batch, pa.RecordBatchReader):
        batch = batch.read_all()
    if not isinstance(batch, pa.Table):
        raise TypeError("an iterable of tables is merged in chunks: pass chunk_rows")
    schema = table.schema()
    missing = [k for k in keys if k not in schema.column_names]
    if missing:
        raise SchemaMismatchError(f"table {table.name()}: unique key column(s) {missing} not in the table schema")
    rows = prepare_batch(batch, schema, keys)
    deduplicated = batch.num_rows - rows.num_rows
    properties = {**(snapshot_properties or {}), COMMIT_ID: uuid.uuid4().hex}
    attempt_seconds = 0.0
    for attempt in range(1, max_attempts + 1):
        if attempt > 1:
            _pause_after_conflict(attempt, attempt_seconds)
            table = table.refresh()
        started = time.monotonic()
        planned_at = _last_sequence_number(table)
        plan = plan_merge(table, rows, keys, branch=branch, stable_partitions=stable_partitions, replace=replace)
        if plan.changes_nothing:
            head = table.snapshot_by_name(branch) or table.snapshot_by_name(MAIN_BRANCH)
            return _outcome(plan, batch.num_rows, deduplicated, [], head.snapshot_id if head else None, attempt - 1)
        if before_commit is not None:
            before_commit(plan)
        written = write_files(table, plan.rows_to_write)
        crash_point("before-commit")
        if last_check is not None:
            try:
                last_check()
            except BaseException:
                _delete_files(table, written)
                raise
        try:
            with traced("commit", attempt=attempt, table=".".join(table.name()), branch=branch) as span:
                snapshot_id = commit_plan(table, plan, written, branch=branch, properties=properties)
                span.set_attributes({"cascade.snapshot_id": snapshot_id, "cascade.files_added": len(written)})
        except (CommitFailedException, ValidationException):
            _delete_files(table, written)
            attempt_seconds = time.monotonic() - started
            continue
        except ValueError:
            _delete_files(table, written)
            attempt_seconds = time.monotonic() - started
            # pyiceberg applies a snapshot planned on stale metadata after a commit on another
            # branch and fails with ValueError ("sequence number ... older than last sequence
            # number") instead of CommitFailedException: a conflict exactly when the table moved.
            if _last_sequence_number(table.refresh()) != planned_at:
                continue
            raise
        except Exception as error:
            # The catalog may have applied the commit before failing to say so (a timeout, a
            # lost connection, a 5xx): look for this merge's commit id before anything else.
            checked, landed = _find_commit(table, branch, properties[COMMIT_ID])
            if landed is None:
                if checked:  # it did not land: its files are ours to remove
                    _delete_files(table, written)
                if commit_outcome_unknown(error) and attempt < max_attempts:
                    continue
                raise
            snapshot_id = landed
        crash_point("after-commit")
        expire_on_commit(table)
        return _outcome(plan, batch.num_rows, deduplicated, written, snapshot_id, attempt)
    raise MergeConflictError(
        f"table {'.'.join(table.name())}, branch {branch!r}: concurrent commits invalidated the merge "
        f"{max_attempts} times; try again"
    )


def expire_on_commit(table: Table) -> None:
    """A merge's own upkeep: see :func:`cascade.maintenance.expire_on_commit`."""
    from cascade.maintenance import expire_on_commit as expire  # maintenance builds on this module

    expire(table)


def commit_outcome_unknown(error: BaseException) -> bool:
    """Errors after which the commit may or may not have happened, and trying again may succeed."""
    names = {cls.__name__ for cls in type(error).__mro__}
    return bool(names & {"CommitStateUnknownException", "ServerError", "OperationalError", "OSError", "TimeoutError"})


def _find_commit(table: Table, branch: str, commit_id: str) -> tuple[bool, int | None]:
    """Whether the history could be read, and the snapshot on ``branch`` carrying ``commit_id``.

    ``(False, None)``: the catalog cannot be read either, so the commit may have landed and its
    data files must stay (an orphan costs space; deleting a committed file loses data).
    """
    try:
        table = table.refresh()
    except Exception:
        return False, None
    snapshot = table.snapshot_by_name(branch)
    for _ in range(HISTORY_SEARCH_DEPTH):
        if snapshot is None:
            break
        if snapshot.summary is not None and snapshot.summary.get(COMMIT_ID) == commit_id:
            return True, snapshot.snapshot_id
        snapshot = table.snapshot_by_id(snapshot.parent_snapshot_id) if snapshot.parent_snapshot_id else None
    return True, None


def _pause_after_conflict(attempt: int, attempt_seconds: float) -> None:
    """Back off after losing a commit race: random, growing, scaled to how long an attempt takes.

    A writer that lost waits on average about one attempt's length (doubling with each loss),
    so the writers that collided spread out instead of re-planning in lock-step.
    """
    base = max(CONFLICT_PAUSE, attempt_seconds)
    time.sleep(random.uniform(0, min(CONFLICT_PAUSE_MAX, base * 2 ** (attempt - 2))))


def merge_in_chunks(
    table: Table,
    batch: pa.Table | pa.RecordBatchReader | Iterable[pa.Table],
    keys: tuple[str, ...],
    *,
    chunk_rows: int,
    branch: str = MAIN_BRANCH,
    snapshot_properties: Mapping[str, str] | None = None,
    stable_partitions: bool = False,
    max_attempts: int = 20,
    before_commit: BeforeCommit | None = None,
    replace: PartitionReplace | None = None,
    last_check: Callable[[], None] | None = None,
) -> MergeOutcome:
    """Merge a batch of any size holding at most ``chunk_rows`` batch rows in memory at once.

    Chunks are merged in order onto a private staging branch forked from ``branch``'s head, so
    the dict semantics hold across chunks (a later chunk's record wins). Then ``branch`` is moved
    to the staging head in one ref update that asserts ``branch`` has not moved since the fork:
    readers of ``branch`` see all of the batch or none of it. If it moved, the staging branch is
    dropped and :class:`MergeConflictError` is raised; a stream cannot be replayed, so the caller
    retries the run. Counts are summed over chunks, so a key inserted by one chunk and changed by
    a later one counts once as inserted and once as updated; likewise a key that changes in one
    chunk and changes back in a later one ends with its stored values but this run's
    ``_cascade_ingested_at`` (remembering every key's starting row would defeat bounded memory).

    ``batch`` may also be an iterable of tables, merged one by one as given (the caller bounds
    their size). A ``replace`` must carry the whole batch's keys (``keep``): the first chunk
    deletes the partition's rows that none of the chunks holds.
    """
    if chunk_rows < 1:
        raise ValueError(f"chunk_rows must be at least 1, got {chunk_rows}")
    if replace is not None and replace.keep is None:
        raise ValueError("a partition replace merged in chunks needs the whole batch's keys (PartitionReplace.keep)")
    if isinstance(batch, pa.Table | pa.RecordBatchReader):
        reader = batch if isinstance(batch, pa.RecordBatchReader) else batch.to_reader(max_chunksize=chunk_rows)
        chunks: Iterable[pa.Table] = _chunks(reader, chunk_rows)
    else:
        chunks = batch
    table = initialize_main(table.refresh())
    start_ref = table.metadata.refs.get(branch)
    head = table.snapshot_by_name(branch) or table.snapshot_by_name(MAIN_BRANCH)
    assert head is not None
    staging = f"cascade-merge-{uuid.uuid4().hex[:12]}"
    table.manage_snapshots().create_branch(head.snapshot_id, staging).commit()
    outcomes: list[MergeOutcome] = []
    try:
        for chunk in chunks:
            outcomes.append(
                merge_into(
                    table,
                    chunk,
                    keys,
                    branch=staging,
                    snapshot_properties=snapshot_properties,
                    stable_partitions=stable_partitions,
                    max_attempts=max_attempts,
                    before_commit=before_commit,
                    replace=None if outcomes else replace,
                    last_check=last_check,
                )
            )
        table = table.refresh()
        staged_head = table.snapshot_by_name(staging)
        assert staged_head is not None
        if staged_head.snapshot_id != head.snapshot_id:
            if last_check is not None:
                last_check()  # the publish is the commit readers see
            _publish(table, branch, staged_head.snapshot_id, expected=start_ref.snapshot_id if start_ref else None)
    except CommitFailedException:
        raise MergeConflictError(
            f"table {'.'.join(table.name())}, branch {branch!r} moved while a chunked merge was staged; try again"
        ) from None
    finally:
        with contextlib.suppress(Exception):  # never mask the merge's own outcome or error
            table.refresh().manage_snapshots().remove_branch(staging).commit()
    return _sum_outcomes(outcomes, table.refresh().snapshot_by_name(branch))


def _chunks(reader: pa.RecordBatchReader, chunk_rows: int) -> Iterable[pa.Table]:
    pending: list[pa.RecordBatch] = []
    size = 0
    for record_batch in reader:
        while record_batch.num_rows:
            take = record_batch.slice(0, chunk_rows - size)
            pending.append(take)
            size += take.num_rows
            record_batch = record_batch.slice(take.num_rows)
            if size == chunk_rows:
                yield pa.Table.from_batches(pending)
                pending, size = [], 0
    if pending:
        yield pa.Table.from_batches(pending)


def _publish(table: Table, branch: str, snapshot_id: int, *, expected: int | None) -> None:
    """Point ``branch`` at ``snapshot_id`` in one commit that fails if ``branch`` left ``expected``.

    pyiceberg has no public call to move a non-main branch with a guard, hence its transaction
    internals here; ``expected=None`` asserts the branch does not exist yet.
    """
    transaction = table.transaction()
    update, _ = transaction._set_ref_snapshot(snapshot_id=snapshot_id, ref_name=branch, type=SnapshotRefType.BRANCH)
    transaction._stage(update, (AssertRefSnapshotId(snapshot_id=expected, ref=branch),))  # type: ignore[call-arg]
    transaction.commit_transaction()


def _last_sequence_number(table: Table) -> int:
    return int(getattr(table.metadata, "last_sequence_number", 0))  # format v1 has none


def _sum_outcomes(outcomes: list[MergeOutcome], head: Snapshot | None) -> MergeOutcome:
    def total(name: str) -> int:
        return sum(getattr(o, name) for o in outcomes)

    return MergeOutcome(
        rows_in=total("rows_in"),
        rows_inserted=total("rows_inserted"),
        rows_updated=total("rows_updated"),
        rows_unchanged=total("rows_unchanged"),
        rows_deduplicated=total("rows_deduplicated"),
        files_considered=total("files_considered"),
        files_read=total("files_read"),
        files_rewritten=total("files_rewritten"),
        files_added=total("files_added"),
        bytes_read=total("bytes_read"),
        bytes_written=total("bytes_written"),
        snapshot_id=head.snapshot_id if head else None,
        commit_attempts=total("commit_attempts"),
        rows_deleted=total("rows_deleted"),
    )


def _outcome(
    plan: MergePlan, rows_in: int, deduplicated: int, written: list[DataFile], snapshot_id: int | None, attempts: int
) -> MergeOutcome:
    return MergeOutcome(
        rows_in=rows_in,
        rows_inserted=plan.rows_inserted,
        rows_updated=plan.rows_updated,
        rows_unchanged=plan.rows_unchanged,
        rows_deduplicated=deduplicated,
        files_considered=plan.files_considered,
        files_read=plan.files_read,
        files_rewritten=len(plan.replaced_files) if written else 0,
        files_added=len(written),
        bytes_read=plan.bytes_read,
        bytes_written=sum(f.file_size_in_bytes for f in written),
        snapshot_id=snapshot_id,
        commit_attempts=attempts,
        rows_deleted=plan.rows_deleted,
    )


def prepare_batch(batch: pa.Table, schema: Schema, keys: tuple[str, ...]) -> pa.Table:
    """Conform to the table schema, refuse null keys, and keep the last record of each key."""
    rows = conform(batch, schema)
    reject_null_keys(rows, keys)
    return keep_last_per_key(rows, keys)


def keep_last_per_key(rows: pa.Table, keys: tuple[str, ...]) -> pa.Table:
    """Drop all but the last row of each key, keeping the survivors in batch order."""
    if rows.num_rows == 0 or _distinct_count(rows, keys) == rows.num_rows:
        return rows
    last = _numbered(rows, keys).group_by(list(keys), use_threads=False).aggregate([(POSITION, "max")])
    return rows.take(_sorted(last.column(f"{POSITION}_max")))


def _sorted(values: pa.Array | pa.ChunkedArray) -> pa.Array | pa.ChunkedArray:
    return pc.take(values, pc.sort_indices(values))


def _distinct_count(rows: pa.Table, keys: Sequence[str]) -> int:
    if len(keys) == 1:
        return int(pc.count_distinct(rows.column(keys[0])).as_py())
    return int(rows.select(list(keys)).group_by(list(keys), use_threads=False).aggregate([]).num_rows)


def _numbered(rows: pa.Table, keys: Sequence[str]) -> pa.Table:
    """The key columns and each row's position."""
    return rows.select(list(keys)).append_column(POSITION, pa.array(np.arange(rows.num_rows, dtype=np.int64)))


def batch_positions(stored_keys: pa.Table, batch_keys: pa.Table, keys: Sequence[str]) -> npt.NDArray[np.int64]:
    """For each stored row, the position of the batch row with its key, or -1.

    ``batch_keys`` holds each key once. One hash lookup serves membership, pairing and counting.
    """
    if stored_keys.num_rows == 0 or batch_keys.num_rows == 0:
        return np.full(stored_keys.num_rows, -1, dtype=np.int64)
    if len(keys) == 1:
        found = pc.index_in(stored_keys.column(keys[0]), value_set=batch_keys.column(keys[0]))
        return np.asarray(found.fill_null(-1).to_numpy(), dtype=np.int64)
    pairs = _numbered(stored_keys, keys).join(
        _numbered(batch_keys, keys).rename_columns([*keys, OTHER_POSITION]),
        keys=list(keys),
        join_type="inner",
        use_threads=False,
    )
    positions = np.full(stored_keys.num_rows, -1, dtype=np.int64)
    positions[pairs.column(POSITION).to_numpy()] = pairs.column(OTHER_POSITION).to_numpy()
    return positions


@dataclass(frozen=True)
class _StoredFile:
    """A data file holding batch keys, and each of its rows' batch position (-1: not in the batch)."""

    data_file: DataFile
    rows: pa.Table
    positions: npt.NDArray[np.int64]
    stale: npt.NDArray[np.bool_]  # rows of a replaced partition that the batch lacks


def plan_merge(
    table: Table,
    rows: pa.Table,
    keys: tuple[str, ...],
    *,
    branch: str = MAIN_BRANCH,
    stable_partitions: bool = False,
    replace: PartitionReplace | None = None,
) -> MergePlan:
    """Plan a merge of prepared ``rows`` against the branch's current snapshot; reads, never writes."""
    head = table.snapshot_by_name(branch) or table.snapshot_by_name(MAIN_BRANCH)
    if head is None or (rows.num_rows == 0 and replace is None):
        return MergePlan(
            base_snapshot_id=head.snapshot_id if head else None,
            replaced_files=(),
            rows_to_write=rows,
            rows_inserted=rows.num_rows,
            rows_updated=0,
            rows_unchanged=0,
            files_considered=0,
            files_read=0,
            bytes_read=0,
        )
    counter = _ReadCounter()
    candidates = candidate_files(table, head, rows, keys, stable_partitions=stable_partitions, replace=replace)
    stored = stored_files_with_keys(table, candidates, rows.select(list(keys)), keys, counter, replace)
    changed, stored_count = classify_batch(stored, rows, keys)
    replaced: list[DataFile] = []
    kept: list[pa.Table] = []
    for item in stored:
        removed = item.positions >= 0
        removed[removed] = changed[item.positions[removed]]
        removed |= item.stale
        if not removed.any():
            continue  # every batch key in this file is unchanged: leave the file alone
        replaced.append(item.data_file)
        kept.append(item.rows.filter(pa.array(~removed)))
    unchanged = (stored_count > 0) & ~changed
    new_rows = rows.filter(pa.array(~unchanged)) if unchanged.any() else rows
    return MergePlan(
        base_snapshot_id=head.snapshot_id,
        replaced_files=tuple(replaced),
        rows_to_write=pa.concat_tables([*kept, new_rows]) if kept else new_rows,
        rows_inserted=int((stored_count == 0).sum()),
        rows_updated=int(changed.sum()),
        rows_unchanged=int(unchanged.sum()),
        files_considered=len(candidates),
        files_read=counter.files,
        bytes_read=counter.bytes,
        rows_deleted=int(sum(int(item.stale.sum()) for item in stored)),
    )


def stored_files_with_keys(
    table: Table,
    candidates: list[DataFile],
    batch_keys: pa.Table,
    keys: tuple[str, ...],
    counter: _ReadCounter,
    replace: PartitionReplace | None = None,
) -> list[_StoredFile]:
    """Probe candidates on their key columns (in parallel); read whole only those holding batch keys.

    With ``replace``, the partition column is probed too, and a file holding rows of the partition
    that the batch lacks is read whole as well: those rows are *stale*, to be deleted.
    """
    probed = list(dict.fromkeys([*keys, *([replace.column] if replace else [])]))

    def probe(data_file: DataFile) -> _StoredFile | None:
        file_keys, nbytes = _read_columns(table, data_file, probed)
        counter.add(data_file.file_path, nbytes)
        positions = batch_positions(file_keys.select(list(keys)).cast(batch_keys.schema), batch_keys, keys)
        stale = np.zeros(len(positions), dtype=bool)
        if replace is not None:
            stale = replace.holds(file_keys.column(replace.column)) & (positions < 0)
            if replace.keep is not None and stale.any():
                keep = replace.keep.select(list(keys))
                stale &= batch_positions(file_keys.select(list(keys)).cast(keep.schema), keep, keys) < 0
        if not (positions >= 0).any() and not stale.any():
            return None
        file_rows, nbytes = _read_columns(table, data_file, None)
        counter.add(data_file.file_path, nbytes)
        return _StoredFile(
            data_file, conform(file_rows, table.schema(), where=f"data file {data_file.file_path}"), positions, stale
        )

    with ThreadPoolExecutor(max_workers=PROBE_THREADS) as pool:  # pyarrow reads release the GIL
        return [found for found in pool.map(probe, candidates) if found is not None]


def classify_batch(
    stored: list[_StoredFile], rows: pa.Table, keys: tuple[str, ...]
) -> tuple[npt.NDArray[np.bool_], npt.NDArray[np.int64]]:
    """Per batch row: whether its stored version changes, and how many stored rows carry its key.

    A key stored more than once (which Cascade never writes, but another writer might have)
    counts as changed, so the merge heals it to one row.
    """
    changed = np.zeros(rows.num_rows, dtype=bool)
    count = np.zeros(rows.num_rows, dtype=np.int64)
    for item in stored:
        matched = item.positions >= 0
        positions = item.positions[matched]
        np.add.at(count, positions, 1)
        left = item.rows.filter(pa.array(matched))
        right = rows.take(pa.array(positions))
        equal = np.ones(len(positions), dtype=bool)
        for name in rows.column_names:
            if name not in METADATA_COLUMNS and name not in keys:
                equal &= np.asarray(null_safe_equal(left.column(name), right.column(name)).to_numpy(), dtype=bool)
        changed[positions[~equal]] = True
    changed |= count > 1
    return changed & (count > 0), count


def exact_partition_pruning(table: Table, keys: tuple[str, ...], stable_partitions: bool) -> bool:
    """Pruning to the batch's partitions is exact when no key can have moved partition."""
    spec = table.spec()
    if spec.is_unpartitioned():
        return False
    if stable_partitions:
        return True
    schema = table.schema()
    return all(schema.find_column_name(f.source_id) in keys for f in spec.fields)


def batch_partitions(table: Table, rows: pa.Table) -> set[tuple[Any, ...]]:
    """The partition tuples (current spec) the batch's rows fall in."""
    spec, schema = table.spec(), table.schema()
    columns = []
    for partition_field in spec.fields:
        source = schema.find_field(partition_field.source_id)
        transform = partition_field.transform.pyarrow_transform(source.field_type)
        columns.append(_as_stored(transform(rows.column(source.name))).to_pylist())
    return set(zip(*columns, strict=True))


def _as_stored(column: pa.Array | pa.ChunkedArray) -> pa.Array | pa.ChunkedArray:
    """Partition values as Iceberg stores them: dates as days, times and timestamps as microseconds."""
    if pa.types.is_date(column.type):
        return column.cast(pa.date32()).cast(pa.int32())
    if pa.types.is_timestamp(column.type):
        return column.cast(pa.timestamp("us", tz=column.type.tz)).cast(pa.int64())
    if pa.types.is_time(column.type):
        return column.cast(pa.time64("us")).cast(pa.int64())
    return column


def candidate_files(
    table: Table,
    head: Snapshot,
    rows: pa.Table,
    keys: tuple[str, ...],
    *,
    stable_partitions: bool,
    replace: PartitionReplace | None = None,
) -> list[DataFile]:
    """Data files of ``head`` that may hold a batch key, by partition and key-range statistics.

    Reads the manifests directly: a manifest whose partition summaries cannot hold a batch
    partition is skipped unread; within the rest, entries are filtered by partition and key range.
    """
    schema, spec = table.schema(), table.spec()
    prune = replace is None and exact_partition_pruning(table, keys, stable_partitions)
    partitions = batch_partitions(table, rows) if prune else None
    ranges = [_sorted_key_values(schema, rows, key) for key in keys]
    day = _day_range(schema, replace) if replace is not None else None
    manifests = head.manifests(table.io)
    if any(m.content == ManifestContent.DELETES and (m.added_files_count or m.existing_files_count) for m in manifests):
        raise SchemaMismatchError(
            f"table {'.'.join(table.name())} has delete files (merge-on-read); Cascade merges copy-on-write only"
        )
    summary_check = _PartitionSummaryCheck(spec, schema, partitions) if partitions is not None else None

    def entries(manifest: ManifestFile) -> list[DataFile]:
        if manifest.content != ManifestContent.DATA:
            return []
        current_spec = manifest.partition_spec_id == spec.spec_id
        if summary_check is not None and current_spec and not summary_check.may_hold(manifest):
            return []
        found = []
        for entry in manifest.fetch_manifest_entry(table.io, discard_deleted=True):
            data_file = entry.data_file
            if partitions is not None and current_spec and tuple(data_file.partition) not in partitions:  # type: ignore[arg-type]
                continue
            if all(_range_may_hold(data_file, key_range) for key_range in ranges) or (
                day is not None and _range_may_hold(data_file, day)
            ):
                found.append(data_file)
        return found

    with ThreadPoolExecutor(max_workers=PROBE_THREADS) as pool:
        return [data_file for found in pool.map(entries, manifests) for data_file in found]


class _PartitionSummaryCheck:
    """Whether a manifest's per-field partition bounds can hold any of the batch's partitions."""

    def __init__(self, spec: PartitionSpec, schema: Schema, partitions: set[tuple[Any, ...]]) -> None:
        self.types = [cast(PrimitiveType, field.field_type) for field in spec.partition_type(schema).fields]
        self.values = [
            np.sort(np.array([p[i] for p in partitions if p[i] is not None], dtype=object))
            for i in range(len(self.types))
        ]
        self.has_null = [any(p[i] is None for p in partitions) for i in range(len(self.types))]

    def may_hold(self, manifest: ManifestFile) -> bool:
        for summary, field_type, values, has_null in zip(
            manifest.partitions or [], self.types, self.values, self.has_null, strict=False
        ):
            if has_null and summary.contains_null:
                continue
            if summary.lower_bound is None or summary.upper_bound is None:
                if not has_null:
                    return False
                continue
            low, high = from_bytes(field_type, summary.lower_bound), from_bytes(field_type, summary.upper_bound)
            index = int(np.searchsorted(values, low, side="left"))
            if not (index < len(values) and values[index] <= high):
                return False
        return True


@dataclass(frozen=True)
class _KeyRange:
    field_id: int
    iceberg_type: PrimitiveType
    values: npt.NDArray[Any] | None  # sorted distinct batch values; None when the type is not prunable
    interval: npt.NDArray[Any] | None = None  # [first, last] of a closed interval of values, instead


def _sorted_key_values(schema: Schema, rows: pa.Table, key: str) -> _KeyRange:
    """The key column's sorted distinct values in the form Iceberg bounds decode to, if prunable."""
    iceberg_field = schema.find_field(key)
    iceberg_type = iceberg_field.field_type
    if not isinstance(iceberg_type, PRUNABLE_KEY_TYPES):
        return _KeyRange(iceberg_field.field_id, StringType(), None)
    column = pc.unique(rows.column(key))
    if isinstance(iceberg_type, (TimestampType, TimestamptzType)):
        column = column.cast(pa.timestamp("us", tz=column.type.tz)).cast(pa.int64())
    elif isinstance(iceberg_type, DateType):
        column = column.cast(pa.int32())
    return _KeyRange(iceberg_field.field_id, iceberg_type, _sorted(column).to_numpy(zero_copy_only=False))


def _day_range(schema: Schema, replace: PartitionReplace) -> _KeyRange:
    """The replaced day as a key range over its column: a file whose bounds miss it holds none of it."""
    iceberg_field = schema.find_field(replace.column)
    arrow_type = schema_to_pyarrow(iceberg_field.field_type)
    low, high = replace.bounds(arrow_type)
    edges = pa.array([low, high - dt.timedelta(microseconds=1) if isinstance(high, dt.datetime) else low], arrow_type)
    if pa.types.is_timestamp(arrow_type):
        edges = edges.cast(pa.timestamp("us", tz=arrow_type.tz)).cast(pa.int64())
    else:
        edges = edges.cast(pa.int32())
    return _KeyRange(iceberg_field.field_id, cast(PrimitiveType, iceberg_field.field_type), None, edges.to_numpy())


def _range_may_hold(data_file: DataFile, key_range: _KeyRange) -> bool:
    """Whether any batch key lies within the file's [lower, upper] bound for the key column.

    Truncated string bounds stay correct: a truncated lower bound is a prefix (never greater),
    and pyiceberg rounds a truncated upper bound up.
    """
    values = key_range.values
    if values is None and key_range.interval is None:
        return True
    lower = (data_file.lower_bounds or {}).get(key_range.field_id)
    upper = (data_file.upper_bounds or {}).get(key_range.field_id)
    if lower is None or upper is None:
        return True
    low, high = from_bytes(key_range.iceberg_type, lower), from_bytes(key_range.iceberg_type, upper)
    if key_range.interval is not None:
        return bool(key_range.interval[0] <= high and low <= key_range.interval[1])
    assert values is not None
    index = int(np.searchsorted(values, low, side="left"))
    return index < len(values) and values[index] <= high


def _read_columns(table: Table, data_file: DataFile, columns: list[str] | None) -> tuple[pa.Table, int]:
    """Read some (or all) columns of a data file; returns the rows and the bytes of the chunks read."""
    with table.io.new_input(data_file.file_path).open() as stream:
        parquet = pq.ParquetFile(stream)
        rows = parquet.read(columns=columns, use_threads=False)
        if columns is None:
            return rows, data_file.file_size_in_bytes
        names = parquet.schema_arrow.names
        metadata = parquet.metadata
        nbytes = sum(
            metadata.row_group(g).column(names.index(c)).total_compressed_size
            for g in range(metadata.num_row_groups)
            for c in columns
        )
        return rows, nbytes


def write_files(table: Table, rows: pa.Table) -> list[DataFile]:
    """Write ``rows`` as new data files of ``table`` (partitioned by its spec); commits nothing."""
    if rows.num_rows == 0:
        return []
    return list(_dataframe_to_data_files(table_metadata=table.metadata, df=rows, io=table.io, write_uuid=uuid.uuid4()))


def commit_plan(
    table: Table, plan: MergePlan, written: Iterable[DataFile], *, branch: str, properties: Mapping[str, str]
) -> int:
    """Replace the plan's files with ``written`` in one snapshot on ``branch``; returns its id.

    Exactly one attempt, asserting the branch head is the one the plan read (see
    :func:`cascade.snapshots.commit_overwrite`); Cascade re-plans against a new head instead.
    The snapshot keeps its manifest count bounded by merging small manifests.
    """
    return commit_overwrite(
        table, branch=branch, deleted=plan.replaced_files, added=written, snapshot_properties=properties
    )


def _delete_files(table: Table, files: Iterable[DataFile]) -> None:
    for data_file in files:
        with contextlib.suppress(OSError):  # an orphan file costs space, never correctness
            table.io.delete(data_file.file_path)
