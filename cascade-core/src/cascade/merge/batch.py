"""Batch preparation: a batch as the table will hold it, one row per key (the last one wins)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc
from pyiceberg.schema import Schema

from cascade.conformance import conform, reject_floating_keys, reject_null_keys
from cascade.records import distinct_by_sorting

POSITION = "__cascade_position"
OTHER_POSITION = "__cascade_other_position"


def prepare_batch(batch: pa.Table, schema: Schema, keys: tuple[str, ...], *, keys_distinct: bool = False) -> pa.Table:
    """Conform to the table schema, refuse null keys, and keep the last record of each key
    (unless the caller vouches that no key repeats)."""
    reject_floating_keys(schema, keys)
    rows = conform(batch, schema)
    reject_null_keys(rows, keys)
    return rows if keys_distinct else keep_last_per_key(rows, keys)


def keep_last_per_key(rows: pa.Table, keys: tuple[str, ...]) -> pa.Table:
    """Drop all but the last row of each key, keeping the survivors in batch order."""
    if rows.num_rows == 0 or distinct_by_sorting(rows, keys):  # an integer key, each once: the usual day
        return rows
    last = numbered(rows, keys).group_by(list(keys), use_threads=False).aggregate([(POSITION, "max")])
    if last.num_rows == rows.num_rows:  # every key once: nothing to drop, nothing to copy
        return rows
    return rows.take(sorted_values(last.column(f"{POSITION}_max")))


def sorted_values(values: pa.Array | pa.ChunkedArray) -> pa.Array | pa.ChunkedArray:
    return pc.take(values, pc.sort_indices(values))


def numbered(rows: pa.Table, keys: Sequence[str]) -> pa.Table:
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
    pairs = numbered(stored_keys, keys).join(
        numbered(batch_keys, keys).rename_columns([*keys, OTHER_POSITION]),
        keys=list(keys),
        join_type="inner",
        use_threads=False,
    )
    positions = np.full(stored_keys.num_rows, -1, dtype=np.int64)
    positions[pairs.column(POSITION).to_numpy()] = pairs.column(OTHER_POSITION).to_numpy()
    return positions
