"""Per-partition replace: after a run, its partition holds exactly the batch; other days are untouched.

Against a dict model: each partition date maps to the latest batch of that date (last record of a
key wins). In merge mode the model keeps every key ever seen instead.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import tempfile
from pathlib import Path
from typing import Any

import dlt
import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pyiceberg.partitioning import PartitionField, PartitionSpec
from pyiceberg.schema import Schema
from pyiceberg.transforms import DayTransform
from pyiceberg.types import LongType, NestedField, StringType, TimestamptzType

import cascade
from cascade import CascadeConfig, cascade_ingestion
from cascade.asset_registry import isolated_registry
from cascade.catalog import open_catalog
from cascade.errors import AssetDefinitionError, SchemaMismatchError
from tests.conftest import examples, read_table, snapshot_id

pytestmark = pytest.mark.catalog_sensitive  # partition replaces commit through the catalog: again on PostgreSQL + S3

SCHEMA = Schema(
    NestedField(1, "id", StringType(), required=True),
    NestedField(2, "at", TimestamptzType(), required=True),
    NestedField(3, "v", LongType(), required=False),
)
BY_DAY = PartitionSpec(PartitionField(source_id=2, field_id=1000, transform=DayTransform(), name="at_day"))
DAYS = ["2024-02-01", "2024-02-02", "2024-02-03"]
TABLE = "lab.readings"


def declare(batches: dict[str, list[dict[str, Any]]], how: str) -> Any:
    """An outsider's asset, told to replace in one of the three ways a user can say it."""
    options: dict[str, Any] = {"partition_spec": BY_DAY} if how != "column" else {"partition_column": "at"}
    if how != "disposition":
        options["mode"] = "replace_partition" if how != "merge" else "merge"
    disposition = "replace" if how == "disposition" else "append"

    @cascade_ingestion(table_name="readings", unique_key="id", iceberg_schema=SCHEMA, group="lab", **options)
    def readings(partition_date: str):
        return dlt.resource(batches.get(partition_date, []), name="readings", write_disposition=disposition)

    return readings


def record(day: str, key: int, value: int) -> dict[str, Any]:
    at = dt.datetime.fromisoformat(day).replace(tzinfo=dt.UTC) + dt.timedelta(minutes=key)
    return {"id": f"{day}/{key}", "at": at, "v": value}


def stored(config: CascadeConfig) -> dict[str, int | None]:
    return {row["id"]: row["v"] for row in read_table(config, TABLE).select(["id", "v"]).to_pylist()}


runs = st.lists(
    st.tuples(
        st.sampled_from(DAYS),
        st.lists(st.tuples(st.integers(0, 6), st.integers(-3, 3)), max_size=8),  # (key, value); may be empty
    ),
    min_size=1,
    max_size=6,
)


@settings(max_examples=examples(12), deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    runs=runs,
    how=st.sampled_from(["mode", "column", "disposition", "merge"]),
    batch_bytes=st.sampled_from([None, 1]),
)
def test_each_partition_holds_its_latest_batch(
    runs: list[tuple[str, list[tuple[int, int]]]], how: str, batch_bytes: int | None
) -> None:
    """``batch_bytes=1`` streams every non-empty day a row at a time."""
    with tempfile.TemporaryDirectory() as home, isolated_registry():
        config = CascadeConfig(home=Path(home))
        if batch_bytes is not None:
            config = dataclasses.replace(config, max_batch_bytes=batch_bytes)
        batches: dict[str, list[dict[str, Any]]] = {}
        asset = declare(batches, how)
        latest: dict[str, dict[str, int]] = {}  # partition -> key -> value (replace)
        merged: dict[str, int] = {}  # key -> value (merge)
        for day, pairs in runs:
            batches[day] = [record(day, key, value) for key, value in pairs]
            before = stored(config) if snapshot_id(config, TABLE) else {}
            result = cascade.run(asset, day, config=config)
            latest[day] = {r["id"]: r["v"] for r in batches[day]}
            merged.update(latest[day])
            exists = snapshot_id(config, TABLE) is not None
            if how == "merge":
                assert (stored(config) if exists else {}) == merged
                assert result.rows_deleted == 0
                continue
            expected = {key: value for partition in latest.values() for key, value in partition.items()}
            assert (stored(config) if exists else {}) == expected
            dropped = {k for k in before if k.startswith(day + "/")} - set(latest[day])
            assert result.rows_deleted == len(dropped)


def test_a_dropped_record_is_deleted_in_one_snapshot(config: CascadeConfig) -> None:
    batches = {"2024-02-01": [record("2024-02-01", k, k) for k in range(5)], "2024-02-02": [record("2024-02-02", 0, 0)]}
    with isolated_registry():
        asset = declare(batches, "disposition")
        cascade.run(asset, "2024-02-01", config=config)
        cascade.run(asset, "2024-02-02", config=config)
        batches["2024-02-01"] = [record("2024-02-01", 1, 10), record("2024-02-01", 3, 3)]
        before = snapshot_id(config, TABLE)
        result = cascade.run(asset, "2024-02-01", config=config)
    assert stored(config) == {"2024-02-01/1": 10, "2024-02-01/3": 3, "2024-02-02/0": 0}
    assert (result.rows_deleted, result.rows_updated, result.rows_unchanged, result.rows_inserted) == (3, 1, 1, 0)
    assert result.as_dict()["rows_deleted"] == 3
    table = open_catalog(config).load_table(TABLE)
    assert table.snapshot_by_name("main").parent_snapshot_id == before  # one snapshot for the whole change


def test_merge_mode_keeps_what_the_source_dropped(config: CascadeConfig) -> None:
    batches = {"2024-02-01": [record("2024-02-01", k, k) for k in range(3)]}
    with isolated_registry():
        asset = declare(batches, "merge")
        cascade.run(asset, "2024-02-01", config=config)
        batches["2024-02-01"] = [record("2024-02-01", 0, 0)]
        result = cascade.run(asset, "2024-02-01", config=config)
    assert (result.rows_deleted, len(stored(config))) == (0, 3)


def test_a_row_of_another_day_is_refused(config: CascadeConfig) -> None:
    batches = {"2024-02-01": [record("2024-02-01", 0, 0), record("2024-02-02", 1, 1)]}
    with isolated_registry(), pytest.raises(SchemaMismatchError) as caught:
        cascade.run(declare(batches, "mode"), "2024-02-01", config=config)
    assert "1 row(s) have 'at' outside 2024-02-01" in str(caught.value)
    assert "key {'id': '2024-02-02/1'}" in str(caught.value)


def test_replace_without_a_day_column_is_refused_at_import(registry) -> None:
    with pytest.raises(AssetDefinitionError, match="parameter 'mode': replace_partition must know which rows"):

        @cascade_ingestion(
            table_name="readings", unique_key="id", iceberg_schema=SCHEMA, group="lab", mode="replace_partition"
        )
        def readings(partition_date: str):
            return []


@pytest.mark.parametrize(
    ("options", "parameter", "fragment"),
    [
        pytest.param({"mode": "upsert"}, "mode", "must be one of ['merge', 'replace_partition']", id="mode"),
        pytest.param({"partition_column": "v"}, "partition_column", "must be a date or timestamp", id="not-a-day"),
        pytest.param({"partition_column": "nope"}, "partition_column", "not a column", id="unknown"),
    ],
)
def test_bad_replace_parameters_are_refused(registry, options: dict[str, Any], parameter: str, fragment: str) -> None:
    with pytest.raises(AssetDefinitionError) as caught:
        cascade_ingestion(table_name="readings", unique_key="id", iceberg_schema=SCHEMA, group="lab", **options)(
            lambda partition_date: []
        )
    assert caught.value.parameter == parameter and fragment in str(caught.value)


@pytest.mark.parametrize(
    ("disposition", "fragment"),
    [
        pytest.param("skip", "['skip'] is not honoured by Cascade", id="skip"),
        pytest.param("replace", "'replace' is not possible: replace_partition must know", id="replace-without-day"),
    ],
)
def test_a_disposition_cascade_cannot_honour_is_refused(
    registry, config: CascadeConfig, disposition: str, fragment: str
) -> None:
    @cascade_ingestion(table_name="readings", unique_key="id", iceberg_schema=SCHEMA, group="lab")
    def readings(partition_date: str):
        return dlt.resource([record(partition_date, 0, 0)], name="readings", write_disposition=disposition)

    with pytest.raises(AssetDefinitionError) as caught:
        cascade.run(readings, "2024-02-01", config=config)
    assert "asset 'readings': parameter 'write_disposition'" in str(caught.value) and fragment in str(caught.value)
    assert snapshot_id(config, TABLE) is None


BIG_KEYS = Schema(
    NestedField(1, "id", LongType(), required=True), NestedField(2, "at", TimestamptzType(), required=True)
)


@pytest.mark.parametrize("batch_bytes", [None, 1000], ids=["whole", "streamed"])
def test_a_day_sent_with_narrower_integer_keys_replaces_a_stored_wider_one(
    config: CascadeConfig, batch_bytes: int | None
) -> None:
    """The stored day holds a key past 2**31; the new day's Arrow pages carry int32 keys."""
    noon = dt.datetime(2024, 2, 1, 12, tzinfo=dt.UTC)
    days: dict[str, list[Any]] = {"2024-02-01": [{"id": 5_000_000_000, "at": noon}, {"id": 1, "at": noon}]}

    @cascade_ingestion(
        table_name="wide",
        unique_key="id",
        iceberg_schema=BIG_KEYS,
        group="lab",
        mode="replace_partition",
        partition_column="at",
    )
    def wide(partition_date: str):
        return dlt.resource(days[partition_date], name="wide")

    with isolated_registry():
        cascade.run(wide, "2024-02-01", config=config)
        pages = [pa.table({"id": pa.array(range(i, i + 20), pa.int32()), "at": [noon] * 20}) for i in (1, 21)]
        days["2024-02-01"] = pages
        streamed = dataclasses.replace(config, max_batch_bytes=batch_bytes) if batch_bytes else config
        result = cascade.run(wide, "2024-02-01", config=streamed)
    assert sorted(read_table(config, "lab.wide").column("id").to_pylist()) == list(range(1, 41))
    assert result.rows_deleted == 1
