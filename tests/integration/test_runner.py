"""``cascade.run`` end to end: real dlt pipelines, a real SQLite catalog, a real HTTP server."""

from __future__ import annotations

import dataclasses
import time
from collections import Counter

import dlt
import pandera.pandas as pa
import pyarrow.compute as pc
import pytest
from pyiceberg.schema import Schema
from pyiceberg.types import LongType, NestedField, StringType

import cascade
from cascade import INGESTED_AT, CascadeConfig, cascade_ingestion
from cascade.errors import (
    NullKeyError,
    RunTimeoutError,
    SchemaMismatchError,
    SourceError,
    StagingError,
    TransientSourceError,
    ValidationError,
)
from cascade_nightscout import glucose
from cascade_nightscout.glucose import day_bounds_ms
from cascade_nightscout.server import readings_between
from tests.conftest import read_table, snapshot_id

pytestmark = pytest.mark.catalog_sensitive  # every phase through the catalog: again on PostgreSQL + S3

GLUCOSE = "nightscout.glucose"


def expected_ids(day: str) -> set[str]:
    from cascade_nightscout.server import reading

    start, end = day_bounds_ms(day)
    return {reading(t)["_id"] for t in readings_between(start, end, 300_000)}


def test_nightscout_day_lands_its_readings(ns_config: CascadeConfig) -> None:
    result = cascade.run(glucose, "2024-03-01", config=ns_config)
    rows = read_table(ns_config, GLUCOSE)
    assert (result.rows_extracted, result.rows_inserted, result.rows_updated) == (288, 288, 0)
    assert result.table == GLUCOSE and result.branch == "main" and result.partition == "2024-03-01"
    assert result.committed and result.snapshot_id == snapshot_id(ns_config, GLUCOSE)
    assert set(rows.column("_id").to_pylist()) == expected_ids("2024-03-01")
    assert rows.num_rows == 288
    assert rows.column(INGESTED_AT).null_count == 0
    assert len(set(rows.column(INGESTED_AT).to_pylist())) == 1  # one value per run
    assert set(result.phase_seconds) == {"resolve", "extract", "stage", "validate", "merge"}
    assert result.staged_files and result.bytes_staged > 0


def test_same_partition_twice_adds_nothing(ns_config: CascadeConfig) -> None:
    first = cascade.run(glucose, "2024-03-01", config=ns_config)
    before = read_table(ns_config, GLUCOSE)
    second = cascade.run(glucose, "2024-03-01", config=ns_config)
    after = read_table(ns_config, GLUCOSE)
    assert (second.rows_inserted, second.rows_updated, second.rows_unchanged) == (0, 0, 288)
    assert not second.committed and second.snapshot_id == first.snapshot_id
    assert after.sort_by("_id").equals(before.sort_by("_id"))  # ingested-at kept for unchanged rows


def test_second_day_adds_its_rows(ns_config: CascadeConfig) -> None:
    cascade.run(glucose, "2024-03-01", config=ns_config)
    result = cascade.run(glucose, "2024-03-02", config=ns_config)
    rows = read_table(ns_config, GLUCOSE)
    assert result.rows_inserted == 288
    assert set(rows.column("_id").to_pylist()) == expected_ids("2024-03-01") | expected_ids("2024-03-02")
    assert max(Counter(rows.column("_id").to_pylist()).values()) == 1


def test_many_pages_are_followed(ns_config: CascadeConfig, nightscout) -> None:
    nightscout.state.interval_seconds = 30  # 2880 readings a day: three pages of 1000
    try:
        result = cascade.run(glucose, "2024-03-05", config=ns_config)
    finally:
        nightscout.state.interval_seconds = 300
    assert result.rows_inserted == 2880
    assert read_table(ns_config, GLUCOSE).num_rows == 2880


def test_branch_leaves_main_untouched(ns_config: CascadeConfig) -> None:
    cascade.run(glucose, "2024-03-01", config=ns_config)
    main_before = snapshot_id(ns_config, GLUCOSE)
    result = cascade.run(glucose, "2024-03-02", branch="dev", config=ns_config)
    assert result.branch == "dev"
    assert snapshot_id(ns_config, GLUCOSE) == main_before
    assert read_table(ns_config, GLUCOSE).num_rows == 288
    assert read_table(ns_config, GLUCOSE, branch="dev").num_rows == 576


def test_branch_from_run_tag_and_config(ns_config: CascadeConfig) -> None:
    tagged = cascade.run(glucose, "2024-03-01", tags={"cascade/branch": "feature"}, config=ns_config)
    configured = cascade.run(glucose, "2024-03-01", config=dataclasses.replace(ns_config, branch="staging"))
    explicit = cascade.run(glucose, "2024-03-01", branch="x", tags={"cascade/branch": "feature"}, config=ns_config)
    assert (tagged.branch, configured.branch, explicit.branch) == ("feature", "staging", "x")
    assert read_table(ns_config, GLUCOSE).num_rows == 0  # main holds no rows
    assert read_table(ns_config, GLUCOSE, branch="feature").num_rows == 288


# --- assets defined here, on the isolated registry -------------------------------------------------

PEOPLE = Schema(
    NestedField(1, "id", StringType(), required=False),
    NestedField(2, "name", StringType(), required=False),
    NestedField(3, "age", LongType(), required=False),
)


class People(pa.DataFrameModel):
    id: str = pa.Field(nullable=False)
    age: float = pa.Field(ge=0, nullable=True)

    class Config:
        coerce = True


def people_asset(records: dict[str, list[dict[str, object]]], **options: object) -> cascade.CascadeAsset:
    @cascade_ingestion(
        table_name="people", unique_key="id", iceberg_schema=PEOPLE, group="crm", validation_schema=People, **options
    )
    def people(partition_date: str):
        return dlt.resource(records[partition_date], name="people")

    return people


def test_duplicate_keys_in_a_batch_keep_the_last(registry, config: CascadeConfig) -> None:
    asset = people_asset(
        {
            "2024-01-01": [
                {"id": "a", "name": "first", "age": 1},
                {"id": "b", "name": "b", "age": 2},
                {"id": "a", "name": "last", "age": 3},
            ]
        }
    )
    result = cascade.run(asset, "2024-01-01", config=config)
    rows = read_table(config, "crm.people").sort_by("id")
    assert rows.select(["id", "name", "age"]).to_pylist() == [
        {"id": "a", "name": "last", "age": 3},
        {"id": "b", "name": "b", "age": 2},
    ]
    assert (result.rows_extracted, result.rows_deduplicated, result.rows_inserted) == (3, 1, 2)


def test_update_replaces_changed_rows_only(registry, config: CascadeConfig) -> None:
    records = {"2024-01-01": [{"id": "a", "name": "A", "age": 1}, {"id": "b", "name": "B", "age": 2}]}
    asset = people_asset(records)
    cascade.run(asset, "2024-01-01", config=config)
    stamps = dict(zip(*read_table(config, "crm.people").select(["id", INGESTED_AT]).to_pydict().values(), strict=True))
    records["2024-01-01"] = [
        {"id": "a", "name": "A", "age": 1},
        {"id": "b", "name": "B2", "age": 2},
        {"id": "c", "name": "C", "age": 3},
    ]
    result = cascade.run(asset, "2024-01-01", config=config)
    rows = {r["id"]: r for r in read_table(config, "crm.people").to_pylist()}
    assert (result.rows_inserted, result.rows_updated, result.rows_unchanged) == (1, 1, 1)
    assert rows["b"]["name"] == "B2"
    assert rows["a"][INGESTED_AT] == stamps["a"]
    assert rows["b"][INGESTED_AT] > stamps["b"]


def test_composite_key_asset(registry, config: CascadeConfig) -> None:
    records = {
        "2024-01-01": [{"station": "n", "day": "d1", "v": 1}, {"station": "s", "day": "d1", "v": 2}],
        "2024-01-02": [{"station": "n", "day": "d1", "v": 10}, {"station": "n", "day": "d2", "v": 3}],
    }
    schema = Schema(
        NestedField(1, "station", StringType(), required=False),
        NestedField(2, "day", StringType(), required=False),
        NestedField(3, "v", LongType(), required=False),
    )

    @cascade_ingestion(table_name="levels", unique_key=("station", "day"), iceberg_schema=schema, group="hydro")
    def levels(partition_date: str):
        return dlt.resource(records[partition_date], name="levels")

    cascade.run(levels, "2024-01-01", config=config)
    result = cascade.run(levels, "2024-01-02", config=config)
    rows = sorted((r["station"], r["day"], r["v"]) for r in read_table(config, "hydro.levels").to_pylist())
    assert rows == [("n", "d1", 10), ("n", "d2", 3), ("s", "d1", 2)]
    assert (result.rows_inserted, result.rows_updated) == (1, 1)


# --- bad input: a clear error, and the table exactly as it was ----------------------------------------


@pytest.mark.parametrize(
    ("bad_records", "error", "fragments"),
    [
        pytest.param(
            [{"id": "x", "name": "X", "age": -4}],
            ValidationError,
            ["asset 'people', partition 2024-01-02", "column 'age'", "greater_than_or_equal_to(0)", "-4"],
            id="validation",
        ),
        pytest.param(
            [{"id": "x", "name": "X", "age": "forty"}],
            SchemaMismatchError,
            ["asset 'people', partition 2024-01-02", "column 'age'", "record 0 (key {'id': 'x'})", "is not an integer"],
            id="uncastable",
        ),
        pytest.param(
            [{"id": None, "name": "X", "age": 1}],
            NullKeyError,
            ["null unique key column 'id'"],
            id="null-key",
        ),
        pytest.param(
            [{"id": "x", "nickname": "X"}],
            SchemaMismatchError,
            ["['nickname'] are not in the table schema"],
            id="extra-column",
        ),
        pytest.param(
            [{"id": "x", "tags": ["a", "b"]}],
            StagingError,
            ["nested child table 'people__tags'"],
            id="nested-list",
        ),
    ],
)
def test_bad_batch_raises_and_leaves_table(
    registry, config: CascadeConfig, bad_records: list[dict[str, object]], error: type[Exception], fragments: list[str]
) -> None:
    records = {"2024-01-01": [{"id": "a", "name": "A", "age": 1}], "2024-01-02": bad_records}
    asset = people_asset(records)
    good = cascade.run(asset, "2024-01-01", config=config)
    with pytest.raises(error) as caught:
        cascade.run(asset, "2024-01-02", config=config)
    for fragment in fragments:
        assert fragment in str(caught.value)
    assert snapshot_id(config, "crm.people") == good.snapshot_id
    assert read_table(config, "crm.people").select(["id", "name", "age"]).to_pylist() == [
        {"id": "a", "name": "A", "age": 1}
    ]


@pytest.mark.parametrize(
    ("fault", "error", "fragment"),
    [
        pytest.param({"status": 500}, TransientSourceError, "HTTP 500", id="server-error"),
        pytest.param({"status": 401}, SourceError, "HTTP 401", id="unauthorized"),
        pytest.param({"malformed": True}, SourceError, "malformed JSON", id="malformed-json"),
    ],
)
def test_source_failure_raises_and_leaves_table(
    ns_config: CascadeConfig, nightscout, fault: dict[str, object], error: type[Exception], fragment: str
) -> None:
    good = cascade.run(glucose, "2024-03-01", config=ns_config)
    nightscout.fail(**fault)
    with pytest.raises(error) as caught:
        cascade.run(glucose, "2024-03-02", config=ns_config)
    message = str(caught.value)
    assert "asset 'glucose', partition 2024-03-02" in message and fragment in message
    assert "ns-T0ken-for-tests-7f3a" not in message
    assert snapshot_id(ns_config, GLUCOSE) == good.snapshot_id
    assert read_table(ns_config, GLUCOSE).num_rows == 288


def test_wrong_token_is_a_clear_401(ns_config: CascadeConfig) -> None:
    wrong = dataclasses.replace(
        ns_config, plugins={"nightscout": {**ns_config.settings("nightscout"), "token": "nope"}}
    )
    with pytest.raises(SourceError, match=r"HTTP 401 .* unauthorized"):
        cascade.run(glucose, "2024-03-01", config=wrong)
    assert snapshot_id(ns_config, GLUCOSE) is None


def test_failed_run_leaves_no_pipeline_folder(registry, config: CascadeConfig) -> None:
    asset = people_asset({"2024-01-01": [{"id": None}]})
    with pytest.raises(NullKeyError):
        cascade.run(asset, "2024-01-01", config=config)
    assert not list((config.home / "pipelines").glob("*/*/*/run_*"))


def test_merge_counts_match_the_table(ns_config: CascadeConfig) -> None:
    result = cascade.run(glucose, "2024-03-03", config=ns_config)
    rows = read_table(ns_config, GLUCOSE)
    day = rows.filter(pc.equal(pc.strftime(rows.column("date_string"), "%Y-%m-%d"), "2024-03-03"))
    assert day.num_rows == result.rows_inserted == 288


def test_first_runs_racing_on_a_new_catalog_both_land(ns_config: CascadeConfig) -> None:
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(max_workers=4) as pool:  # all four create the namespace and table at once
        results = list(
            pool.map(lambda day: cascade.run(glucose, day, config=ns_config), [f"2024-03-0{d}" for d in range(1, 5)])
        )
    assert [r.rows_inserted for r in results] == [288] * 4
    assert read_table(ns_config, GLUCOSE).num_rows == 4 * 288


def test_runtime_budget_bounds_any_source_in_core(registry, config: CascadeConfig) -> None:
    """No orchestrator needed: a source that outlives max_runtime_seconds fails before commit."""

    @cascade_ingestion(table_name="people", unique_key="id", iceberg_schema=PEOPLE, group="crm", max_runtime_seconds=1)
    def people(partition_date: str):
        @dlt.resource(name="people")
        def slow():
            yield {"id": "a", "name": "Ada", "age": 36}
            time.sleep(1.2)

        return slow()

    with pytest.raises(RunTimeoutError, match=r"asset 'people', partition 2024-01-01: exceeded max_runtime_seconds=1"):
        cascade.run(people, "2024-01-01", config=config)
    assert snapshot_id(config, "crm.people") is None
