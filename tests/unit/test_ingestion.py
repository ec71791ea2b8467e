"""``@cascade_ingestion``: the spec it builds, and every decoration-time mistake."""

from __future__ import annotations

import dataclasses
from typing import Any

import pandera.pandas as pa
import pytest
from pyiceberg.partitioning import PartitionField, PartitionSpec
from pyiceberg.schema import Schema
from pyiceberg.transforms import DayTransform, IdentityTransform
from pyiceberg.types import ListType, LongType, NestedField, StringType, StructType, TimestamptzType, UUIDType

from cascade import INGESTED_AT, cascade_ingestion
from cascade.errors import AssetDefinitionError, DuplicateAssetError

SCHEMA = Schema(
    NestedField(1, "id", StringType(), required=False),
    NestedField(2, "at", TimestamptzType(), required=False),
    NestedField(3, "n", LongType(), required=False),
)
BY_DAY = PartitionSpec(PartitionField(source_id=2, field_id=1000, transform=DayTransform(), name="at_day"))


class Model(pa.DataFrameModel):
    id: str


def declare(**overrides: Any):
    params: dict[str, Any] = {"table_name": "things", "unique_key": "id", "iceberg_schema": SCHEMA, "group": "demo"}
    params.update(overrides)

    @cascade_ingestion(**params)
    def things(partition_date: str) -> list[dict[str, str]]:
        """Things, daily."""
        return [{"id": partition_date}]

    return things


def test_spec_carries_every_parameter(registry) -> None:
    asset = declare(
        unique_key=("id", "n"),
        partition_spec=BY_DAY,
        cron="0 */1 * * *",
        freshness_hours=(1, 24),
        validation_schema=Model,
        max_runtime_seconds=60,
        max_retries=5,
        retry_delay_seconds=2,
        validate=False,
    )
    spec = asset.spec
    assert (spec.name, spec.table_name, spec.group, spec.namespace, spec.identifier) == (
        "things",
        "things",
        "demo",
        "demo",
        "demo.things",
    )
    assert spec.unique_key == ("id", "n")
    assert spec.partition_spec == BY_DAY
    assert (spec.cron, spec.freshness_hours) == ("0 */1 * * *", (1.0, 24.0))
    assert (spec.max_runtime_seconds, spec.max_retries, spec.retry_delay_seconds, spec.validate) == (60, 5, 2, False)
    assert spec.validation_schema is Model
    assert spec.description == "Things, daily."
    assert spec.table_schema.column_names == ["id", "at", "n", INGESTED_AT]
    with pytest.raises(dataclasses.FrozenInstanceError):
        spec.table_name = "other"  # type: ignore[misc]


def test_decorated_function_stays_callable(registry) -> None:
    asset = declare()
    assert asset("2024-01-02") == [{"id": "2024-01-02"}]
    assert asset.__name__ == "things"
    assert registry.get("things") is asset
    assert registry.get("demo.things") is asset


def test_defaults(registry) -> None:
    spec = declare().spec
    assert (spec.max_runtime_seconds, spec.max_retries, spec.retry_delay_seconds, spec.validate) == (300, 3, 30, True)
    assert spec.cron is None and spec.freshness_hours is None and spec.partition_spec.is_unpartitioned()


@pytest.mark.parametrize(
    ("overrides", "parameter", "fragment"),
    [
        pytest.param({"unique_key": "missing"}, "unique_key", "['missing'] not in iceberg_schema", id="unknown-key"),
        pytest.param({"unique_key": ("id", "id")}, "unique_key", "twice", id="repeated-key"),
        pytest.param({"unique_key": ()}, "unique_key", "at least one column", id="empty-key"),
        pytest.param({"unique_key": None}, "unique_key", "column name or a tuple", id="none-key"),
        pytest.param({"unique_key": ""}, "unique_key", "non-empty string", id="blank-key"),
        pytest.param({"unique_key": 7}, "unique_key", "column name or a tuple", id="number-key"),
        pytest.param({"unique_key": "userId"}, "unique_key", "'userId' becomes 'user_id'", id="camel-key"),
        pytest.param({"unique_key": ("my col",)}, "unique_key", "'my col' becomes 'my_col'", id="spaced-key"),
        pytest.param(
            {"iceberg_schema": Schema(NestedField(1, "id", StringType()), NestedField(2, "dateString", StringType()))},
            "iceberg_schema",
            "'dateString' becomes 'date_string'",
            id="camel-column",
        ),
        pytest.param({"max_runtime_seconds": float("nan")}, "max_runtime_seconds", "positive", id="nan-runtime"),
        pytest.param({"max_runtime_seconds": float("inf")}, "max_runtime_seconds", "positive", id="inf-runtime"),
        pytest.param({"retry_delay_seconds": float("nan")}, "retry_delay_seconds", ">= 0", id="nan-delay"),
        pytest.param({"freshness_hours": (float("nan"), 24)}, "freshness_hours", "warn_hours", id="nan-freshness"),
        pytest.param({"freshness_hours": (1, float("inf"))}, "freshness_hours", "warn_hours", id="inf-freshness"),
        pytest.param({"cron": "every hour"}, "cron", "not a valid cron", id="bad-cron"),
        pytest.param({"cron": "61 * * * *"}, "cron", "not a valid cron", id="cron-out-of-range"),
        pytest.param({"freshness_hours": (24, 1)}, "freshness_hours", "must not exceed", id="warn-over-fail"),
        pytest.param({"freshness_hours": (1,)}, "freshness_hours", "(warn_hours, fail_hours)", id="freshness-shape"),
        pytest.param({"freshness_hours": (0, 1)}, "freshness_hours", "positive", id="freshness-zero"),
        pytest.param({"max_runtime_seconds": 0}, "max_runtime_seconds", "positive", id="zero-runtime"),
        pytest.param({"max_runtime_seconds": -5}, "max_runtime_seconds", "positive", id="negative-runtime"),
        pytest.param({"max_retries": -1}, "max_retries", ">= 0", id="negative-retries"),
        pytest.param({"max_retries": 1.5}, "max_retries", "whole number", id="fractional-retries"),
        pytest.param({"retry_delay_seconds": -1}, "retry_delay_seconds", ">= 0", id="negative-delay"),
        pytest.param({"table_name": "Bad-Name"}, "table_name", "lower-case", id="table-name"),
        pytest.param({"table_name": "../escape"}, "table_name", "lower-case", id="table-path-escape"),
        pytest.param({"group": "a.b"}, "group", "lower-case", id="group-dot"),
        pytest.param({"iceberg_schema": {"id": "string"}}, "iceberg_schema", "pyiceberg Schema", id="schema-type"),
        pytest.param({"validation_schema": dict}, "validation_schema", "DataFrameModel", id="model-type"),
        pytest.param({"validate": "yes"}, "validate", "True or False", id="validate-type"),
        pytest.param({"start_date": "yesterday"}, "start_date", "YYYY-MM-DD", id="start-date"),
        pytest.param(
            {"partition_spec": PartitionSpec(PartitionField(99, 1000, IdentityTransform(), "nope"))},
            "partition_spec",
            "source id 99",
            id="partition-missing-field",
        ),
        pytest.param(
            {"partition_spec": PartitionSpec(PartitionField(1, 1000, DayTransform(), "id_day"))},
            "partition_spec",
            "cannot apply",
            id="partition-bad-transform",
        ),
    ],
)
def test_mistakes_fail_at_decoration_naming_asset_and_parameter(
    registry, overrides: dict[str, Any], parameter: str, fragment: str
) -> None:
    with pytest.raises(AssetDefinitionError) as caught:
        declare(**overrides)
    assert caught.value.asset == "things"
    assert caught.value.parameter == parameter
    assert f"asset 'things': parameter {parameter!r}" in str(caught.value)
    assert fragment in str(caught.value)
    assert "things" not in registry.by_name


def test_reserved_column_is_refused(registry) -> None:
    schema = Schema(NestedField(1, "id", StringType()), NestedField(2, INGESTED_AT, TimestamptzType()))
    with pytest.raises(AssetDefinitionError, match="added by Cascade"):
        declare(iceberg_schema=schema)


@pytest.mark.parametrize(
    ("column", "named"),
    [
        pytest.param(NestedField(4, "u", UUIDType(), required=False), "['u']", id="column"),
        pytest.param(
            NestedField(4, "s", StructType(NestedField(5, "u", UUIDType(), required=False)), required=False),
            "['s.u']",
            id="in-a-struct",
        ),
        pytest.param(
            NestedField(4, "l", ListType(5, UUIDType(), element_required=False), required=False),
            "['l.element']",
            id="list-element",
        ),
    ],
)
def test_uuid_columns_are_refused_at_decoration_naming_them(registry, column: NestedField, named: str) -> None:
    """No value of any spelling could land in one (Arrow's compute functions do not take the type)."""
    schema = Schema(*SCHEMA.fields, column)
    with pytest.raises(AssetDefinitionError) as refused:
        declare(iceberg_schema=schema)
    assert f"parameter 'iceberg_schema': column(s) {named}: Cascade cannot store Iceberg uuid columns yet" in str(
        refused.value
    )
    assert "StringType()" in str(refused.value)


def test_two_assets_on_one_table_clash(registry) -> None:
    declare()

    with pytest.raises(DuplicateAssetError, match=r"table 'demo\.things' is claimed twice"):

        @cascade_ingestion(table_name="things", unique_key="id", iceberg_schema=SCHEMA, group="demo")
        def other(partition_date: str) -> list[dict[str, str]]:
            return []
