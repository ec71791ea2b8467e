"""Pruning: which data files of a snapshot may hold a batch's keys, read from the manifests alone.

A manifest whose partition summaries cannot hold a batch partition is skipped unread; within the
rest, entries are kept by partition (when pruning by partition is exact) and by key range.
"""

from __future__ import annotations

import datetime as dt
import os
import threading
from collections import OrderedDict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, cast

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc
from pyiceberg.conversions import from_bytes
from pyiceberg.io.pyarrow import schema_to_pyarrow
from pyiceberg.manifest import DataFile, ManifestContent, ManifestFile
from pyiceberg.partitioning import PartitionSpec
from pyiceberg.schema import Schema
from pyiceberg.table import Table
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

from cascade.errors import SchemaMismatchError
from cascade.merge.batch import sorted_values
from cascade.records import sorted_distinct

if TYPE_CHECKING:
    from cascade.merge.plan import PartitionReplace

PROBE_THREADS = min(4, os.cpu_count() or 2)
PRUNABLE_KEY_TYPES = (StringType, IntegerType, LongType, DateType, TimestampType, TimestamptzType)
MANIFEST_LISTS_KEPT = 8


class _ManifestLists:
    """The manifests of the last few snapshots planned against, by manifest list path.

    A manifest list is never rewritten (a new snapshot writes a new one), so what was read stays
    true. Every chunk of a chunked merge plans against the same head until it commits, and
    pyiceberg reads the list again each time (its Avro header alone costs about 15 ms).
    """

    def __init__(self, kept: int) -> None:
        self._kept = kept
        self._lists: OrderedDict[str, tuple[ManifestFile, ...]] = OrderedDict()
        self._lock = threading.Lock()

    def of(self, table: Table, snapshot: Snapshot) -> tuple[ManifestFile, ...]:
        with self._lock:
            if snapshot.manifest_list in self._lists:
                self._lists.move_to_end(snapshot.manifest_list)
                return self._lists[snapshot.manifest_list]
        manifests = tuple(snapshot.manifests(table.io))
        with self._lock:
            self._lists[snapshot.manifest_list] = manifests
            while len(self._lists) > self._kept:
                self._lists.popitem(last=False)
        return manifests


_manifest_lists = _ManifestLists(MANIFEST_LISTS_KEPT)


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
    disjoint_files: frozenset[str] = frozenset(),
) -> list[DataFile]:
    """Data files of ``head`` that may hold a batch key, by partition and key-range statistics.

    Reads the manifests directly: a manifest whose partition summaries cannot hold a batch
    partition is skipped unread; within the rest, entries are filtered by partition and key range.
    ``disjoint_files`` (paths) are known to hold none of the batch's keys (written by a chunked
    merge's earlier chunks that only inserted, when every key of the batch is distinct) and are skipped.
    """
    if head.summary is not None and head.summary.get("total-data-files") == "0":
        return []  # nothing stored yet (a new table's first day): no manifest to read
    schema, spec = table.schema(), table.spec()
    prune = replace is None and exact_partition_pruning(table, keys, stable_partitions)
    partitions = batch_partitions(table, rows) if prune else None
    ranges = [_sorted_key_values(schema, rows, key) for key in keys]
    day = day_interval(schema, replace) if replace is not None else None
    manifests = _manifest_lists.of(table, head)
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
            if data_file.file_path in disjoint_files:
                continue
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
class KeyRange:
    field_id: int
    iceberg_type: PrimitiveType
    values: npt.NDArray[Any] | None  # sorted distinct batch values; None when the type is not prunable
    interval: npt.NDArray[Any] | None = None  # [first, last] of a closed interval of values, instead


def _sorted_key_values(schema: Schema, rows: pa.Table, key: str) -> KeyRange:
    """The key column's sorted distinct values in the form Iceberg bounds decode to, if prunable."""
    iceberg_field = schema.find_field(key)
    iceberg_type = iceberg_field.field_type
    if not isinstance(iceberg_type, PRUNABLE_KEY_TYPES):
        return KeyRange(iceberg_field.field_id, StringType(), None)
    column = _as_bound_values(rows.column(key), iceberg_type)
    if pa.types.is_integer(column.type) and column.null_count == 0:
        return KeyRange(iceberg_field.field_id, iceberg_type, sorted_distinct(column.to_numpy()))
    values = sorted_values(pc.unique(column)).to_numpy(zero_copy_only=False)
    return KeyRange(iceberg_field.field_id, iceberg_type, values)


def _as_bound_values(column: pa.Array | pa.ChunkedArray, iceberg_type: PrimitiveType) -> pa.Array | pa.ChunkedArray:
    """Key values as Iceberg's bounds decode: timestamps as microseconds, dates as days."""
    if isinstance(iceberg_type, (TimestampType, TimestamptzType)):
        return column.cast(pa.timestamp("us", tz=column.type.tz)).cast(pa.int64())
    if isinstance(iceberg_type, DateType):
        return column.cast(pa.int32())
    return column


def key_intervals(schema: Schema, rows: pa.Table, keys: tuple[str, ...]) -> list[KeyRange]:
    """Each key column's [least, greatest] value in ``rows``: a file whose bounds miss any of them
    holds none of the rows' keys (see :func:`may_hold_keys`). A key type Iceberg's bounds cannot
    prune by gives an interval that every file may hold."""
    found = []
    for key in keys:
        iceberg_field = schema.find_field(key)
        iceberg_type = iceberg_field.field_type
        if not isinstance(iceberg_type, PRUNABLE_KEY_TYPES):
            found.append(KeyRange(iceberg_field.field_id, StringType(), None))
            continue
        least, greatest = pc.min_max(_as_bound_values(rows.column(key), iceberg_type)).values()
        interval = np.array([least.as_py(), greatest.as_py()], dtype=object)
        found.append(KeyRange(iceberg_field.field_id, iceberg_type, None, interval))
    return found


def may_hold_keys(data_file: DataFile, intervals: list[KeyRange]) -> bool:
    """Whether ``data_file``'s key bounds (missing ones hold anything) meet every one of ``intervals``."""
    return all(_range_may_hold(data_file, interval) for interval in intervals)


def day_interval(schema: Schema, replace: PartitionReplace) -> KeyRange:
    """The replaced day as a key range over its column: a file whose bounds miss it holds none of it."""
    iceberg_field = schema.find_field(replace.column)
    arrow_type = schema_to_pyarrow(iceberg_field.field_type)
    low, high = replace.bounds(arrow_type)
    edges = pa.array([low, high - dt.timedelta(microseconds=1) if isinstance(high, dt.datetime) else low], arrow_type)
    if pa.types.is_timestamp(arrow_type):
        edges = edges.cast(pa.timestamp("us", tz=arrow_type.tz)).cast(pa.int64())
    else:
        edges = edges.cast(pa.int32())
    return KeyRange(iceberg_field.field_id, cast(PrimitiveType, iceberg_field.field_type), None, edges.to_numpy())


def _range_may_hold(data_file: DataFile, key_range: KeyRange) -> bool:
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
