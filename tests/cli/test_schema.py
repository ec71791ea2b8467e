"""``cascade schema diff`` and ``cascade schema apply``, in process on a real catalog."""

from __future__ import annotations

import json
from pathlib import Path

import dlt
import pytest
from pyiceberg.partitioning import PartitionField, PartitionSpec
from pyiceberg.schema import Schema
from pyiceberg.transforms import IdentityTransform
from pyiceberg.types import LongType, NestedField, StringType

import cascade
from cascade import CascadeConfig, cascade_ingestion
from cascade.catalog import open_catalog
from tests.conftest import read_table

V1 = Schema(
    NestedField(1, "id", StringType(), required=False),
    NestedField(2, "p", LongType(), required=False),
    NestedField(3, "v", LongType(), required=False),
)
V2 = Schema(*V1.fields, NestedField(4, "note", StringType(), required=False))
BY_P = PartitionSpec(PartitionField(source_id=2, field_id=1000, transform=IdentityTransform(), name="p"))
Records = dict[str, list[dict[str, object]]]


@pytest.fixture
def cli(cli, config: CascadeConfig, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):  # type: ignore[no-untyped-def]
    """The ``cascade`` command's view of ``config``: a cascade.toml in the working folder, no plugins."""
    (tmp_path / "cascade.toml").write_text(f'[cascade]\nhome = "{config.home}"\n')
    monkeypatch.setenv("CASCADE_DISABLE_PLUGIN_AUTOLOAD", "1")
    return cli


def items(records: Records, schema: Schema = V1, key: str | tuple[str, ...] = "id", spec: PartitionSpec | None = None):
    @cascade_ingestion(table_name="items", unique_key=key, iceberg_schema=schema, group="shop", partition_spec=spec)
    def items(partition_date: str):
        return dlt.resource(records[partition_date], name="items")

    return items


def state(config: CascadeConfig) -> dict[str, tuple[int, int]]:
    rows = read_table(config, "shop.items").to_pylist()
    found = {r["id"]: (r["p"], r["v"]) for r in rows}
    assert len(found) == len(rows), "two rows for one key"
    return found


def test_diff_shows_both_sides_and_every_change(registry, config: CascadeConfig, cli) -> None:
    records: Records = {"2024-01-01": [{"id": "a", "p": 1, "v": 1}]}
    cascade.run(items(records), "2024-01-01", config=config)
    items(records, schema=V2, key=("id", "p"), spec=BY_P)

    done = cli("schema", "diff", "items", "--json")
    assert done.exit_code == 0, done.output
    diff = json.loads(done.stdout)
    assert (diff["table"], diff["table_exists"]) == ("shop.items", True)
    assert (diff["table_unique_key"], diff["asset_unique_key"]) == (["id"], ["id", "p"])
    assert (diff["table_partition_spec"], diff["asset_partition_spec"]) == ("unpartitioned", "identity(p)")
    assert [c["name"] for c in diff["table_schema"]] == ["id", "p", "v", "_cascade_ingested_at"]
    assert [(c["kind"], c["subject"], c["additive"], c["allow"]) for c in diff["changes"]] == [
        ("add-column", "note", True, None),
        ("unique-key", "unique_key", False, "unique-key"),
        ("partition-spec", "partition_spec", False, "partition-spec"),
    ]

    text = cli("schema", "diff", "items")
    assert text.exit_code == 0, text.output
    assert "additive column 'note' added (string, optional): applied automatically" in text.stdout
    assert "breaking unique_key changed from ('id',) to ('id', 'p')" in text.stdout
    assert "cascade schema apply items --allow partition-spec" in text.stdout


def test_diff_before_the_first_run_and_of_an_unknown_asset(registry, cli) -> None:
    items({})
    done = cli("schema", "diff", "items", "--json")
    assert done.exit_code == 0 and json.loads(done.stdout)["table_exists"] is False
    unknown = cli("schema", "diff", "nope")
    assert unknown.exit_code == 2 and "no asset named 'nope'" in unknown.stderr


def test_allow_takes_the_changes_diff_names_in_any_case(registry, cli) -> None:  # type: ignore[no-untyped-def]
    items({})
    unknown = cli("schema", "apply", "items", "--allow", "everything")
    assert unknown.exit_code == 2
    assert "'everything' is not one of partition-spec, unique-key, drop-column" in unknown.stderr
    upper = cli("schema", "apply", "items", "--allow", "Partition-Spec", "--json")
    assert upper.json()["table_exists"] is False


def test_apply_refuses_what_is_not_allowed_and_commits_nothing(registry, config: CascadeConfig, cli) -> None:
    records: Records = {"2024-01-01": [{"id": "a", "p": 1, "v": 1}]}
    cascade.run(items(records), "2024-01-01", config=config)
    before = open_catalog(config).load_table("shop.items").metadata_location
    items(records, schema=V2, key=("id", "p"), spec=BY_P)

    done = cli("schema", "apply", "items", "--allow", "partition-spec")
    assert done.exit_code == 1
    assert "asset 'items', table shop.items: the asset no longer fits its table; nothing was committed" in done.stderr
    assert "unique_key changed from ('id',) to ('id', 'p')" in done.stderr
    assert "partition_spec" not in done.stderr  # allowed, so not refused
    table = open_catalog(config).load_table("shop.items")
    assert table.metadata_location == before and "note" not in table.schema().column_names


def test_key_change_with_colliding_rows_is_refused_with_their_count(registry, config: CascadeConfig, cli) -> None:
    day = [{"id": "a", "p": 1, "v": 1}, {"id": "b", "p": 1, "v": 2}, {"id": "c", "p": 2, "v": 3}]
    cascade.run(items({"2024-01-01": day}), "2024-01-01", config=config)
    before = open_catalog(config).load_table("shop.items").metadata_location
    items({}, key="p")
    done = cli("schema", "apply", "items", "--allow", "unique-key")
    assert done.exit_code == 1
    assert "2 stored row(s) on branch 'main' collide under unique_key ('p',)" in done.stderr
    assert open_catalog(config).load_table("shop.items").metadata_location == before


def test_spec_change_applied_keeps_merges_exact_across_specs(registry, config: CascadeConfig, cli) -> None:
    """Before and after `schema apply --allow partition-spec`, every merge equals the dict model."""
    records: Records = {
        "2024-01-01": [{"id": f"k{i}", "p": i % 3, "v": 0} for i in range(9)],
        "2024-01-02": [{"id": "k9", "p": 0, "v": 1}, {"id": "k10", "p": 1, "v": 1}],  # a second old-spec file
        # after the change: an update in the first old-spec file, a no-op in the second, a new key
        "2024-01-03": [{"id": "k2", "p": 2, "v": 2}, {"id": "k9", "p": 0, "v": 1}, {"id": "k11", "p": 1, "v": 2}],
        # an update in the second old-spec file (the first was rewritten with the new spec), a no-op in a new one
        "2024-01-04": [{"id": "k10", "p": 1, "v": 3}, {"id": "k2", "p": 2, "v": 2}],
    }
    model: dict[str, tuple[int, int]] = {}
    asset = items(records, key=("id", "p"))
    for day in ("2024-01-01", "2024-01-02"):
        cascade.run(asset, day, config=config)
        model.update({r["id"]: (r["p"], r["v"]) for r in records[day]})
        assert state(config) == model

    asset = items(records, key=("id", "p"), spec=BY_P)
    done = cli("schema", "apply", "items", "--allow", "partition-spec", "--json")
    assert done.exit_code == 0, done.output
    assert [c["kind"] for c in json.loads(done.stdout)["changes"]] == ["partition-spec"]
    table = open_catalog(config).load_table("shop.items")
    assert [f.name for f in table.spec().fields] == ["p"] and len(table.specs()) == 2

    counts = {"2024-01-03": (1, 1, 1), "2024-01-04": (0, 1, 1)}
    specs_read = {"2024-01-03": {0, 1}, "2024-01-04": {1}}
    for day in ("2024-01-03", "2024-01-04"):
        result = cascade.run(asset, day, config=config)
        model.update({r["id"]: (r["p"], r["v"]) for r in records[day]})
        assert (result.rows_inserted, result.rows_updated, result.rows_unchanged) == counts[day]
        assert state(config) == model
        files = open_catalog(config).load_table("shop.items").scan().plan_files()
        assert {task.file.spec_id for task in files} == specs_read[day]  # files of both specs, then only the new

    again = cli("schema", "apply", "items")
    assert again.exit_code == 0 and "nothing to apply" in again.stdout


# --- cascade list shows the table after [namespaces]; two assets on one table are refused ------------


def test_list_shows_the_resolved_table_and_refuses_two_owners(registry, cli, tmp_path: Path) -> None:
    items({})

    @cascade_ingestion(table_name="items", unique_key="id", iceberg_schema=V1, group="store")
    def store_items(partition_date: str):
        return dlt.resource([], name="items")

    config_file = tmp_path / "cascade.toml"
    config_file.write_text(config_file.read_text() + '[namespaces]\nshop = "raw_shop"\n')
    done = cli("list", "--json")
    assert done.exit_code == 0, done.output
    assert {a["asset"]: a["table"] for a in json.loads(done.stdout)["assets"]} == {
        "items": "raw_shop.items",
        "store_items": "store.items",
    }

    config_file.write_text(config_file.read_text() + 'store = "raw_shop"\n')
    refused = cli("list")
    assert refused.exit_code == 1
    assert "table 'raw_shop.items' is claimed twice (after [namespaces])" in refused.stderr
    assert "asset 'items' (group 'shop')" in refused.stderr and "asset 'store_items' (group 'store')" in refused.stderr
