"""The table follows the asset: additive changes applied before the merge, breaking ones refused.

Real dlt pipelines into a real SQLite catalog, and again on PostgreSQL + S3 (``--catalogs``).
Each additive change is applied to a table holding data, read back by pyiceberg and by DuckDB
(from the table's current data files), and merges across the change are checked against a dict model.
"""

from __future__ import annotations

import random
from decimal import Decimal
from typing import Any

import dlt
import duckdb
import pytest
from pyiceberg.partitioning import PartitionField, PartitionSpec
from pyiceberg.schema import Schema
from pyiceberg.table import Table
from pyiceberg.transforms import BucketTransform, IdentityTransform
from pyiceberg.types import (
    DecimalType,
    DoubleType,
    FloatType,
    IcebergType,
    IntegerType,
    LongType,
    NestedField,
    StringType,
)

import cascade
from cascade import CascadeConfig, cascade_ingestion
from cascade.catalog import open_catalog
from cascade.errors import SchemaEvolutionError
from cascade.evolution import Allow, ChangeKind, diff_table, evolve_table
from tests.conftest import read_table

# the table follows the asset through catalog commits: again on PostgreSQL + S3
pytestmark = pytest.mark.catalog_sensitive

TABLE = "shop.items"
Records = dict[str, list[dict[str, Any]]]


def schema(*fields: tuple[str, IcebergType, bool]) -> Schema:
    """Field ids from 50 down: the asset's ids are not the table's, so only names can match them."""
    return Schema(
        NestedField(1, "id", StringType(), required=False),
        *(NestedField(50 - i, name, kind, required=required) for i, (name, kind, required) in enumerate(fields)),
    )


def items_asset(
    iceberg_schema: Schema,
    records: Records,
    *,
    key: str | tuple[str, ...] = "id",
    spec: PartitionSpec | None = None,
    calls: list[str] | None = None,
) -> cascade.CascadeAsset:
    @cascade_ingestion(
        table_name="items", unique_key=key, iceberg_schema=iceberg_schema, group="shop", partition_spec=spec
    )
    def items(partition_date: str):
        if calls is not None:
            calls.append(partition_date)
        return dlt.resource(records[partition_date], name="items")

    return items


def load(config: CascadeConfig) -> Table:
    return open_catalog(config).load_table(TABLE)


def pyiceberg_rows(config: CascadeConfig, columns: list[str]) -> dict[str, dict[str, Any]]:
    rows = read_table(config, TABLE).select(columns).to_pylist()
    by_id = {r["id"]: r for r in rows}
    assert len(by_id) == len(rows), "two rows for one key"
    return by_id


def duckdb_rows(config: CascadeConfig, columns: list[str]) -> dict[str, dict[str, Any]]:
    """What DuckDB reads from the table's current data files (old files lack new columns)."""
    table = load(config)
    paths = [task.file.file_path.removeprefix("file://") for task in table.scan().plan_files()]
    if paths[0].startswith("s3://"):
        pytest.skip("DuckDB reads local files here; the shared catalog's files are in S3")
    listed = ", ".join(columns)
    rows = duckdb.sql(f"select {listed} from read_parquet({paths!r}, union_by_name = true)").fetchall()
    by_id = {r[0]: dict(zip(columns, r, strict=True)) for r in rows}
    assert len(by_id) == len(rows), "two rows for one key"
    return by_id


def model(*days: list[dict[str, Any]], columns: list[str]) -> dict[str, dict[str, Any]]:
    """The dict model: each key's last record, columns a record lacks read as null."""
    state: dict[str, dict[str, Any]] = {}
    for records in days:
        for record in records:
            state[record["id"]] = {c: record.get(c) for c in columns}
    return state


# --- additive changes: applied before the merge, readable, merges exact across them --------------------

ADDITIVE: dict[str, tuple[Schema, Schema, list[Any], list[Any], ChangeKind]] = {
    "new-optional-column": (
        schema(("n", LongType(), False)),
        schema(("n", LongType(), False), ("note", StringType(), False)),
        [1, 2],
        [3, 4, 5],
        ChangeKind.ADD_COLUMN,
    ),
    "int-to-long": (
        schema(("n", IntegerType(), False)),
        schema(("n", LongType(), False)),
        [1, 2],
        [2**40, 5, 2**41],
        ChangeKind.WIDEN_TYPE,
    ),
    "float-to-double": (
        schema(("n", FloatType(), False)),
        schema(("n", DoubleType(), False)),
        [1.5, 2.25],
        [0.1, 3.5, 1e300],
        ChangeKind.WIDEN_TYPE,
    ),
    "decimal-precision": (
        schema(("n", DecimalType(6, 2), False)),
        schema(("n", DecimalType(14, 2), False)),
        [Decimal("1.25"), Decimal("9999.99")],
        [Decimal("123456789012.34"), Decimal("2.50"), Decimal("0.01")],
        ChangeKind.WIDEN_TYPE,
    ),
    "required-made-optional": (
        schema(("n", LongType(), True)),
        schema(("n", LongType(), False)),
        [1, 2],
        [None, 7, None],
        ChangeKind.MAKE_OPTIONAL,
    ),
}


@pytest.mark.parametrize("case", list(ADDITIVE), ids=list(ADDITIVE))
def test_additive_change_is_applied_before_the_merge(registry, config: CascadeConfig, case: str) -> None:
    before, after, old_values, new_values, kind = ADDITIVE[case]
    columns = [f.name for f in after.fields]
    day1 = [{"id": "a", "n": old_values[0]}, {"id": "b", "n": old_values[1]}]
    day2 = [{"id": "b", "n": new_values[0], "note": "B"}, {"id": "c", "n": new_values[1], "note": "C"}]
    day3 = [{"id": "a", "n": new_values[2], "note": "A"}, {"id": "c", "n": new_values[1], "note": "C"}]
    if "note" not in columns:
        for record in (*day2, *day3):
            del record["note"]
    records = {"2024-01-01": day1, "2024-01-02": day2, "2024-01-03": day3}
    cascade.run(items_asset(before, records), "2024-01-01", config=config)
    old_schema_id = load(config).schema().schema_id

    evolved = items_asset(after, records)
    assert [c.kind for c in diff_table(load(config), evolved.spec).changes] == [kind]
    second = cascade.run(evolved, "2024-01-02", config=config)
    table = load(config)
    assert table.schema().schema_id != old_schema_id
    assert diff_table(table, evolved.spec).changes == ()
    assert (second.rows_inserted, second.rows_updated, second.rows_unchanged) == (1, 1, 0)
    expected = model(day1, day2, columns=columns)
    assert pyiceberg_rows(config, columns) == expected == duckdb_rows(config, columns)

    # 'a' still lives in a file written before the change: updating it, and re-sending 'c', stay exact
    third = cascade.run(evolved, "2024-01-03", config=config)
    assert (third.rows_inserted, third.rows_updated, third.rows_unchanged) == (0, 1, 1)
    expected = model(day1, day2, day3, columns=columns)
    assert pyiceberg_rows(config, columns) == expected == duckdb_rows(config, columns)


def test_asset_field_ids_need_not_match_the_tables(registry, config: CascadeConfig) -> None:
    """The asset renumbers its fields and adds one: matched by name, the table keeps its ids."""
    records = {"2024-01-01": [{"id": "a", "n": 1, "s": "x"}], "2024-01-02": [{"id": "b", "n": 2, "s": "y", "t": 1.5}]}
    cascade.run(
        items_asset(schema(("n", LongType(), False), ("s", StringType(), False)), records), "2024-01-01", config=config
    )
    ids = {f.name: f.field_id for f in load(config).schema().fields}
    renumbered = Schema(
        NestedField(7, "t", DoubleType(), required=False),
        NestedField(3, "s", StringType(), required=False),
        NestedField(2, "id", StringType(), required=False),
        NestedField(1, "n", LongType(), required=False),
    )
    cascade.run(items_asset(renumbered, records), "2024-01-02", config=config)
    after = {f.name: f.field_id for f in load(config).schema().fields}
    assert {name: after[name] for name in ids} == ids
    assert after["t"] > max(ids.values())
    assert pyiceberg_rows(config, ["id", "n", "s", "t"]) == {
        "a": {"id": "a", "n": 1, "s": "x", "t": None},
        "b": {"id": "b", "n": 2, "s": "y", "t": 1.5},
    }


# --- breaking changes: refused before the source is called, nothing committed -------------------------

BASE = schema(("n", LongType(), False), ("s", StringType(), False))
BY_N = PartitionSpec(PartitionField(source_id=50, field_id=1000, transform=IdentityTransform(), name="n"))

BREAKING: dict[str, tuple[dict[str, Any], list[str]]] = {
    "removed-column": (
        {"iceberg_schema": schema(("n", LongType(), False))},
        ["column 's' (string) removed from iceberg_schema", "cascade schema apply items --allow drop-column"],
    ),
    "narrowed-type": (
        {"iceberg_schema": schema(("n", IntegerType(), False), ("s", StringType(), False))},
        ["column 'n' narrowed from long to int", "Iceberg cannot narrow a type"],
    ),
    "incompatible-type": (
        {"iceberg_schema": schema(("n", StringType(), False), ("s", StringType(), False))},
        ["column 'n' changed type from long to string", "Iceberg cannot change long to string"],
    ),
    "new-required-column": (
        {"iceberg_schema": schema(("n", LongType(), False), ("s", StringType(), False), ("t", StringType(), True))},
        ["column 't' added as required (string)", "declare it required=False"],
    ),
    "made-required": (
        {"iceberg_schema": schema(("n", LongType(), False), ("s", StringType(), True))},
        ["column 's' made required", "keep it optional"],
    ),
    "unique-key": (
        {"key": "s"},
        ["unique_key changed from ('id',) to ('s',)", "cascade schema apply items --allow unique-key"],
    ),
    "partition-spec": (
        {"spec": BY_N},
        ["partition_spec changed from unpartitioned to identity(n)", "--allow partition-spec"],
    ),
}


@pytest.mark.parametrize("case", list(BREAKING), ids=list(BREAKING))
def test_breaking_change_is_refused_with_nothing_committed(registry, config: CascadeConfig, case: str) -> None:
    options, fragments = BREAKING[case]
    records = {"2024-01-01": [{"id": "a", "n": 1, "s": "x"}], "2024-01-02": [{"id": "b", "n": 2, "s": "y", "t": "T"}]}
    calls: list[str] = []
    first = cascade.run(items_asset(BASE, records, calls=calls), "2024-01-01", config=config)
    before = load(config).metadata_location
    changed = items_asset(
        options.get("iceberg_schema", BASE),
        records,
        key=options.get("key", "id"),
        spec=options.get("spec"),
        calls=calls,
    )
    with pytest.raises(SchemaEvolutionError) as caught:
        cascade.run(changed, "2024-01-02", config=config)
    message = str(caught.value)
    assert message.startswith("asset 'items', partition 2024-01-02, table shop.items: ")
    assert "nothing was committed" in message
    for fragment in fragments:
        assert fragment in message
    assert not caught.value.transient
    assert calls == ["2024-01-01"]  # refused before the source was called
    table = load(config)
    assert table.metadata_location == before and table.current_snapshot().snapshot_id == first.snapshot_id
    assert read_table(config, TABLE).select(["id", "n", "s"]).to_pylist() == [{"id": "a", "n": 1, "s": "x"}]


def test_decimal_scale_change_is_refused(registry, config: CascadeConfig) -> None:
    """pyiceberg 0.12 would let a decimal change its scale; Iceberg reads old files wrongly then."""
    records = {"2024-01-01": [{"id": "a", "d": Decimal("1.25")}], "2024-01-02": []}
    cascade.run(items_asset(schema(("d", DecimalType(9, 2), False)), records), "2024-01-01", config=config)
    before = load(config).metadata_location
    with pytest.raises(SchemaEvolutionError, match=r"column 'd' changed type from decimal\(9, 2\) to decimal\(12, 3\)"):
        cascade.run(items_asset(schema(("d", DecimalType(12, 3), False)), records), "2024-01-02", config=config)
    assert load(config).metadata_location == before


def test_every_breaking_change_is_named_at_once(registry, config: CascadeConfig) -> None:
    records = {"2024-01-01": [{"id": "a", "n": 1, "s": "x"}], "2024-01-02": []}
    cascade.run(items_asset(BASE, records), "2024-01-01", config=config)
    changed = items_asset(
        schema(("n", IntegerType(), False), ("t", StringType(), True), ("u", StringType(), False)),
        records,
        key="n",
        spec=BY_N,
    )
    with pytest.raises(SchemaEvolutionError) as caught:
        cascade.run(changed, "2024-01-02", config=config)
    problems = caught.value.problems
    assert [p.split(":")[0] for p in problems] == [
        "column 'n' narrowed from long to int",
        "column 't' added as required (string)",
        "column 's' (string) removed from iceberg_schema",
        "unique_key changed from ('id',) to ('n',)",
        "partition_spec changed from unpartitioned to identity(n)",
    ]
    assert "column 'u'" not in str(caught.value)  # additive, and not applied: the run was refused
    assert "u" not in load(config).schema().column_names


# --- a key change on purpose: only when the stored rows are unique under the new key -------------------


def test_key_change_with_colliding_rows_is_refused_with_their_count(registry, config: CascadeConfig) -> None:
    day1 = [{"id": "a", "n": 1, "s": "x"}, {"id": "b", "n": 2, "s": "x"}, {"id": "c", "n": 3, "s": "x"}]
    day1 += [{"id": "d", "n": 4, "s": "y"}, {"id": "e", "n": 5, "s": None}]
    cascade.run(items_asset(BASE, {"2024-01-01": day1}), "2024-01-01", config=config)
    table = load(config)
    before = table.metadata_location
    rekeyed = items_asset(BASE, {}, key="s")
    with pytest.raises(SchemaEvolutionError) as caught:
        evolve_table(table, rekeyed.spec, where="asset 'items', table shop.items", allow=[Allow.UNIQUE_KEY])
    assert caught.value.problems[:2] == (
        "3 stored row(s) on branch 'main' collide under unique_key ('s',)",
        "1 stored row(s) on branch 'main' have a null in unique_key ('s',)",
    )
    table = load(config)
    assert table.metadata_location == before and table.properties["cascade.unique-key"] == "id"


def test_key_change_on_unique_rows_is_recorded_and_merges_on_the_new_key(registry, config: CascadeConfig) -> None:
    day1 = [{"id": "a", "n": 1, "s": "x"}, {"id": "b", "n": 2, "s": "y"}]
    day2 = [{"id": "a2", "n": 10, "s": "x"}, {"id": "c", "n": 3, "s": "z"}]
    records = {"2024-01-01": day1, "2024-01-02": day2}
    cascade.run(items_asset(BASE, records), "2024-01-01", config=config)
    rekeyed = items_asset(BASE, records, key="s")
    _, applied = evolve_table(load(config), rekeyed.spec, where="asset 'items'", allow=[Allow.UNIQUE_KEY])
    assert [c.kind for c in applied.changes] == [ChangeKind.UNIQUE_KEY]
    assert load(config).properties["cascade.unique-key"] == "s"
    result = cascade.run(rekeyed, "2024-01-02", config=config)
    assert (result.rows_inserted, result.rows_updated) == (1, 1)
    rows = {r["s"]: (r["id"], r["n"]) for r in read_table(config, TABLE).to_pylist()}
    assert rows == {"x": ("a2", 10), "y": ("b", 2), "z": ("c", 3)}


# --- a partition spec change on purpose: merges stay exact across specs --------------------------------

NUMBERED = schema(("p", LongType(), False), ("v", LongType(), False))
BY_P = PartitionSpec(PartitionField(source_id=50, field_id=1000, transform=IdentityTransform(), name="p"))
BY_ID_BUCKET = PartitionSpec(PartitionField(source_id=1, field_id=1000, transform=BucketTransform(3), name="id_b"))


def test_partition_spec_evolution_keeps_merges_exact_across_specs(registry, config: CascadeConfig) -> None:
    """Unpartitioned, then by p, then by bucket(id): each merge equals the dict model of (p, id)."""
    rng = random.Random(13)
    records: Records = {}
    state: dict[tuple[int, str], int] = {}
    days = iter(f"2024-02-{d:02d}" for d in range(1, 29))
    specs: list[PartitionSpec | None] = [None, BY_P, BY_ID_BUCKET]
    for number, spec in enumerate(specs):
        asset = items_asset(NUMBERED, records, key=("p", "id"), spec=spec)
        if number:
            _, applied = evolve_table(load(config), asset.spec, where="asset 'items'", allow=[Allow.PARTITION_SPEC])
            assert [c.kind for c in applied.changes] == [ChangeKind.PARTITION_SPEC]
        for _ in range(3):
            day = next(days)
            batch = [{"id": f"k{rng.randrange(40)}", "p": rng.randrange(3), "v": rng.randrange(3)} for _ in range(10)]
            records[day] = batch
            last = {(r["p"], r["id"]): r["v"] for r in batch}
            inserted = sum(k not in state for k in last)
            updated = sum(k in state and state[k] != v for k, v in last.items())
            result = cascade.run(asset, day, config=config)
            state.update(last)
            assert (result.rows_inserted, result.rows_updated) == (inserted, updated), day
            rows = read_table(config, TABLE).to_pylist()
            assert len(rows) == len(state) and {(r["p"], r["id"]): r["v"] for r in rows} == state, day
    table = load(config)
    assert len(table.specs()) == 3 and table.spec().fields[0].name == "id_b"
    spec_ids = {task.file.spec_id for task in table.scan().plan_files()}
    assert len(spec_ids) > 1  # the table really holds files of several specs


def test_removed_column_dropped_on_purpose_and_its_name_not_reused(registry, config: CascadeConfig) -> None:
    records = {"2024-01-01": [{"id": "a", "n": 1, "s": "x"}], "2024-01-02": [{"id": "b", "n": 2}]}
    cascade.run(items_asset(BASE, records), "2024-01-01", config=config)
    narrower = items_asset(schema(("n", LongType(), False)), records)
    _, applied = evolve_table(load(config), narrower.spec, where="asset 'items'", allow=[Allow.DROP_COLUMN])
    assert [(c.kind, c.subject) for c in applied.changes] == [(ChangeKind.REMOVE_COLUMN, "s")]
    cascade.run(narrower, "2024-01-02", config=config)
    assert pyiceberg_rows(config, ["id", "n"]) == {"a": {"id": "a", "n": 1}, "b": {"id": "b", "n": 2}}
    assert "s" not in load(config).schema().column_names

    # 'a' is still stored in a file holding the old 's' = "x": a new 's' must not read it back
    with pytest.raises(SchemaEvolutionError, match="column 's' \\(string\\) added with the name of a dropped column"):
        cascade.run(items_asset(BASE, records), "2024-01-03", config=config)


def test_runs_racing_to_apply_the_same_change_both_land(registry, config: CascadeConfig) -> None:
    """Both evolve the table at once: the loser re-diffs, finds nothing left to do, and merges."""
    from concurrent.futures import ThreadPoolExecutor

    days = [f"2024-03-0{d}" for d in range(1, 5)]
    records = {day: [{"id": f"{day}-{i}", "n": i, "note": day} for i in range(3)] for day in days}
    first = items_asset(schema(("n", LongType(), False)), {"2024-01-01": [{"id": "a", "n": 0}]})
    cascade.run(first, "2024-01-01", config=config)
    evolved = items_asset(schema(("n", LongType(), False), ("note", StringType(), False)), records)
    with ThreadPoolExecutor(max_workers=4) as pool:
        results = list(pool.map(lambda day: cascade.run(evolved, day, config=config), days))
    assert [r.rows_inserted for r in results] == [3] * 4
    rows = pyiceberg_rows(config, ["id", "note"])
    assert len(rows) == 13 and rows["a"]["note"] is None and rows["2024-03-04-2"]["note"] == "2024-03-04"
    assert [f.name for f in load(config).schema().fields].count("note") == 1
