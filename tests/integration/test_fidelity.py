"""The values a source sends are the values stored, or the run is refused naming the column.

A plugin written as an outsider would (a ``dlt.resource`` over plain records or Arrow tables)
runs through ``cascade.run`` on a real SQLite catalog; the table is compared with a dict model
built from the records in the order the source yielded them.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import math
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import dlt
import pandera.pandas as pandera
import pyarrow as pa
import pyarrow.compute as pc
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pyiceberg.schema import Schema
from pyiceberg.types import (
    BooleanType,
    DateType,
    DoubleType,
    IntegerType,
    ListType,
    LongType,
    NestedField,
    StringType,
    StructType,
    TimestampType,
    TimestamptzType,
    TimeType,
)

import cascade
from cascade import INGESTED_AT, CascadeConfig, cascade_ingestion, hookimpl, register_hooks, unregister_hooks
from cascade.asset_registry import isolated_registry
from cascade.catalog import open_catalog
from cascade.errors import AssetDefinitionError, HookError, SchemaMismatchError, ValidationError
from cascade.records import value_check
from tests.conftest import examples, read_table, snapshot_id

SCHEMA = Schema(
    NestedField(1, "id", StringType(), required=True),
    NestedField(2, "s", StringType(), required=False),
    NestedField(3, "f", DoubleType(), required=False),
    NestedField(4, "n", LongType(), required=False),
    NestedField(5, "small", IntegerType(), required=False),
    NestedField(6, "b", BooleanType(), required=False),
    NestedField(7, "at", TimestamptzType(), required=False),
    NestedField(8, "tags", ListType(9, StringType(), element_required=False), required=False),
    NestedField(
        10,
        "point",
        StructType(NestedField(11, "x", LongType(), required=False), NestedField(12, "label", StringType())),
        required=False,
    ),
)
COLUMNS = [f.name for f in SCHEMA.fields]
TABLE = "fidelity.things"

ID_AND_N = pa.schema([pa.field("id", pa.string()), pa.field("n", pa.int64())])


def things_asset(batches: dict[str, list[Any]]) -> Any:
    """An outsider's asset: the day's items (dicts, or Arrow tables) as one dlt resource."""

    @cascade_ingestion(table_name="things", unique_key="id", iceberg_schema=SCHEMA, group="fidelity")
    def things(partition_date: str):
        return dlt.resource(batches.get(partition_date, []), name="things")

    return things


@contextmanager
def small_staging_files(items: int) -> Iterator[None]:
    """Make dlt rotate its extract and normalize files every ``items`` records."""
    previous = os.environ.get("DATA_WRITER__FILE_MAX_ITEMS")
    os.environ["DATA_WRITER__FILE_MAX_ITEMS"] = str(items)
    try:
        yield
    finally:
        if previous is None:
            del os.environ["DATA_WRITER__FILE_MAX_ITEMS"]
        else:
            os.environ["DATA_WRITER__FILE_MAX_ITEMS"] = previous


def stored(config: CascadeConfig) -> dict[str, dict[str, Any]]:
    rows = read_table(config, TABLE).select(COLUMNS).to_pylist()
    return {row["id"]: row for row in rows}


def same(left: Any, right: Any) -> bool:
    """Equality where NaN equals NaN, and strings must be equal code point for code point."""
    if isinstance(left, float) and isinstance(right, float):
        return (math.isnan(left) and math.isnan(right)) or left == right
    if isinstance(left, dict) and isinstance(right, dict):
        return left.keys() == right.keys() and all(same(left[k], right[k]) for k in left)
    if isinstance(left, list) and isinstance(right, list):
        return len(left) == len(right) and all(same(a, b) for a, b in zip(left, right, strict=True))
    return type(left) is type(right) and left == right


def expected_row(record: dict[str, Any]) -> dict[str, Any]:
    row = {name: record.get(name) for name in COLUMNS}
    if isinstance(row["at"], str):
        row["at"] = dt.datetime.fromisoformat(row["at"])
    if row["point"] is not None:
        row["point"] = {"x": None, "label": None, **row["point"]}
    if isinstance(row["f"], int):
        row["f"] = float(row["f"])
    return row


def assert_table_equals_model(config: CascadeConfig, model: dict[str, dict[str, Any]]) -> None:
    table = stored(config)
    assert table.keys() == model.keys()
    for key, record in model.items():
        expected = expected_row(record)
        for column in COLUMNS:
            assert same(table[key][column], expected[column]), (key, column, table[key][column], expected[column])


# --- hypothesis: random batches round-trip exactly --------------------------------------------------

DATE_LIKE = st.sampled_from(
    ["2024-01-01T10:00:00+05:00", "2024-01-01T05:00:00Z", "2024-01-01", "10:00", "1e3", "true", "null", "0", ""]
)
text = st.one_of(DATE_LIKE, st.text(max_size=12))
keys = st.one_of(DATE_LIKE, st.text(min_size=1, max_size=6))
floats = st.floats(allow_nan=True, allow_infinity=True) | st.integers(-(2**53), 2**53)
aware = st.datetimes(
    min_value=dt.datetime(1970, 1, 2), max_value=dt.datetime(2100, 1, 1), timezones=st.just(dt.UTC)
).map(lambda t: t.replace(microsecond=t.microsecond))
records = st.fixed_dictionaries(
    {"id": keys},
    optional={
        "s": st.none() | text,
        "f": st.none() | floats,
        "n": st.none() | st.integers(-(2**63), 2**63 - 1),
        "small": st.none() | st.integers(-(2**31), 2**31 - 1),
        "b": st.none() | st.booleans(),
        "at": st.none() | aware | aware.map(lambda t: t.isoformat()),
        "tags": st.none() | st.lists(st.none() | text, max_size=3),
        "point": st.none() | st.fixed_dictionaries({}, optional={"x": st.integers(-5, 5), "label": text}),
    },
)
days = st.lists(st.lists(records, max_size=25), min_size=1, max_size=3)


@settings(max_examples=examples(16), deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(days=days, file_items=st.sampled_from([1, 3, 1000]), batch_bytes=st.sampled_from([None, 1, 2000]))
def test_random_batches_round_trip_exactly(
    days: list[list[dict[str, Any]]], file_items: int, batch_bytes: int | None
) -> None:
    """``batch_bytes``: merged whole (None), or streamed a row (1) or a few rows (2000) at a time."""
    with tempfile.TemporaryDirectory() as home, isolated_registry(), small_staging_files(file_items):
        config = CascadeConfig(home=Path(home))
        if batch_bytes is not None:
            config = dataclasses.replace(config, max_batch_bytes=batch_bytes)
        batches = {f"2024-01-0{i + 1}": day for i, day in enumerate(days)}
        asset = things_asset(batches)
        model: dict[str, dict[str, Any]] = {}
        for partition, day in batches.items():
            result = cascade.run(asset, partition, config=config)
            for record in day:  # the last record the source yielded wins
                model[record["id"]] = record
            assert result.rows_extracted == len(day)
            if model:
                assert_table_equals_model(config, model)


# Arrow items (pages) mixed with records: a page's rows carry one staged number between them
page_row = st.tuples(st.sampled_from("abcdef"), st.integers(-(2**63), 2**63 - 1), st.none() | floats)


def as_page(rows: list[tuple[str, int, float | None]], types: str = "plain") -> pa.Table:
    """A page of rows, its columns typed as the source chose: pages of one day may differ (the
    guard casts each to the staged types: a narrower int, a dictionary, a large string)."""
    ids = pa.array([k for k, _, _ in rows], pa.string())
    numbers = [n for _, n, _ in rows]
    narrow = types == "narrow" and all(-(2**31) <= n < 2**31 for n in numbers)
    if types == "dictionary":
        ids = ids.dictionary_encode()
    elif types == "large":
        ids = ids.cast(pa.large_string())
    n = pa.array(numbers, pa.int32() if narrow else pa.int64())
    return pa.table({"id": ids, "n": n, "f": pa.array([f for *_, f in rows], pa.float64())})


page_types = st.sampled_from(["plain", "narrow", "dictionary", "large"])
page = st.builds(as_page, st.lists(page_row, max_size=6), page_types)
pages_and_records = st.lists(page | page_row, min_size=1, max_size=8)


@settings(max_examples=examples(16), deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(day=pages_and_records, file_items=st.sampled_from([1, 3, 1000]), batch_bytes=st.sampled_from([None, 1, 200]))
def test_pages_and_records_keep_the_last_row_yielded(
    day: list[pa.Table | tuple[str, int, float | None]], file_items: int, batch_bytes: int | None
) -> None:
    """Pages and records in one resource, staged in many files, merged whole or a few rows at a time."""
    items = [item if isinstance(item, pa.Table) else dict(zip(("id", "n", "f"), item, strict=True)) for item in day]
    model: dict[str, dict[str, Any]] = {}
    for item in items:  # the last row the source yielded wins, within a page too
        for row in item.to_pylist() if isinstance(item, pa.Table) else [item]:
            model[row["id"]] = row
    with tempfile.TemporaryDirectory() as home, isolated_registry(), small_staging_files(file_items):
        config = CascadeConfig(home=Path(home))
        if batch_bytes is not None:
            config = dataclasses.replace(config, max_batch_bytes=batch_bytes)
        result = cascade.run(things_asset({"2024-01-01": items}), "2024-01-01", config=config)
        assert result.rows_extracted == sum(i.num_rows if isinstance(i, pa.Table) else 1 for i in items)
        if model:
            assert_table_equals_model(config, model)


def test_last_yielded_record_wins_across_many_staging_files(config: CascadeConfig) -> None:
    # 4,000 records over 2,000 keys, the newer version of each key 2,000 records later
    day = [{"id": f"k{i % 2000}", "n": i} for i in range(4000)]
    with isolated_registry(), small_staging_files(100):
        result = cascade.run(things_asset({"2024-01-01": day}), "2024-01-01", config=config)
    assert len(result.staged_files) > 1
    assert {k: r["n"] for k, r in stored(config).items()} == {f"k{i}": 2000 + i for i in range(2000)}
    assert (result.rows_inserted, result.rows_deduplicated) == (2000, 2000)


@pytest.mark.catalog_sensitive
def test_a_streamed_day_lands_whole_or_not_at_all(config: CascadeConfig) -> None:
    day = [{"id": f"k{i % 300}", "n": i} for i in range(600)]
    streamed = dataclasses.replace(config, max_batch_bytes=20_000)  # chunks of about 100 rows
    with isolated_registry(), small_staging_files(50):
        result = cascade.run(things_asset({"2024-01-01": day}), "2024-01-01", config=streamed)
        assert (result.rows_extracted, result.rows_inserted, result.rows_deduplicated) == (600, 300, 300)
        # every chunk only inserted (superseded records dropped first): one snapshot, not one per chunk
        assert len(open_catalog(config).load_table(TABLE).snapshots()) == 2  # after main's empty start
        assert {k: r["n"] for k, r in stored(config).items()} == {f"k{i}": 300 + i for i in range(300)}
        before = snapshot_id(config, TABLE)
        bad = [*({"id": f"k{i}", "n": -i} for i in range(500)), {"id": None, "n": 1}]  # fails in the last chunk
        with pytest.raises(SchemaMismatchError, match="required column 'id' has 1 null"):
            cascade.run(things_asset({"2024-01-02": bad}), "2024-01-02", config=streamed)
    assert snapshot_id(config, TABLE) == before
    assert set(open_catalog(config).load_table(TABLE).metadata.refs) == {"main"}  # the private branch is gone
    assert {k: r["n"] for k, r in stored(config).items()} == {f"k{i}": 300 + i for i in range(300)}


class UniqueIds(pandera.DataFrameModel):
    id: str = pandera.Field(unique=True)
    s: str = pandera.Field(unique=True, nullable=True)

    class Config:
        strict = False


@pytest.mark.parametrize("batch_bytes", [None, 100], ids=["whole", "streamed"])
def test_a_unique_check_sees_the_whole_batch(registry, config: CascadeConfig, batch_bytes: int | None) -> None:
    @cascade_ingestion(
        table_name="things", unique_key="id", iceberg_schema=SCHEMA, group="fidelity", validation_schema=UniqueIds
    )
    def things(partition_date: str):
        return dlt.resource([{"id": f"k{i % 40}", "s": f"v{i % 45}", "n": i} for i in range(50)], name="things")

    if batch_bytes is not None:
        config = dataclasses.replace(config, max_batch_bytes=batch_bytes)
    with pytest.raises(ValidationError) as caught:
        cascade.run(things, "2024-01-01", config=config)
    by_column = {c.column: c for c in caught.value.failed_checks}
    assert by_column["s"].failure_count == 10
    assert set(by_column["s"].failure_cases) <= {f"'v{i}'" for i in range(5)}  # the values rows share
    check = by_column["id"]
    assert (check.column, check.failure_count) == ("id", 20)
    assert check.failure_cases and set(check.failure_cases) <= {f"'k{i}'" for i in range(10)}
    assert snapshot_id(config, TABLE) is None


def test_arrow_items_keep_their_order_and_non_finite_floats(config: CascadeConfig) -> None:
    pages = [
        pa.table({"id": ["a", "b"], "f": [float("nan"), 1.0]}),
        pa.table({"id": ["b", "c"], "f": [float("inf"), float("-inf")]}),
        pa.table({"id": ["a"], "f": [2.0]}),
    ]
    with isolated_registry(), small_staging_files(1):
        cascade.run(things_asset({"2024-01-01": pages}), "2024-01-01", config=config)
    values = {k: r["f"] for k, r in stored(config).items()}
    assert values["a"] == 2.0 and values["b"] == math.inf and values["c"] == -math.inf


def test_strings_that_look_like_timestamps_stay_distinct_strings(config: CascadeConfig) -> None:
    day = [{"id": "2024-01-01T10:00:00+05:00", "s": "2024-01-01"}, {"id": "2024-01-01T05:00:00Z", "s": "1e3"}]
    with isolated_registry():
        result = cascade.run(things_asset({"2024-01-01": day}), "2024-01-01", config=config)
    assert (result.rows_extracted, result.rows_inserted, result.rows_deduplicated) == (2, 2, 0)
    assert {k: r["s"] for k, r in stored(config).items()} == {
        "2024-01-01T10:00:00+05:00": "2024-01-01",
        "2024-01-01T05:00:00Z": "1e3",
    }


def test_nan_stays_nan_and_an_unchanged_nan_is_unchanged(config: CascadeConfig) -> None:
    day = [{"id": "a", "f": float("nan")}, {"id": "b", "f": float("inf")}]
    with isolated_registry():
        asset = things_asset({"2024-01-01": day})
        cascade.run(asset, "2024-01-01", config=config)
        again = cascade.run(asset, "2024-01-01", config=config)
    values = {k: r["f"] for k, r in stored(config).items()}
    assert math.isnan(values["a"]) and values["b"] == math.inf
    assert (again.rows_unchanged, again.committed) == (2, False)


# --- what cannot be stored unchanged is refused by name ----------------------------------------------


@pytest.mark.parametrize(
    ("record", "fragments"),
    [
        pytest.param({"f": True}, ["column 'f'", "bool True is not a number"], id="bool-in-double"),
        pytest.param({"n": "12"}, ["column 'n'", "str '12' is not an integer"], id="string-in-long"),
        pytest.param({"n": 1.5}, ["column 'n'", "float 1.5 is not an integer"], id="float-in-long"),
        pytest.param({"n": 2**63}, ["column 'n'", "out of the column's range"], id="long-overflow"),
        pytest.param({"small": 2**31}, ["column 'small'", "out of the column's range"], id="int-overflow"),
        pytest.param({"f": 2**60}, ["column 'f'", "cannot be stored exactly as a double"], id="inexact-double"),
        pytest.param({"s": 5}, ["column 's'", "int 5 is not a string"], id="int-in-string"),
        pytest.param({"at": "yesterday"}, ["column 'at'", "not an ISO-8601 timestamp"], id="bad-timestamp"),
        pytest.param({"point": {"y": 1}}, ["column 'point'", "fields ['y'] are not in the struct"], id="struct-field"),
    ],
)
def test_a_value_its_column_cannot_hold_is_refused_naming_it(
    config: CascadeConfig, record: dict[str, Any], fragments: list[str]
) -> None:
    batches = {"2024-01-01": [{"id": "good"}], "2024-01-02": [{"id": "ok"}, {"id": "bad", **record}]}
    with isolated_registry():
        asset = things_asset(batches)
        cascade.run(asset, "2024-01-01", config=config)
        before = snapshot_id(config, TABLE)
        with pytest.raises(SchemaMismatchError) as caught:
            cascade.run(asset, "2024-01-02", config=config)
    message = str(caught.value)
    for fragment in ["asset 'things', partition 2024-01-02", "record 1 (key {'id': 'bad'})", *fragments]:
        assert fragment in message
    assert snapshot_id(config, TABLE) == before


@pytest.mark.parametrize("clean_pages", [0, 2], ids=["one-page", "among-clean-pages"])
def test_an_arrow_value_its_column_cannot_hold_is_refused_naming_it(config: CascadeConfig, clean_pages: int) -> None:
    clean = [pa.table({"id": [f"z{i}"], "small": pa.array([i], pa.int64())}) for i in range(clean_pages)]
    pages = [*clean, pa.table({"id": ["a", "b"], "small": pa.array([1, 2**40], pa.int64())})]
    with isolated_registry(), pytest.raises(SchemaMismatchError) as caught:
        cascade.run(things_asset({"2024-01-01": pages}), "2024-01-01", config=config)
    assert "column 'small' cannot be stored as int" in str(caught.value)
    assert "row 1 (key {'id': 'b'})" in str(caught.value)
    assert snapshot_id(config, TABLE) is None


TIMES = Schema(
    NestedField(1, "id", StringType(), required=True),
    NestedField(2, "at", TimestamptzType(), required=False),
    NestedField(3, "local", TimestampType(), required=False),
    NestedField(4, "clock", TimeType(), required=False),
)
PLUS_0530 = dt.timezone(dt.timedelta(hours=5, minutes=30))


def times_asset(records: list[dict[str, Any]]) -> Any:
    @cascade_ingestion(table_name="times", unique_key="id", iceberg_schema=TIMES, group="fidelity")
    def times(partition_date: str):
        return dlt.resource(records, name="times")

    return times


@pytest.mark.parametrize(
    ("record", "fragments"),
    [
        pytest.param({"at": "2024-06-01T12:00:00.123456789Z"}, ["column 'at'", "beyond microseconds"], id="tstz-ns"),
        pytest.param({"local": "2024-06-01T12:00:00.1234567"}, ["column 'local'", "beyond microseconds"], id="ts-ns"),
        pytest.param({"clock": "12:00:00.123456789"}, ["column 'clock'", "beyond microseconds"], id="time-ns"),
        pytest.param({"local": "2024-06-01T12:00:00+05:30"}, ["column 'local'", "offset +05:30"], id="ts-offset"),
        pytest.param(
            {"local": dt.datetime(2024, 6, 1, 12, tzinfo=PLUS_0530)}, ["column 'local'", "offset +05:30"], id="ts-aware"
        ),
        pytest.param({"clock": "12:00:00+05:30"}, ["column 'clock'", "offset +05:30"], id="time-offset"),
        pytest.param({"clock": " 12:00:00"}, ["column 'clock'", "not an ISO-8601 time"], id="time-space"),
        pytest.param({"clock": "1:2:3"}, ["column 'clock'", "not an ISO-8601 time"], id="time-short"),
    ],
)
def test_temporal_values_their_column_would_change_are_refused_naming_them(
    config: CascadeConfig, record: dict[str, Any], fragments: list[str]
) -> None:
    """Digits beyond microseconds would be cut, and an offset given to a column without a time zone
    would shift the stored time: each is refused, not stored changed."""
    with isolated_registry(), pytest.raises(SchemaMismatchError) as caught:
        cascade.run(times_asset([{"id": "ok"}, {"id": "bad", **record}]), "2024-06-01", config=config)
    for fragment in ["asset 'times', partition 2024-06-01", "record 1 (key {'id': 'bad'})", *fragments]:
        assert fragment in str(caught.value)
    assert snapshot_id(config, "fidelity.times") is None


def test_a_value_dlt_cannot_coerce_is_named_with_its_column(config: CascadeConfig) -> None:
    """Python reads an offset with seconds; dlt cannot and stages the text aside (a variant column)."""
    text = "2024-06-01T12:00:00+05:30:15"
    with isolated_registry(), pytest.raises(SchemaMismatchError) as caught:
        cascade.run(times_asset([{"id": "ok"}, {"id": "bad", "at": text}]), "2024-06-01", config=config)
    message = str(caught.value)
    for fragment in [
        "asset 'times', partition 2024-06-01",
        f"column 'at': dlt could not convert {text!r}",
        "(key {'id': 'bad'})",
    ]:
        assert fragment in message
    assert snapshot_id(config, "fidelity.times") is None


offsets = st.integers(-14 * 60, 14 * 60).map(lambda minutes: dt.timezone(dt.timedelta(minutes=minutes)))
spelled_instants = st.tuples(
    st.datetimes(min_value=dt.datetime(1900, 1, 2), max_value=dt.datetime(2200, 1, 1)),
    offsets,
    st.sampled_from(["", "0", "000", "000000000"]) | st.text("0123456789", min_size=1, max_size=9),
)


def iso_text(local: dt.datetime, offset: dt.tzinfo, fraction: str) -> str:
    """``local`` at ``offset`` as ISO text, its second's fraction spelled ``fraction`` (any length)."""
    spelled = local.replace(microsecond=0, tzinfo=offset).isoformat()
    return spelled[:19] + (f".{fraction}" if fraction else "") + spelled[19:]


@settings(max_examples=examples(10), deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(spelled=st.lists(spelled_instants, min_size=1, max_size=20))
def test_timestamp_text_is_stored_as_its_instant_or_refused(spelled: list[tuple[dt.datetime, dt.tzinfo, str]]) -> None:
    """Against the model (the instant the text names, exactly): text whose fraction fits in
    microseconds is stored as that instant, whatever its offset; the rest is refused."""
    expected: dict[str, dt.datetime] = {}
    records = []
    for local, offset, fraction in spelled:
        text, exact = iso_text(local, offset, fraction), fraction[6:].strip("0") == ""
        problem = value_check(TimestamptzType())(text)
        assert (problem is None) == exact, (text, problem)
        if exact:
            key = f"k{len(records)}"
            micros = int(fraction[:6].ljust(6, "0")) if fraction else 0
            expected[key] = local.replace(microsecond=micros, tzinfo=offset).astimezone(dt.UTC)
            records.append({"id": key, "at": text})
    if not records:
        return
    with tempfile.TemporaryDirectory() as home, isolated_registry():
        config = CascadeConfig(home=Path(home))
        cascade.run(times_asset(records), "2024-06-01", config=config)
        stored = {r["id"]: r["at"] for r in read_table(config, "fidelity.times").to_pylist()}
    assert stored == expected


@pytest.mark.parametrize(
    ("column", "good", "text", "shown"),
    [
        ("day", "2024-06-01", "0000-12-31", "0000-12-31"),
        ("at", "2024-06-01T00:00:00Z", "0001-01-01T00:00:00+01:00", "0000-12-31 23:00:00"),
    ],
    ids=["date", "timestamptz"],
)
def test_an_arrow_date_before_year_one_is_refused_naming_it(
    config: CascadeConfig, column: str, good: str, text: str, shown: str
) -> None:
    """Arrow reads year 0 from text; Python, and so pyiceberg's statistics and readers, cannot hold it."""
    schema = Schema(
        NestedField(1, "id", StringType(), required=True),
        NestedField(2, "day", DateType(), required=False),
        NestedField(3, "at", TimestamptzType(), required=False),
    )

    @cascade_ingestion(table_name="calendar", unique_key="id", iceberg_schema=schema, group="fidelity")
    def calendar(partition_date: str):
        return dlt.resource([pa.table({"id": ["ok", "bad"], column: [good, text]})], name="calendar")

    with isolated_registry(), pytest.raises(SchemaMismatchError) as caught:
        cascade.run(calendar, "2024-06-01", config=config)
    message = str(caught.value)
    for fragment in [f"column {column!r} holds {shown}", "outside the years 1 to 9999", "(key {'id': 'bad'})"]:
        assert fragment in message
    assert snapshot_id(config, "fidelity.calendar") is None


def test_temporal_values_their_column_holds_are_stored_as_given(config: CascadeConfig) -> None:
    records = [
        {"id": "zeros", "at": "2024-06-01T12:00:00.123456000Z", "clock": "12:00:00.500000000"},
        {"id": "naive", "local": "2024-06-01T12:00:00.25", "clock": "23:59:59.999999"},
        {"id": "utc", "local": "2024-06-01T12:00:00Z", "clock": "12:00:00+00:00"},
        {"id": "objects", "local": dt.datetime(2024, 6, 1, 12), "clock": dt.time(7, 30)},
        {"id": "offset", "at": dt.datetime(2024, 6, 1, 12, tzinfo=PLUS_0530)},
    ]
    with isolated_registry():
        cascade.run(times_asset(records), "2024-06-01", config=config)
    rows = {r["id"]: r for r in read_table(config, "fidelity.times").to_pylist()}
    noon = dt.datetime(2024, 6, 1, 12)
    assert rows["zeros"]["at"] == noon.replace(microsecond=123456, tzinfo=dt.UTC)
    assert rows["zeros"]["clock"] == dt.time(12, 0, 0, 500000)
    assert (rows["naive"]["local"], rows["naive"]["clock"]) == (
        noon.replace(microsecond=250000),
        dt.time(23, 59, 59, 999999),
    )
    assert (rows["utc"]["local"], rows["utc"]["clock"]) == (noon, dt.time(12))
    assert (rows["objects"]["local"], rows["objects"]["clock"]) == (noon, dt.time(7, 30))
    assert rows["offset"]["at"] == dt.datetime(2024, 6, 1, 6, 30, tzinfo=dt.UTC)


INSTANTS = Schema(NestedField(1, "at", TimestamptzType(), required=True), NestedField(2, "n", LongType()))


def instants_asset(pages: list[pa.Table]) -> Any:
    @cascade_ingestion(table_name="instants", unique_key="at", iceberg_schema=INSTANTS, group="fidelity")
    def instants(partition_date: str):
        return dlt.resource(pages, name="instants")

    return instants


@pytest.mark.parametrize("batch_bytes", [None, 3000], ids=["whole", "streamed"])
def test_one_instant_spelled_two_ways_in_arrow_pages_is_one_key(config: CascadeConfig, batch_bytes: int | None) -> None:
    """A timestamptz key sent as ISO text: the day's keys are the instants, not their spellings
    (the second page's text sorts after the first's, so it also looks like keys that only increase)."""
    start = dt.datetime(2024, 6, 1, tzinfo=dt.UTC)
    instants = [start + dt.timedelta(minutes=i) for i in range(40)]
    plus_two = dt.timezone(dt.timedelta(hours=2))
    pages = [
        pa.table({"at": [t.strftime("%Y-%m-%dT%H:%M:%SZ") for t in instants], "n": list(range(40))}),
        pa.table({"at": [t.astimezone(plus_two).isoformat() for t in instants], "n": list(range(40, 80))}),
    ]
    if batch_bytes is not None:
        config = dataclasses.replace(config, max_batch_bytes=batch_bytes)
    with isolated_registry():
        result = cascade.run(instants_asset(pages), "2024-06-01", config=config)
    rows = read_table(config, "fidelity.instants").to_pylist()
    assert (result.rows_inserted, result.rows_deduplicated) == (40, 40)
    assert {r["at"]: r["n"] for r in rows} == {t: 40 + i for i, t in enumerate(instants)} and len(rows) == 40


@pytest.mark.parametrize("batch_bytes", [None, 100], ids=["whole", "streamed"])
@pytest.mark.parametrize(
    "pages",
    [
        pytest.param(
            [pa.table({"id": ["a"], "n": pa.array([1], pa.int32())}), pa.table({"id": ["b"], "n": pa.array([2])})],
            id="int32-then-int64",
        ),
        pytest.param(
            [pa.table({"id": ["a"], "s": ["x"]}), pa.table({"id": pa.array(["b"], pa.large_string()), "s": ["y"]})],
            id="string-then-large_string",
        ),
        pytest.param([pa.table({"id": ["a"], "s": ["x"]}), pa.table({"id": ["b"]})], id="a-column-missing"),
        pytest.param(
            [pa.table({"id": pa.array(["a"]).dictionary_encode()}), pa.table({"id": ["b"]})], id="dictionary-then-plain"
        ),
    ],
)
def test_arrow_pages_that_differ_in_a_widening_type_land_together(
    config: CascadeConfig, pages: list[pa.Table], batch_bytes: int | None
) -> None:
    if batch_bytes is not None:
        config = dataclasses.replace(config, max_batch_bytes=batch_bytes)
    with isolated_registry():
        cascade.run(things_asset({"2024-01-01": pages}), "2024-01-01", config=config)
    assert sorted(stored(config)) == ["a", "b"]


@pytest.mark.parametrize("batch_bytes", [None, 300], ids=["whole", "streamed"])
def test_a_null_key_names_the_asset_and_partition_once(config: CascadeConfig, batch_bytes: int | None) -> None:
    day = [{"id": f"k{i:02d}", "n": i} for i in range(30)] + [{"id": None, "n": 30}]
    if batch_bytes is not None:
        config = dataclasses.replace(config, max_batch_bytes=batch_bytes)
    with isolated_registry(), pytest.raises(SchemaMismatchError) as caught:
        cascade.run(things_asset({"2024-01-01": day}), "2024-01-01", config=config)
    assert str(caught.value).count("asset 'things'") == 1 and "'id'" in str(caught.value)
    # nothing stored (a streamed first day has created the table, empty, to fork its staging branch)
    assert snapshot_id(config, TABLE) is None or read_table(config, TABLE).num_rows == 0


def test_a_float_key_is_refused_when_the_asset_is_defined(registry) -> None:
    """0.0 and -0.0 are equal floats with different bits: as keys they would be one row or two."""
    schema = Schema(NestedField(1, "k", DoubleType(), required=False))
    with pytest.raises(AssetDefinitionError, match=r"unique_key.*\['k'\].*float or double"):

        @cascade_ingestion(table_name="float_keys", unique_key="k", iceberg_schema=schema, group="fidelity")
        def float_keys(partition_date: str):
            return dlt.resource([{"k": 0.0}, {"k": -0.0}], name="float_keys")


def test_a_value_changed_to_negative_zero_is_stored(config: CascadeConfig) -> None:
    with isolated_registry():
        cascade.run(things_asset({"2024-01-01": [{"id": "a", "f": 0.0}]}), "2024-01-01", config=config)
        second = cascade.run(things_asset({"2024-01-02": [{"id": "a", "f": -0.0}]}), "2024-01-02", config=config)
    assert (second.rows_updated, second.rows_unchanged) == (1, 0)
    assert math.copysign(1.0, stored(config)["a"]["f"]) == -1.0


@pytest.mark.catalog_sensitive
def test_an_empty_day_commits_nothing_and_succeeds(config: CascadeConfig) -> None:
    with isolated_registry():
        asset = things_asset({"2024-01-01": [{"id": "a"}], "2024-01-02": []})
        first = cascade.run(asset, "2024-01-01", config=config)
        empty = cascade.run(asset, "2024-01-02", config=config)
    assert (empty.rows_extracted, empty.rows_inserted, empty.committed) == (0, 0, False)
    assert snapshot_id(config, TABLE) == first.snapshot_id


@pytest.mark.catalog_sensitive
def test_an_empty_first_day_creates_no_table(config: CascadeConfig) -> None:
    with isolated_registry():
        result = cascade.run(things_asset({}), "2024-01-01", config=config)
    assert (result.rows_extracted, result.committed, result.snapshot_id) == (0, False, None)
    assert snapshot_id(config, TABLE) is None


# --- _cascade_ingested_at belongs to Cascade ---------------------------------------------------------


class DropsStamp:
    @hookimpl
    def cascade_after_extract(self, context: Any, rows: pa.Table) -> pa.Table:
        return rows.drop_columns([INGESTED_AT])


class RewritesStamp:
    @hookimpl
    def cascade_after_extract(self, context: Any, rows: pa.Table) -> pa.Table:
        stamp = pa.array([dt.datetime(2000, 1, 1, tzinfo=dt.UTC)] * rows.num_rows, pa.timestamp("us", tz="UTC"))
        return rows.set_column(rows.column_names.index(INGESTED_AT), INGESTED_AT, stamp)


class FiltersRows:
    @hookimpl
    def cascade_after_extract(self, context: Any, rows: pa.Table) -> pa.Table:
        return rows.filter(pa.array([value != "drop" for value in rows.column("id").to_pylist()]))


class AddsAnEarlierKey:
    """Where it sees k30, adds a later version of k00 (a key an earlier chunk held) and k30 again."""

    @hookimpl
    def cascade_after_extract(self, context: Any, rows: pa.Table) -> pa.Table | None:
        seen = rows.filter(pc.equal(rows.column("id"), "k30"))
        if not seen.num_rows:
            return None
        ids, values = rows.column_names.index("id"), rows.column_names.index("n")
        k0 = seen.set_column(ids, "id", pa.array(["k00"])).set_column(values, "n", pa.array([-1], pa.int64()))
        return pa.concat_tables([rows, k0, seen])


@pytest.mark.parametrize("source", ["records", "arrow"])
@pytest.mark.parametrize("batch_bytes", [None, 2000], ids=["whole", "streamed"])
def test_keys_a_hook_adds_follow_the_last_record_wins(
    config: CascadeConfig, batch_bytes: int | None, source: str
) -> None:
    """A hook may add rows: the day's keys are then no longer vouched distinct (Arrow pages whose
    keys only increase are, until a hook changes them), and a streamed day's chunks carried so far
    are committed before the chunk the hook changed is merged."""
    records = [{"id": f"k{i:02d}", "n": i} for i in range(60)]
    day: list[Any] = records
    if source == "arrow":
        day = [pa.Table.from_pylist(records[i : i + 10], schema=ID_AND_N) for i in range(0, 60, 10)]
    if batch_bytes is not None:
        config = dataclasses.replace(config, max_batch_bytes=batch_bytes)  # chunks of a few rows
    register_hooks(AddsAnEarlierKey(), name="key-adder")
    try:
        with isolated_registry():
            cascade.run(things_asset({"2024-01-01": day}), "2024-01-01", config=config)
    finally:
        unregister_hooks("key-adder")
    assert {k: r["n"] for k, r in stored(config).items()} == {"k00": -1, **{f"k{i:02d}": i for i in range(1, 60)}}
    assert read_table(config, TABLE).num_rows == 60  # each key once


@pytest.mark.parametrize(
    ("plugin", "fragment"),
    [
        pytest.param(DropsStamp(), "instead of the one it received", id="drops"),
        pytest.param(RewritesStamp(), "changed '_cascade_ingested_at'", id="rewrites"),
    ],
)
def test_a_hook_cannot_touch_the_ingestion_stamp(config: CascadeConfig, plugin: object, fragment: str) -> None:
    register_hooks(plugin, name="stamp-meddler")
    try:
        with isolated_registry(), pytest.raises(HookError) as caught:
            cascade.run(things_asset({"2024-01-01": [{"id": "a"}]}), "2024-01-01", config=config)
    finally:
        unregister_hooks("stamp-meddler")
    assert "plugin 'stamp-meddler'" in str(caught.value) and fragment in str(caught.value)
    assert snapshot_id(config, TABLE) is None


def test_a_hook_may_drop_rows(config: CascadeConfig) -> None:
    register_hooks(FiltersRows(), name="row-filter")
    try:
        with isolated_registry():
            cascade.run(things_asset({"2024-01-01": [{"id": "a"}, {"id": "drop"}]}), "2024-01-01", config=config)
    finally:
        unregister_hooks("row-filter")
    assert set(stored(config)) == {"a"}
    assert read_table(config, TABLE).column(INGESTED_AT).null_count == 0
