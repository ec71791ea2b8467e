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

import bisect
import contextlib
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from pyiceberg.conversions import from_bytes
from pyiceberg.exceptions import CommitFailedException, ValidationException
from pyiceberg.io.pyarrow import _dataframe_to_data_files
from pyiceberg.manifest import DataFile
from pyiceberg.schema import Schema
from pyiceberg.table import Table
from pyiceberg.table.refs import MAIN_BRANCH
from pyiceberg.table.snapshots import Snapshot
from pyiceberg.types import (
    DateType,
    IntegerType,
    LongType,
    PrimitiveType,
    StringType,
    TimestampType,
    TimestamptzType,
)

from cascade.conform import conform, null_safe_equal, reject_null_keys
from cascade.errors import MergeConflictError, SchemaMismatchError
from cascade.spec import METADATA_COLUMNS

POSITION = "__cascade_position"
OTHER_POSITION = "__cascade_other_position"
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

    @property
    def committed(self) -> bool:
        return self.commit_attempts > 0 and (self.files_added > 0 or self.files_rewritten > 0)


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

    @property
    def changes_nothing(self) -> bool:
        return self.rows_inserted == 0 and self.rows_updated == 0


BeforeCommit = Callable[[MergePlan], None]


@dataclass
class _ReadCounter:
    files: int = 0
    bytes: int = 0
    opened: set[str] = field(default_factory=set)

    def add(self, path: str, nbytes: int) -> None:
        self.opened.add(path)
        self.files = len(self.opened)
        self.bytes += nbytes


def merge_into(
    table: Table,
    batch: pa.Table | pa.RecordBatchReader,
    unique_key: str | Sequence[str],
    *,
    branch: str = MAIN_BRANCH,
    snapshot_properties: Mapping[str, str] | None = None,
    stable_partitions: bool = False,
    max_attempts: int = 10,
    before_commit: BeforeCommit | None = None,
) -> MergeOutcome:
    """Upsert ``batch`` into ``table`` on ``unique_key`` in one atomic snapshot on ``branch``.

    ``stable_partitions`` declares that a key's partition columns never change, so pruning to
    the batch's partitions is exact even when the partition source is not part of the key.
    ``before_commit`` is called with the plan just before committing; raising there aborts
    the merge with nothing committed.
    """
    keys = (unique_key,) if isinstance(unique_key, str) else tuple(unique_key)
    if isinstance(batch, pa.RecordBatchReader):
        batch = batch.read_all()
    schema = table.schema()
    missing = [k for k in keys if k not in schema.column_names]
    if missing:
        raise SchemaMismatchError(f"table {table.name()}: unique key column(s) {missing} not in the table schema")
    rows = prepare_batch(batch, schema, keys)
    deduplicated = batch.num_rows - rows.num_rows
    for attempt in range(1, max_attempts + 1):
        if attempt > 1:
            table = table.refresh()
        plan = plan_merge(table, rows, keys, branch=branch, stable_partitions=stable_partitions)
        if plan.changes_nothing:
            head = table.snapshot_by_name(branch) or table.snapshot_by_name(MAIN_BRANCH)
            return _outcome(plan, batch.num_rows, deduplicated, [], head.snapshot_id if head else None, attempt - 1)
        if before_commit is not None:
            before_commit(plan)
        written = write_files(table, plan.rows_to_write)
        try:
            snapshot_id = commit_plan(table, plan, written, branch=branch, properties=snapshot_properties or {})
        except (CommitFailedException, ValidationException):
            _delete_files(table, written)
            continue
        except BaseException:
            _delete_files(table, written)
            raise
        return _outcome(plan, batch.num_rows, deduplicated, written, snapshot_id, attempt)
    raise MergeConflictError(
        f"table {'.'.join(table.name())}, branch {branch!r}: concurrent commits invalidated the merge "
        f"{max_attempts} times; try again"
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
    numbered = _positions(rows, keys)
    last = numbered.group_by(list(keys), use_threads=False).aggregate([(POSITION, "max")])
    positions = pc.sort_indices(last.column(f"{POSITION}_max"))
    return rows.take(pc.take(last.column(f"{POSITION}_max"), positions))


def _distinct_count(rows: pa.Table, keys: Sequence[str]) -> int:
    if len(keys) == 1:
        return int(pc.count_distinct(rows.column(keys[0])).as_py())
    return rows.select(list(keys)).group_by(list(keys), use_threads=False).aggregate([]).num_rows


def _positions(rows: pa.Table, keys: Sequence[str]) -> pa.Table:
    return rows.select(list(keys)).append_column(POSITION, pa.array(np.arange(rows.num_rows, dtype=np.int64)))


def rows_with_keys(rows: pa.Table, key_rows: pa.Table, keys: Sequence[str], *, keep: bool) -> pa.Table:
    """The rows of ``rows`` whose key is (``keep=True``) or is not in ``key_rows``, in order."""
    if rows.num_rows == 0 or key_rows.num_rows == 0:
        return rows if not keep else rows.slice(0, 0)
    if len(keys) == 1:  # a hash-set lookup is several times cheaper than a join
        member = pc.is_in(rows.column(keys[0]), value_set=pc.unique(key_rows.column(keys[0])))
        return rows.filter(member if keep else pc.invert(member))
    joined = _positions(rows, keys).join(
        key_rows.select(list(keys)), keys=list(keys), join_type="left semi" if keep else "left anti", use_threads=False
    )
    positions = joined.column(POSITION)
    return rows.take(pc.take(positions, pc.sort_indices(positions)))


def plan_merge(
    table: Table,
    rows: pa.Table,
    keys: tuple[str, ...],
    *,
    branch: str = MAIN_BRANCH,
    stable_partitions: bool = False,
) -> MergePlan:
    """Plan a merge of prepared ``rows`` against the branch's current snapshot; reads, never writes."""
    head = table.snapshot_by_name(branch) or table.snapshot_by_name(MAIN_BRANCH)
    if head is None or rows.num_rows == 0:
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
    candidates = candidate_files(table, head, rows, keys, stable_partitions=stable_partitions)
    batch_keys = rows.select(list(keys))
    hit_files = [f for f in candidates if _holds_any_key(table, f, batch_keys, keys, counter)]
    stored = [_read_file(table, f, counter) for f in hit_files]
    stored_matched = [rows_with_keys(s, batch_keys, keys, keep=True) for s in stored]
    unchanged_keys, changed_keys, stored_key_count = compare_stored(stored_matched, rows, keys)
    replaced: list[DataFile] = []
    kept: list[pa.Table] = []
    for data_file, file_rows, matched in zip(hit_files, stored, stored_matched, strict=True):
        if rows_with_keys(matched, changed_keys, keys, keep=True).num_rows == 0:
            continue  # every batch key in this file is unchanged: leave the file alone
        replaced.append(data_file)
        kept.append(rows_with_keys(file_rows, changed_keys, keys, keep=False))
    new_rows = rows_with_keys(rows, unchanged_keys, keys, keep=False)
    to_write = pa.concat_tables([*kept, new_rows]) if kept else new_rows
    return MergePlan(
        base_snapshot_id=head.snapshot_id,
        replaced_files=tuple(replaced),
        rows_to_write=to_write,
        rows_inserted=rows.num_rows - stored_key_count,
        rows_updated=changed_keys.num_rows,
        rows_unchanged=unchanged_keys.num_rows,
        files_considered=len(candidates),
        files_read=counter.files,
        bytes_read=counter.bytes,
    )


def compare_stored(
    stored_matched: list[pa.Table], rows: pa.Table, keys: tuple[str, ...]
) -> tuple[pa.Table, pa.Table, int]:
    """Split the batch keys found in the table into unchanged and changed ones.

    Returns ``(unchanged_keys, changed_keys, number_of_stored_keys)``. A key stored more than once
    (which Cascade never writes, but another writer might have) counts as changed, so the merge
    heals it to one row.
    """
    empty = rows.select(list(keys)).slice(0, 0)
    matched = [m for m in stored_matched if m.num_rows]
    if not matched:
        return empty, empty, 0
    stored = pa.concat_tables(matched)
    counts = stored.select(list(keys)).group_by(list(keys), use_threads=False).aggregate([([], "count_all")])
    pairs = _positions(stored, keys).join(
        _positions(rows, keys).rename_columns([*keys, OTHER_POSITION]),
        keys=list(keys),
        join_type="inner",
        use_threads=False,
    )
    left = stored.take(pairs.column(POSITION))
    right = rows.take(pairs.column(OTHER_POSITION))
    equal = pa.chunked_array([pa.array(np.ones(pairs.num_rows, dtype=bool))])
    for name in rows.column_names:
        if name in METADATA_COLUMNS or name in keys:
            continue
        equal = pc.and_(equal, null_safe_equal(left.column(name), right.column(name)))
    verdict = pairs.select(list(keys)).append_column("__equal", equal)
    verdict = verdict.join(counts, keys=list(keys), use_threads=False)
    is_unchanged = pc.and_(verdict.column("__equal"), pc.equal(verdict.column("count_all"), 1))
    unchanged = verdict.filter(is_unchanged).select(list(keys))
    changed = verdict.filter(pc.invert(is_unchanged)).select(list(keys))
    changed = changed.group_by(list(keys), use_threads=False).aggregate([]) if changed.num_rows else changed
    return unchanged, changed, counts.num_rows


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
        columns.append(transform(rows.column(source.name)).to_pylist())
    return set(zip(*columns, strict=True))


def candidate_files(
    table: Table, head: Snapshot, rows: pa.Table, keys: tuple[str, ...], *, stable_partitions: bool
) -> list[DataFile]:
    """Data files of ``head`` that may hold a batch key, by partition and key-range statistics."""
    schema = table.schema()
    spec_id = table.spec().spec_id
    partitions = batch_partitions(table, rows) if exact_partition_pruning(table, keys, stable_partitions) else None
    ranges = [_sorted_key_values(schema, rows, key) for key in keys]
    result = []
    for task in table.scan(snapshot_id=head.snapshot_id).plan_files():
        if task.delete_files:
            raise SchemaMismatchError(
                f"table {'.'.join(table.name())} has delete files (merge-on-read); Cascade merges copy-on-write only"
            )
        data_file = task.file
        if partitions is not None and data_file.spec_id == spec_id and tuple(data_file.partition) not in partitions:
            continue
        if all(_range_may_hold(data_file, key_range) for key_range in ranges):
            result.append(data_file)
    return result


@dataclass(frozen=True)
class _KeyRange:
    field_id: int
    iceberg_type: PrimitiveType
    values: list[Any] | None  # sorted distinct batch values; None when the type is not prunable


def _sorted_key_values(schema: Schema, rows: pa.Table, key: str) -> _KeyRange:
    """The key column's sorted distinct values in the form Iceberg bounds decode to, if prunable."""
    iceberg_field = schema.find_field(key)
    iceberg_type = iceberg_field.field_type
    if not isinstance(iceberg_type, PRUNABLE_KEY_TYPES):
        return _KeyRange(iceberg_field.field_id, StringType(), None)
    column = pc.unique(rows.column(key))
    if isinstance(iceberg_field.field_type, (TimestampType, TimestamptzType)):
        column = column.cast(pa.timestamp("us", tz=column.type.tz)).cast(pa.int64())
    elif isinstance(iceberg_field.field_type, DateType):
        column = column.cast(pa.int32())
    return _KeyRange(iceberg_field.field_id, iceberg_type, sorted(column.to_pylist()))


def _range_may_hold(data_file: DataFile, key_range: _KeyRange) -> bool:
    """Whether any batch key lies within the file's [lower, upper] bound for the key column.

    Truncated string bounds stay correct: a truncated lower bound is a prefix (never greater),
    and pyiceberg rounds a truncated upper bound up.
    """
    values = key_range.values
    if values is None:
        return True
    lower = (data_file.lower_bounds or {}).get(key_range.field_id)
    upper = (data_file.upper_bounds or {}).get(key_range.field_id)
    if lower is None or upper is None:
        return True
    low, high = from_bytes(key_range.iceberg_type, lower), from_bytes(key_range.iceberg_type, upper)
    index = bisect.bisect_left(values, low)
    return index < len(values) and values[index] <= high


def _read_columns(table: Table, data_file: DataFile, columns: list[str] | None) -> tuple[pa.Table, int]:
    """Read some (or all) columns of a data file; returns the rows and the bytes of the chunks read."""
    with table.io.new_input(data_file.file_path).open() as stream:
        parquet = pq.ParquetFile(stream)
        rows = parquet.read(columns=columns)
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


def _holds_any_key(
    table: Table, data_file: DataFile, batch_keys: pa.Table, keys: tuple[str, ...], counter: _ReadCounter
) -> bool:
    file_keys, nbytes = _read_columns(table, data_file, list(keys))
    counter.add(data_file.file_path, nbytes)
    file_keys = file_keys.cast(batch_keys.schema)
    return rows_with_keys(file_keys, batch_keys, keys, keep=True).num_rows > 0


def _read_file(table: Table, data_file: DataFile, counter: _ReadCounter) -> pa.Table:
    rows, nbytes = _read_columns(table, data_file, None)
    counter.add(data_file.file_path, nbytes)
    return conform(rows, table.schema(), where=f"data file {data_file.file_path}")


def write_files(table: Table, rows: pa.Table) -> list[DataFile]:
    """Write ``rows`` as new data files of ``table`` (partitioned by its spec); commits nothing."""
    if rows.num_rows == 0:
        return []
    return list(_dataframe_to_data_files(table_metadata=table.metadata, df=rows, io=table.io, write_uuid=uuid.uuid4()))


def commit_plan(
    table: Table, plan: MergePlan, written: Iterable[DataFile], *, branch: str, properties: Mapping[str, str]
) -> int:
    """Replace the plan's files with ``written`` in one snapshot on ``branch``; returns its id."""
    transaction = table.transaction()
    with transaction.update_snapshot(snapshot_properties=dict(properties), branch=branch).overwrite() as overwrite:
        for data_file in plan.replaced_files:
            overwrite.delete_data_file(data_file)
        for data_file in written:
            overwrite.append_data_file(data_file)
    transaction.commit_transaction()
    head = table.snapshot_by_name(branch)
    assert head is not None
    return head.snapshot_id


def _delete_files(table: Table, files: Iterable[DataFile]) -> None:
    for data_file in files:
        with contextlib.suppress(OSError):  # an orphan file costs space, never correctness
            table.io.delete(data_file.file_path)
