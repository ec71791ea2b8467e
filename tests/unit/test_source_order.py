"""Source order from the staged numbers: a record carries its position, an Arrow item's rows the
position of the item's first row (``cascade.records.SourcePositions``), checked against the
positions counted by hand, whatever the files and the pieces the rows are read in; and the
guard's claim that the source's keys only increased (``AscendingKey``), against pairwise checks."""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pyiceberg.schema import Schema
from pyiceberg.types import LongType, NestedField

from cascade.records import (
    SEQUENCE,
    RecordGuard,
    SourceOrderError,
    SourcePositions,
    batch_keys,
    restore_source_order,
)

# an item: a record (None) or an Arrow item of that many rows
items = st.lists(st.none() | st.integers(0, 5), max_size=12)


def numbers_of(day: list[int | None]) -> list[list[int]]:
    """Each item's staged numbers, as the guard gives them."""
    numbered, position = [], 0
    for item in day:
        rows = 1 if item is None else item
        numbered.append([position] * rows if item is not None else [position])
        position += rows
    return numbered


@settings(deadline=None)  # a busy machine runs slowly
@given(day=items, data=st.data())
def test_positions_are_counted_across_any_pieces(day: list[int | None], data: st.DataObject) -> None:
    numbers = [n for item in numbers_of(day) for n in item]
    cuts = sorted(data.draw(st.lists(st.integers(0, len(numbers)), max_size=4)))
    positions = SourcePositions()
    pieces = [numbers[start:end] for start, end in zip([0, *cuts], [*cuts, len(numbers)], strict=True)]
    got = [p for piece in pieces for p in positions(pa.array(piece, pa.int64()))]
    assert got == list(range(len(numbers)))


@settings(deadline=None)  # a busy machine runs slowly
@given(day=items, data=st.data())
def test_rows_from_files_in_any_order_come_back_in_source_order(day: list[int | None], data: st.DataObject) -> None:
    """dlt writes each item whole into one file, in order within the file; files come back in any order."""
    files: dict[int, list[tuple[int, int]]] = {}  # a file's rows: (staged number, source position)
    for item in numbers_of(day):
        rows = files.setdefault(data.draw(st.integers(0, 2)), [])
        rows.extend((number, number + offset) for offset, number in enumerate(item))
    read = [row for f in data.draw(st.permutations(sorted(files))) for row in files[f]]
    table = pa.table({SEQUENCE: pa.array([n for n, _ in read], pa.int64()), "row": [p for _, p in read]})
    assert restore_source_order(table).column("row").to_pylist() == list(range(len(read)))


def test_an_item_split_around_another_is_refused() -> None:
    # item 0 (rows 0-2) staged as two pieces with item 3 between them: its order is lost
    table = pa.table({SEQUENCE: pa.array([0, 0, 3, 0], pa.int64()), "row": [0, 1, 3, 2]})
    with pytest.raises(SourceOrderError, match="one Arrow item in more than one place"):
        restore_source_order(table)


def test_a_split_item_with_repeated_keys_is_refused_when_finding_superseded_records(tmp_path: Path) -> None:
    # item 0 (keys a, b, c) split around item 3 (key a): "c" would take position 0, which "a" had
    pieces = [[(0, "a"), (0, "b")], [(3, "a")], [(0, "c")]]
    files = []
    for i, rows in enumerate(pieces):
        path = tmp_path / f"{i}.parquet"
        pq.write_table(pa.table({SEQUENCE: [n for n, _ in rows], "k": [k for _, k in rows]}), path)
        files.append(str(path))
    with pytest.raises(SourceOrderError):
        batch_keys(files, ("k",))


def test_superseded_records_are_found_by_position_within_an_item(tmp_path: Path) -> None:
    path = tmp_path / "item.parquet"
    pq.write_table(pa.table({SEQUENCE: np.zeros(4, dtype=np.int64), "k": ["a", "b", "a", "a"]}), path)
    assert batch_keys([str(path)], ("k",)).superseded.to_pylist() == [0, 2]


keyed_items = st.lists(
    st.lists(st.one_of(st.none(), st.integers(-3, 3)), max_size=4).map(lambda ks: ("page", ks))
    | st.integers(-3, 3).map(lambda k: ("record", [k])),
    max_size=6,
)


@settings(deadline=None)  # a busy machine runs slowly
@given(keyed_items)
def test_ascending_key_holds_only_when_every_arrow_key_is_larger_than_the_last(
    items: list[tuple[str, list[int | None]]],
) -> None:
    guard = RecordGuard(Schema(NestedField(1, "Id", LongType(), required=False)), ("id",), where="test")
    for kind, keys in items:
        guard({"Id": keys[0]} if kind == "record" else pa.table({"Id": pa.array(keys, pa.int64())}))
    flat = [k for _, keys in items for k in keys]
    ascending = None not in flat and all(a < b for a, b in itertools.pairwise(flat))
    assert guard.ascending.holds == (ascending and all(kind == "page" for kind, _ in items))


def test_ascending_key_is_not_claimed_for_keys_that_do_not_compare() -> None:
    guard = RecordGuard(Schema(NestedField(1, "id", LongType(), required=False)), ("id",), where="test")
    guard(pa.table({"id": pa.array([1, 2], pa.int64())}))
    guard(pa.table({"id": ["3"]}))
    assert not guard.ascending.holds
