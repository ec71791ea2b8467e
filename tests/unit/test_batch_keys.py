"""Key-set helpers against Python's sets and dicts: ``cascade.records.all_distinct`` (the fast check a
streamed day's keys go through), the merge pruning's sorted distinct keys, and the merge's last record
per key."""

from __future__ import annotations

import datetime as dt
import itertools

import numpy as np
import pyarrow as pa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cascade.merge.batch import keep_last_per_key
from cascade.records import all_distinct, holds_repeats, sorted_distinct, strictly_increasing

KEY_VALUES = {
    "int64": (st.integers(-(2**63), 2**63 - 1), pa.int64()),
    "int16": (st.integers(-3, 3), pa.int16()),
    "date": (st.dates(dt.date(2000, 1, 1), dt.date(2000, 1, 5)), pa.date32()),
    "timestamp": (st.datetimes(dt.datetime(2000, 1, 1), dt.datetime(2000, 1, 1, 0, 0, 0, 5)), pa.timestamp("us")),
    "string": (st.text(max_size=2), pa.string()),
}


@settings(suppress_health_check=[HealthCheck.too_slow], deadline=None)  # a busy machine draws slowly
@given(st.sampled_from(sorted(KEY_VALUES)), st.data(), st.integers(1, 3))
def test_all_distinct_agrees_with_a_set(kind: str, data: st.DataObject, chunks: int) -> None:
    values, arrow_type = KEY_VALUES[kind]
    parts = [data.draw(st.lists(st.one_of(st.none(), values), max_size=6)) for _ in range(chunks)]
    column = pa.chunked_array([pa.array(part, arrow_type) for part in parts], arrow_type)
    flat = [value for part in parts for value in part]
    assert all_distinct(pa.table({"k": column}), ("k",)) == (len(set(flat)) == len(flat))


@given(st.lists(st.tuples(st.integers(0, 2), st.sampled_from(["a", "b"])), max_size=8))
def test_all_distinct_on_a_two_column_key(pairs: list[tuple[int, str]]) -> None:
    rows = pa.table({"a": [a for a, _ in pairs], "b": [b for _, b in pairs]})
    assert all_distinct(rows, ("a", "b")) == (len(set(pairs)) == len(pairs))


@given(st.lists(st.lists(st.integers(-(2**63), 2**63 - 1) | st.integers(-3, 3), max_size=8), min_size=1, max_size=3))
def test_sorted_distinct_agrees_with_a_sorted_set(parts: list[list[int]]) -> None:
    column = pa.chunked_array([pa.array(part, pa.int64()) for part in parts], pa.int64())  # one chunk: read-only
    flat = [value for part in parts for value in part]
    assert sorted_distinct(column.to_numpy()).tolist() == sorted(set(flat))
    assert column.to_pylist() == flat  # sorted a copy, not the batch


@given(st.sampled_from([np.int8, np.int16, np.int64, np.uint8, np.uint64]), st.booleans(), st.data())
def test_repeats_agree_with_a_set_for_keys_bunched_at_either_end_of_their_type(
    dtype: type[np.integer], at_the_top: bool, data: st.DataObject
) -> None:
    """Keys in a range not much wider than their count get one flag per value in the range, not a
    sort; their offsets from the lowest key must not overflow the type."""
    info = np.iinfo(dtype)
    offsets = data.draw(st.lists(st.integers(0, 6), min_size=1, max_size=9))
    values = [int(info.max) - o if at_the_top else int(info.min) + o for o in offsets]
    assert holds_repeats(np.array(values, dtype=dtype)) == (len(set(values)) != len(values))


def test_repeats_in_a_type_wide_range_of_shuffled_keys() -> None:
    keys = np.random.default_rng(1).permutation(np.arange(-128, 128, dtype=np.int8))
    assert not holds_repeats(keys.copy())
    keys[0] = keys[-1]
    assert holds_repeats(keys)


@given(st.lists(st.integers(-3, 3)) | st.lists(st.integers(-(2**63), 2**63 - 1)).map(sorted))
def test_strictly_increasing_agrees_with_pairwise_comparison(values: list[int]) -> None:
    expected = all(a < b for a, b in itertools.pairwise(values))
    assert strictly_increasing(np.array(values, dtype=np.int64)) == expected


@given(st.lists(st.tuples(st.integers(-3, 3) | st.integers(-(2**63), 2**63 - 1), st.integers(0, 9)), max_size=10))
def test_keep_last_per_key_agrees_with_a_dict(records: list[tuple[int, int]]) -> None:
    """An integer key is answered by sorting when each key comes once, by grouping when one repeats."""
    rows = pa.table({"k": pa.array([k for k, _ in records], pa.int64()), "v": [v for _, v in records]})
    where_last = {k: i for i, (k, _) in enumerate(records)}
    kept = keep_last_per_key(rows, ("k",)).to_pylist()
    assert [(r["k"], r["v"]) for r in kept] == [records[i] for i in sorted(where_last.values())]  # in batch order
