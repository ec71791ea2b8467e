"""Planning: the files a merge replaces and the rows it writes, read against one snapshot.

Candidate files (see :mod:`cascade.merge.pruning`) are opened for their key columns only; a
file is read whole, and replaced, only if it really holds a key the batch changes (or, when a
partition is replaced, a row of that day the batch lacks).
"""

from __future__ import annotations

import datetime as dt
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from pyiceberg.manifest import DataFile
from pyiceberg.table import Table
from pyiceberg.table.refs import MAIN_BRANCH
from pyiceberg.table.snapshots import Snapshot

from cascade.conformance import conform, null_safe_equal
from cascade.merge.batch import batch_positions
from cascade.merge.pruning import PROBE_THREADS, candidate_files
from cascade.spec import METADATA_COLUMNS


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

    @property
    def adds_only(self) -> bool:
        """Whether committing the plan replaces no stored file (it only adds rows, or nothing)."""
        return not self.replaced_files


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
class ReadCounter:
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


@dataclass(frozen=True)
class StoredFile:
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
    disjoint_files: frozenset[str] = frozenset(),
) -> MergePlan:
    """Plan a merge of prepared ``rows`` against the branch's current snapshot; reads, never writes.

    ``disjoint_files`` (paths) hold none of ``rows``' keys: they are not read.
    """
    head = table.snapshot_by_name(branch) or table.snapshot_by_name(MAIN_BRANCH)
    if head is None or (rows.num_rows == 0 and replace is None):
        return inserting_all(head, rows, files_considered=0, counter=ReadCounter())
    counter = ReadCounter()
    candidates = candidate_files(
        table,
        head,
        rows,
        keys,
        stable_partitions=stable_partitions,
        replace=replace,
        disjoint_files=disjoint_files,
    )
    stored = stored_files_with_keys(table, candidates, rows.select(list(keys)), keys, counter, replace)
    if not stored:  # no stored row shares a key with the batch (and none is stale)
        return inserting_all(head, rows, files_considered=len(candidates), counter=counter)
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


def inserting_all(head: Snapshot | None, rows: pa.Table, *, files_considered: int, counter: ReadCounter) -> MergePlan:
    """The plan of a batch whose every row is new to the branch."""
    return MergePlan(
        base_snapshot_id=head.snapshot_id if head else None,
        replaced_files=(),
        rows_to_write=rows,
        rows_inserted=rows.num_rows,
        rows_updated=0,
        rows_unchanged=0,
        files_considered=files_considered,
        files_read=counter.files,
        bytes_read=counter.bytes,
    )


def stored_files_with_keys(
    table: Table,
    candidates: list[DataFile],
    batch_keys: pa.Table,
    keys: tuple[str, ...],
    counter: ReadCounter,
    replace: PartitionReplace | None = None,
) -> list[StoredFile]:
    """Probe candidates on their key columns (in parallel); read whole only those holding batch keys.

    With ``replace``, the partition column is probed too, and a file holding rows of the partition
    that the batch lacks is read whole as well: those rows are *stale*, to be deleted.
    """
    probed = list(dict.fromkeys([*keys, *([replace.column] if replace else [])]))

    def probe(data_file: DataFile) -> StoredFile | None:
        file_keys, nbytes = read_columns(table, data_file, probed)
        counter.add(data_file.file_path, nbytes)
        positions = batch_positions(file_keys.select(list(keys)).cast(batch_keys.schema), batch_keys, keys)
        stale = np.zeros(len(positions), dtype=bool)
        if replace is not None:
            stale = replace.holds(file_keys.column(replace.column)) & (positions < 0)
            if replace.keep is not None and stale.any():
                stored = file_keys.select(list(keys))  # the day's keys are cast to the stored types, never narrowed
                keep = replace.keep.select(list(keys)).cast(stored.schema)
                stale &= batch_positions(stored, keep, keys) < 0
        if not (positions >= 0).any() and not stale.any():
            return None
        file_rows, nbytes = read_columns(table, data_file, None)
        counter.add(data_file.file_path, nbytes)
        return StoredFile(
            data_file, conform(file_rows, table.schema(), where=f"data file {data_file.file_path}"), positions, stale
        )

    with ThreadPoolExecutor(max_workers=PROBE_THREADS) as pool:  # pyarrow reads release the GIL
        return [found for found in pool.map(probe, candidates) if found is not None]


def classify_batch(
    stored: list[StoredFile], rows: pa.Table, keys: tuple[str, ...]
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


def read_columns(table: Table, data_file: DataFile, columns: list[str] | None) -> tuple[pa.Table, int]:
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
