"""The Dagster adapter in process: branch runs, run bounds, translator parity, checks, backfills, loading,
quarantine and write-audit-publish checks."""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Iterator
from pathlib import Path

import dagster as dg
import dlt
import pandas as pd
import pandera.pandas as pa
import polars as pl
import pyarrow
import pytest
from pyiceberg.partitioning import PartitionField, PartitionSpec
from pyiceberg.schema import Schema
from pyiceberg.transforms import IdentityTransform
from pyiceberg.types import DateType, LongType, NestedField, StringType

import cascade_testplugin.hooks as recorded
from cascade import CascadeConfig, cascade_ingestion
from cascade.catalog import open_catalog
from cascade.errors import ConfigurationError, UnknownAssetError
from cascade_dagster import CascadeResource, CascadeTranslator, build_definitions
from cascade_dagster._compat import PARTITIONED_CHECKS
from cascade_nightscout import glucose
from tests.conftest import NIGHTSCOUT_TOKEN, read_table, snapshot_id

GLUCOSE_KEY = dg.AssetKey(["nightscout", "glucose"])
RANGE_START, RANGE_END = "dagster/asset_partition_range_start", "dagster/asset_partition_range_end"


@pytest.fixture
def ns_environ(nightscout, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NIGHTSCOUT_URL", nightscout.url)
    monkeypatch.setenv("NIGHTSCOUT_TOKEN", NIGHTSCOUT_TOKEN)


@pytest.fixture
def instance() -> Iterator[dg.DagsterInstance]:
    # Dagster's in-memory instance, the one execute_in_process uses by default: the same SQL event
    # log, in memory. instance_for_test migrates SQLite files for each test and each run (the
    # module took 36 s with it, 26 s with this); the on-disk storage is test_dagster_webserver's.
    with dg.DagsterInstance.ephemeral() as instance:
        yield instance


def glucose_defs(config: CascadeConfig, **kwargs: object) -> dg.Definitions:
    return build_definitions([glucose], config=CascadeResource(home=str(config.home)), **kwargs)  # type: ignore[arg-type]


def run(
    defs: dg.Definitions, instance: dg.DagsterInstance, partition: str | tuple[str, str], **kwargs: object
) -> dg.ExecuteInProcessResult:
    job = defs.resolve_implicit_global_asset_job_def()
    if isinstance(partition, tuple):
        tags = {RANGE_START: partition[0], RANGE_END: partition[1], **kwargs.pop("tags", {})}  # type: ignore[dict-item]
        return job.execute_in_process(instance=instance, tags=tags, raise_on_error=False, **kwargs)  # type: ignore[arg-type]
    return job.execute_in_process(instance=instance, partition_key=partition, raise_on_error=False, **kwargs)  # type: ignore[arg-type]


def values(metadata: dict[str, dg.MetadataValue]) -> dict[str, object]:
    return {k: v.value for k, v in metadata.items()}


# -- 1. branch runs observe, never materialize main --------------------------------------------


def test_branch_run_observes_and_leaves_main_status(
    config: CascadeConfig, ns_environ: None, instance: dg.DagsterInstance
) -> None:
    defs = glucose_defs(config)
    assert run(defs, instance, "2024-05-01").success
    branch = run(defs, instance, "2024-05-02", tags={"cascade/branch": "dev"})
    assert branch.success
    assert branch.asset_materializations_for_node("nightscout__glucose") == []
    assert branch.get_asset_check_evaluations() == []
    [observation] = branch.asset_observations_for_node("nightscout__glucose")
    assert observation.partition == "2024-05-02"
    assert values(observation.metadata)["branch"] == "dev"
    assert values(observation.metadata)["rows_inserted"] == 288
    assert instance.get_materialized_partitions(GLUCOSE_KEY) == {"2024-05-01"}
    assert read_table(config, "nightscout.glucose", branch="dev").num_rows == 576


# -- 2. every run carries dagster/max_runtime ---------------------------------------------------


def test_default_asset_job_run_is_tagged_with_the_runtime(
    config: CascadeConfig, ns_environ: None, instance: dg.DagsterInstance
) -> None:
    single = run(glucose_defs(config), instance, "2024-05-01")
    assert instance.get_run_by_id(single.run_id).tags["dagster/max_runtime"] == "300"
    ranged = run(glucose_defs(config), instance, ("2024-05-02", "2024-05-04"))
    assert ranged.success
    assert instance.get_run_by_id(ranged.run_id).tags["dagster/max_runtime"] == "900"  # 3 partitions x 300 s


def test_asset_job_keeps_its_own_runtime_tag(
    registry, config: CascadeConfig, ns_environ: None, instance: dg.DagsterInstance
) -> None:
    defs = build_definitions([glucose, people_asset(set())], config=CascadeResource(home=str(config.home)))
    done = defs.resolve_job_def("glucose_job").execute_in_process(instance=instance, partition_key="2024-05-01")
    assert instance.get_run_by_id(done.run_id).tags["dagster/max_runtime"] == "300"


# -- 3. translator parity and the resolved table ------------------------------------------------


class EveryField(CascadeTranslator):
    def get_asset_spec(self, spec):  # type: ignore[no-untyped-def]
        return (
            super()
            .get_asset_spec(spec)
            .replace_attributes(
                key=dg.AssetKey(["lake", spec.table_name]),
                group_name="lake",
                description="overridden",
                owners=["team:data", "ana@example.com"],
                tags={"tier": "gold"},
                code_version="7",
                automation_condition=dg.AutomationCondition.eager(),
                deps=[dg.AssetKey(["upstream", "devices"])],
                kinds={"iceberg", "python"},
            )
            .merge_attributes(metadata={"owner_note": "kept"})
        )

    def get_pool(self, spec):  # type: ignore[no-untyped-def]
        return "one_writer"

    def get_backfill_policy(self, spec):  # type: ignore[no-untyped-def]
        return dg.BackfillPolicy.multi_run(4)


def test_translator_override_reaches_every_field(config: CascadeConfig) -> None:
    defs = glucose_defs(config, translator=EveryField())
    key = dg.AssetKey(["lake", "glucose"])
    node = defs.get_repository_def().asset_graph.get(key)
    assert node.group_name == "lake"
    assert node.description == "overridden"
    assert node.owners == ["team:data", "ana@example.com"]
    assert node.tags["tier"] == "gold"
    assert node.code_version == "7"
    assert node.automation_condition == dg.AutomationCondition.eager()
    assert node.parent_keys == {dg.AssetKey(["upstream", "devices"])}
    assert node.kinds == {"iceberg", "python"}
    assert node.metadata["owner_note"] == "kept"
    assert node.metadata["dagster/table_name"] == "nightscout.glucose"
    assets_def = defs.get_assets_def(key)
    assert assets_def.op.pool == "one_writer"
    assert assets_def.backfill_policy == dg.BackfillPolicy.multi_run(4)


def test_default_pool_and_backfill_policy(config: CascadeConfig) -> None:
    assets_def = glucose_defs(config).get_assets_def(GLUCOSE_KEY)
    assert assets_def.op.pool == "cascade__nightscout__glucose"
    assert assets_def.backfill_policy == dg.BackfillPolicy.single_run()


def test_keys_and_table_name_follow_namespaces(
    config: CascadeConfig, ns_environ: None, instance: dg.DagsterInstance, tmp_path: Path, monkeypatch
) -> None:
    toml = tmp_path / "cascade.toml"
    toml.write_text('[namespaces]\nnightscout = "health"\n')
    monkeypatch.setenv("CASCADE_CONFIG", str(toml))
    defs = glucose_defs(config)
    key = dg.AssetKey(["health", "glucose"])
    assert defs.get_repository_def().asset_graph.get(key).metadata["dagster/table_name"] == "health.glucose"
    done = run(defs, instance, "2024-05-01")
    assert done.success
    [materialization] = done.asset_materializations_for_node("health__glucose")
    assert values(materialization.metadata)["dagster/table_name"] == "health.glucose"
    assert read_table(config, "health.glucose").num_rows == 288


# -- 4. checks: partitioned, blocking, honest about "no validation" -----------------------------

PEOPLE = Schema(
    NestedField(1, "id", StringType(), required=False),
    NestedField(2, "age", LongType(), required=False),
    NestedField(3, "day", DateType(), required=False),
)
BY_DAY = PartitionSpec(PartitionField(source_id=3, field_id=1000, transform=IdentityTransform(), name="day"))


class People(pa.DataFrameModel):
    age: float = pa.Field(ge=0, nullable=True)

    class Config:
        coerce = True


def people_asset(bad_days: set[str], *, validated: bool = True):  # type: ignore[no-untyped-def]
    @cascade_ingestion(
        table_name="people",
        unique_key="id",
        iceberg_schema=PEOPLE,
        partition_spec=BY_DAY,
        group="crm",
        validation_schema=People if validated else None,
        max_retries=0,
        start_date=dt.date(2024, 5, 1),
    )
    def people(partition_date: str):
        age = -1 if partition_date in bad_days else 30
        day = dt.date.fromisoformat(partition_date)
        return dlt.resource([{"id": f"{partition_date}-{n}", "age": age, "day": day} for n in range(3)], name="people")

    return people


def people_defs(config: CascadeConfig, asset) -> dg.Definitions:  # type: ignore[no-untyped-def]
    return build_definitions([asset], config=CascadeResource(home=str(config.home)))


def test_check_is_partitioned_and_blocking(registry, config: CascadeConfig, instance: dg.DagsterInstance) -> None:
    defs = people_defs(config, people_asset({"2024-05-02"}))
    [check_spec] = defs.get_assets_def(dg.AssetKey(["crm", "people"])).check_specs
    assert check_spec.blocking
    assert run(defs, instance, "2024-05-01").success
    failed = run(defs, instance, "2024-05-02")
    assert not failed.success
    [good] = run(defs, instance, "2024-05-01").get_asset_check_evaluations()
    [bad] = failed.get_asset_check_evaluations()
    assert (good.passed, bad.passed) == (True, False)
    assert values(bad.metadata)["partition"] == "2024-05-02"
    if PARTITIONED_CHECKS:
        assert (good.partition, bad.partition) == ("2024-05-01", "2024-05-02")
    assert bad.blocking


def test_no_validation_never_reports_passed(registry, config: CascadeConfig, instance: dg.DagsterInstance) -> None:
    defs = people_defs(config, people_asset(set(), validated=False))
    [check_spec] = defs.get_assets_def(dg.AssetKey(["crm", "people"])).check_specs
    assert not check_spec.blocking
    done = run(defs, instance, "2024-05-01")
    assert done.success
    [check] = done.get_asset_check_evaluations()
    assert (check.passed, check.severity) == (False, dg.AssetCheckSeverity.WARN)
    assert "Nothing was validated" in (check.description or "")
    assert values(check.metadata)["validated"] is False


# -- 5. the schedule never asks for a day before start_date -------------------------------------


@pytest.mark.parametrize(
    ("tick", "expected"),
    [
        pytest.param("2024-01-01T00:00", ["2024-01-01"], id="first-tick-of-start-date"),
        pytest.param("2024-01-02T00:00", ["2024-01-02", "2024-01-01"], id="first-tick-of-next-day"),
        pytest.param("2023-12-31T12:00", [], id="before-start-date"),
    ],
)
def test_schedule_starts_at_start_date(config: CascadeConfig, tick: str, expected: list[str]) -> None:
    defs = glucose_defs(config)
    schedule = defs.resolve_schedule_def("glucose_schedule")
    at = dt.datetime.fromisoformat(tick).replace(tzinfo=dt.UTC)
    with dg.build_schedule_context(scheduled_execution_time=at, repository_def=defs.get_repository_def()) as context:
        data = schedule.evaluate_tick(context)
    assert [r.partition_key for r in data.run_requests or []] == expected
    if not expected:
        assert data.skip_message == "asset 'glucose': partitions start on 2024-01-01"


# -- 6. a plugin that fails to import is logged, or fatal ---------------------------------------


def test_broken_plugin_is_logged(config: CascadeConfig, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.ERROR):
        defs = build_definitions(config=CascadeResource(home=str(config.home)))
    assert defs.get_repository_def().asset_graph.has(GLUCOSE_KEY)
    [record] = [r for r in caplog.records if "cascade-testplugin-broken" in r.getMessage()]
    assert record.getMessage() == (
        "Cascade plugin 'cascade-testplugin-broken' failed to load, its assets are missing: "
        "ModuleNotFoundError: No module named 'cascade_dependency_that_does_not_exist'"
    )


def test_broken_plugin_is_fatal_when_strict(config: CascadeConfig, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ConfigurationError, match="plugin 'cascade-testplugin-broken' failed to load"):
        build_definitions(config=CascadeResource(home=str(config.home)), strict_plugins=True)
    monkeypatch.setenv("CASCADE_DAGSTER_STRICT_PLUGINS", "1")
    with pytest.raises(ConfigurationError, match="CASCADE_DAGSTER_STRICT_PLUGINS"):
        build_definitions(config=CascadeResource(home=str(config.home)))


# -- 7. from the table back to Dagster ----------------------------------------------------------


def test_snapshot_records_dagster_run_and_metadata_links_it(
    config: CascadeConfig, ns_environ: None, instance: dg.DagsterInstance
) -> None:
    done = run(glucose_defs(config), instance, "2024-05-01")
    assert done.success
    table = open_catalog(config).load_table("nightscout.glucose")
    summary = table.current_snapshot().summary.additional_properties
    assert summary["dagster.run-id"] == done.run_id
    assert summary["dagster.step-key"] == "nightscout__glucose"
    [materialization] = done.asset_materializations_for_node("nightscout__glucose")
    metadata = values(materialization.metadata)
    assert metadata["dagster/uri"] == table.location()
    assert metadata["dagster/table_name"] == "nightscout.glucose"
    assert metadata["dagster/partition_row_count"] == 288
    assert metadata["snapshot_id"] == str(snapshot_id(config, "nightscout.glucose"))


# -- 8. single-run backfills --------------------------------------------------------------------


def test_range_run_commits_each_partition_with_its_own_events(
    registry, config: CascadeConfig, instance: dg.DagsterInstance
) -> None:
    defs = people_defs(config, people_asset(set()))
    done = run(defs, instance, ("2024-05-01", "2024-05-08"))
    assert done.success
    days = [f"2024-05-0{d}" for d in range(1, 9)]
    materializations = done.asset_materializations_for_node("crm__people")
    assert [m.partition for m in materializations] == days
    assert [values(m.metadata)["partition"] for m in materializations] == days
    assert {values(m.metadata)["dagster/partition_row_count"] for m in materializations} == {3}
    checks = done.get_asset_check_evaluations()
    assert [values(c.metadata)["partition"] for c in checks] == days
    assert all(c.passed for c in checks)
    if PARTITIONED_CHECKS:
        assert [c.partition for c in checks] == days
    table = open_catalog(config).load_table("crm.people")
    assert [s.summary.additional_properties["cascade.partition"] for s in table.snapshots()] == days
    assert instance.get_materialized_partitions(dg.AssetKey(["crm", "people"])) == set(days)


def test_range_run_failure_keeps_earlier_partitions(
    registry, config: CascadeConfig, instance: dg.DagsterInstance
) -> None:
    defs = people_defs(config, people_asset({"2024-05-04"}))
    failed = run(defs, instance, ("2024-05-01", "2024-05-06"))
    assert not failed.success
    committed = ["2024-05-01", "2024-05-02", "2024-05-03"]
    assert [m.partition for m in failed.asset_materializations_for_node("crm__people")] == committed
    assert instance.get_materialized_partitions(dg.AssetKey(["crm", "people"])) == set(committed)
    [bad] = failed.get_asset_check_evaluations()
    assert (bad.passed, values(bad.metadata)["partition"]) == (False, "2024-05-04")
    [failure] = [e for e in failed.all_events if e.event_type_value == "STEP_FAILURE"]
    message = failure.event_specific_data.error.message
    assert "partition 2024-05-04 of asset 'people' failed; committed before it: " + ", ".join(committed) in message
    assert "not run: 2024-05-05, 2024-05-06" in message
    assert read_table(config, "crm.people").num_rows == 9


# -- 9. downstream assets load the table --------------------------------------------------------


def test_downstream_reads_its_partition_as_arrow_pandas_and_polars(
    config: CascadeConfig, ns_environ: None, instance: dg.DagsterInstance
) -> None:
    partitions = dg.DailyPartitionsDefinition(start_date="2024-01-01", end_offset=1, timezone="UTC")
    seen: dict[str, object] = {}

    @dg.asset(partitions_def=partitions, ins={"glucose": dg.AssetIn(GLUCOSE_KEY)})
    def as_arrow(glucose: pyarrow.Table) -> None:
        seen["arrow"] = glucose

    @dg.asset(partitions_def=partitions, ins={"glucose": dg.AssetIn(GLUCOSE_KEY)})
    def as_pandas(glucose: pd.DataFrame) -> None:
        seen["pandas"] = glucose

    @dg.asset(partitions_def=partitions, ins={"glucose": dg.AssetIn(GLUCOSE_KEY)})
    def as_polars(glucose: pl.DataFrame) -> None:
        seen["polars"] = glucose

    @dg.asset(
        partitions_def=partitions,
        ins={"glucose": dg.AssetIn(GLUCOSE_KEY, metadata={"cascade/branch": "dev"})},
    )
    def from_branch(glucose: pyarrow.Table) -> None:
        seen["branch"] = glucose

    base = glucose_defs(config)
    defs = dg.Definitions.merge(base, dg.Definitions(assets=[as_arrow, as_pandas, as_polars, from_branch]))
    assert run(base, instance, "2024-05-01").success
    assert run(base, instance, "2024-05-02", tags={"cascade/branch": "dev"}).success
    done = run(defs, instance, "2024-05-02", asset_selection=[as_arrow.key, as_pandas.key, from_branch.key])
    assert done.success
    assert isinstance(seen["arrow"], pyarrow.Table) and seen["arrow"].num_rows == 0  # main lacks 05-02
    assert isinstance(seen["pandas"], pd.DataFrame) and len(seen["pandas"]) == 0
    assert isinstance(seen["branch"], pyarrow.Table) and seen["branch"].num_rows == 288
    first = run(defs, instance, "2024-05-01", asset_selection=[as_arrow.key, as_pandas.key, as_polars.key])
    assert first.success
    arrow = seen["arrow"]
    assert isinstance(arrow, pyarrow.Table) and arrow.num_rows == 288
    days = {t.date().isoformat() for t in arrow.column("date_string").to_pylist()}
    assert days == {"2024-05-01"}
    assert len(seen["pandas"]) == 288  # type: ignore[arg-type]
    assert isinstance(seen["polars"], pl.DataFrame) and seen["polars"].height == 288


# -- 11. a dg project adds Cascade assets with a YAML file --------------------------------------


def test_component_loads_from_a_dg_project(
    config: CascadeConfig, ns_environ: None, instance: dg.DagsterInstance, tmp_path: Path, monkeypatch
) -> None:
    defs_folder = tmp_path / "project" / "cascade_project" / "defs"
    (defs_folder / "cascade").mkdir(parents=True)
    (defs_folder.parent / "__init__.py").write_text("")
    (defs_folder / "__init__.py").write_text("")
    (defs_folder / "cascade" / "defs.yaml").write_text(
        f"type: cascade_dagster.CascadeAssetsComponent\nattributes:\n  assets: [glucose]\n  home: {config.home}\n"
    )
    (tmp_path / "project" / "pyproject.toml").write_text(
        '[project]\nname = "cascade-project"\nversion = "0"\n'
        '[tool.dg]\ndirectory_type = "project"\n[tool.dg.project]\nroot_module = "cascade_project"\n'
    )
    monkeypatch.syspath_prepend(str(tmp_path / "project"))
    defs = dg.load_from_defs_folder(path_within_project=tmp_path / "project")
    assert list(defs.get_repository_def().asset_graph.get_all_asset_keys()) == [GLUCOSE_KEY]
    assert run(defs, instance, "2024-05-01").success
    assert read_table(config, "nightscout.glucose").num_rows == 288


def test_component_names_unknown_assets(config: CascadeConfig) -> None:
    from cascade_dagster import CascadeAssetsComponent

    component = CascadeAssetsComponent(assets=["glucose", "nope"], home=str(config.home))
    with pytest.raises(UnknownAssetError, match=r"no asset named nope \(installed: .*glucose"):
        component.build_defs(None)  # type: ignore[arg-type]  # the context is not read


# -- 1b. publishing a branch materializes what it brought ---------------------------------------


def test_publish_job_materializes_what_the_branch_brought(
    config: CascadeConfig, ns_environ: None, instance: dg.DagsterInstance
) -> None:
    defs = glucose_defs(config)
    assert run(defs, instance, "2024-05-01").success
    assert run(defs, instance, ("2024-05-02", "2024-05-03"), tags={"cascade/branch": "dev"}).success
    assert instance.get_materialized_partitions(GLUCOSE_KEY) == {"2024-05-01"}
    published = defs.resolve_job_def("glucose_publish").execute_in_process(
        instance=instance, run_config={"ops": {"nightscout__glucose__publish": {"config": {"branch": "dev"}}}}
    )
    assert published.success
    events = [e.event_specific_data.materialization for e in published.all_events if e.is_step_materialization]
    assert [(m.partition, values(m.metadata)["published_from"]) for m in events] == [
        ("2024-05-02", "dev"),
        ("2024-05-03", "dev"),
    ]
    assert instance.get_materialized_partitions(GLUCOSE_KEY) == {"2024-05-01", "2024-05-02", "2024-05-03"}
    assert read_table(config, "nightscout.glucose").num_rows == 3 * 288


# -- 12. quarantine and write-audit-publish as asset checks -------------------------------------

THINGS = Schema(NestedField(1, "id", StringType(), required=True), NestedField(2, "n", LongType(), required=False))
THINGS_KEY = dg.AssetKey(["q", "things"])
NO_NEGATIVE = "select count(*) = 0 from batch where n < 0"
UNIQUE_IDS = 'select count(*) = count(distinct id) from "table"'
AUDIT_CHECKS = ["audit_no_negative", "audit_unique_ids", "cascade_audit"]


class NonNegative(pa.DataFrameModel):
    n: int = pa.Field(ge=0, nullable=True)


@pytest.fixture
def audit_plugin() -> Iterator[None]:
    """The installed test plugin's cascade_audit hook: passing, unless a test says otherwise."""
    recorded.AUDIT_REASON, recorded.RAISE_IN = None, None
    yield
    recorded.AUDIT_REASON, recorded.RAISE_IN = None, None


def things_asset(batches: dict[str, list[object]], calls: list[str] | None = None, **policy: object):  # type: ignore[no-untyped-def]
    """``q.things``: each partition's records from ``batches``; an exception leading a batch is raised, once."""

    @cascade_ingestion(
        table_name="things",
        unique_key="id",
        iceberg_schema=THINGS,
        group="q",
        validation_schema=NonNegative,
        start_date=dt.date(2024, 5, 1),
        retry_delay_seconds=0,
        **policy,  # type: ignore[arg-type]
    )
    def things(partition_date: str):
        if calls is not None:
            calls.append(partition_date)
        batch = batches.get(partition_date, [])
        if batch and isinstance(batch[0], Exception):
            raise batch.pop(0)
        return dlt.resource(batch, name="things")

    return things


def checks_by_name(done: dg.ExecuteInProcessResult) -> dict[str, dg.AssetCheckEvaluation]:
    return {c.check_name: c for c in done.get_asset_check_evaluations()}


def step_events(done: dg.ExecuteInProcessResult) -> list[str]:
    return [e.event_type_value for e in done.all_events if e.step_key is not None and "STEP" in e.event_type_value]


def stored_things(config: CascadeConfig, branch: str = "main") -> dict[str, int]:
    return {r["id"]: r["n"] for r in read_table(config, "q.things", branch).to_pylist()}


def test_quarantine_within_the_threshold_is_a_warning_naming_the_count(
    registry, config: CascadeConfig, instance: dg.DagsterInstance
) -> None:
    days = {
        "2024-05-01": [{"id": "a", "n": 1}, {"id": "b", "n": -1}, {"id": "c", "n": 3}, {"id": "d", "n": 4}],
        "2024-05-02": [{"id": "e", "n": 5}],
    }
    defs = people_defs(config, things_asset(days, on_invalid="quarantine", max_invalid_fraction=0.25))
    specs = {s.name: s for s in defs.get_assets_def(THINGS_KEY).check_specs}
    assert sorted(specs) == ["quarantine", "validation"]
    assert not specs["quarantine"].blocking
    done = run(defs, instance, "2024-05-01")
    assert done.success
    [materialization] = done.asset_materializations_for_node("q__things")
    assert values(materialization.metadata)["rows_quarantined"] == 1
    assert values(materialization.metadata)["quarantine_table"] == "q.things__quarantine"
    checks = checks_by_name(done)
    assert checks["validation"].passed
    held = checks["quarantine"]
    assert (held.passed, held.severity) == (False, dg.AssetCheckSeverity.WARN)
    assert (held.description or "").startswith("1 of 4 row(s) quarantined in q.things__quarantine")
    assert values(held.metadata) == {
        "partition": "2024-05-01",
        "rows_quarantined": 1,
        "rows_seen": 4,
        "invalid_fraction": 0.25,
        "max_invalid_fraction": 0.25,
        "failed_checks": {"n: greater_than_or_equal_to(0)": 1},
        "quarantine_table": "q.things__quarantine",
    }
    assert stored_things(config) == {"a": 1, "c": 3, "d": 4}
    clean = checks_by_name(run(defs, instance, "2024-05-02"))["quarantine"]
    assert (clean.passed, clean.description, values(clean.metadata)["rows_quarantined"]) == (
        True,
        "No row was quarantined",
        0,
    )
    ranged = run(defs, instance, ("2024-05-01", "2024-05-02"))
    assert ranged.success
    held_per_day = [c for c in ranged.get_asset_check_evaluations() if c.check_name == "quarantine"]
    assert [(values(c.metadata)["partition"], c.passed) for c in held_per_day] == [
        ("2024-05-01", False),
        ("2024-05-02", True),
    ]
    assert held_per_day[0].severity == dg.AssetCheckSeverity.WARN
    if PARTITIONED_CHECKS:
        assert [c.partition for c in held_per_day] == ["2024-05-01", "2024-05-02"]


def test_quarantine_above_the_threshold_fails_the_run_without_retries(
    registry, config: CascadeConfig, instance: dg.DagsterInstance
) -> None:
    calls: list[str] = []
    bad = [{"id": "a", "n": 1}, {"id": "b", "n": -1}, {"id": "c", "n": -2}]
    # the first attempt meets a transient outage (retried), the second the bad batch (terminal)
    days: dict[str, list[object]] = {"2024-05-01": [ConnectionError("connection reset"), *bad]}
    asset = things_asset(days, calls, on_invalid="quarantine", max_invalid_fraction=0.5, max_retries=3)
    done = run(people_defs(config, asset), instance, "2024-05-01")
    assert not done.success
    assert calls == ["2024-05-01", "2024-05-01"]
    assert step_events(done).count("STEP_UP_FOR_RETRY") == 1  # the outage's, and none after the terminal error
    [failure] = [e for e in done.all_events if e.event_type_value == "STEP_FAILURE"]
    assert (
        "2 of 3 row(s) are invalid (66.67%), above max_invalid_fraction=0.5"
        in failure.event_specific_data.error.message
    )
    [held] = [c for c in done.get_asset_check_evaluations() if c.check_name == "quarantine"]
    assert (held.passed, held.severity) == (False, dg.AssetCheckSeverity.ERROR)
    assert {k: v for k, v in values(held.metadata).items() if k != "failed_checks"} == {
        "partition": "2024-05-01",
        "rows_quarantined": 2,
        "rows_seen": 3,
        "invalid_fraction": 0.666667,
        "max_invalid_fraction": 0.5,
        "quarantine_table": "q.things__quarantine",
        "committed": False,
    }
    assert done.asset_materializations_for_node("q__things") == []
    assert snapshot_id(config, "q.things") is None
    assert snapshot_id(config, "q.things__quarantine") is None


def test_passing_audits_are_blocking_checks_reported_with_the_materialization(
    registry, config: CascadeConfig, instance: dg.DagsterInstance, audit_plugin: None
) -> None:
    days = {"2024-05-01": [{"id": "a", "n": 1}, {"id": "b", "n": 2}]}
    audits = {"no_negative": NO_NEGATIVE, "unique_ids": UNIQUE_IDS}
    defs = people_defs(config, things_asset(days, publish="audit", audits=audits))
    specs = {s.name: s for s in defs.get_assets_def(THINGS_KEY).check_specs}
    assert sorted(specs) == [*AUDIT_CHECKS, "validation"]
    assert all(specs[name].blocking for name in AUDIT_CHECKS)
    done = run(defs, instance, "2024-05-01")
    assert done.success
    main = snapshot_id(config, "q.things")
    [materialization] = done.asset_materializations_for_node("q__things")
    assert values(materialization.metadata)["audited_snapshot_id"] == str(main)
    assert values(materialization.metadata)["audits"] == ["no_negative", "unique_ids"]
    checks = checks_by_name(done)
    assert all(checks[name].passed for name in AUDIT_CHECKS)
    audited = values(checks["audit_no_negative"].metadata)
    assert audited["snapshot_id"] == str(main)
    assert (audited["target_branch"], audited["published"], audited["sql"]) == ("main", True, NO_NEGATIVE)
    assert audited["audit_branch"] not in open_catalog(config).load_table("q.things").metadata.refs  # dropped
    assert stored_things(config) == {"a": 1, "b": 2}


def test_a_failing_audit_fails_its_check_with_error_and_leaves_main_unchanged(
    registry, config: CascadeConfig, instance: dg.DagsterInstance, audit_plugin: None
) -> None:
    days = {"2024-05-01": [{"id": "a", "n": 1}], "2024-05-02": [{"id": "b", "n": -7}], "2024-05-03": []}
    audits = {"no_negative": NO_NEGATIVE, "unique_ids": UNIQUE_IDS}
    # validate=False: the negative row must reach the audit, not fail the Pandera model first
    asset = things_asset(days, publish="audit", audits=audits, max_retries=2, validate=False)
    defs = people_defs(config, asset)
    assert run(defs, instance, "2024-05-01").success
    main = snapshot_id(config, "q.things")
    failed = run(defs, instance, "2024-05-02")
    assert not failed.success
    assert "STEP_UP_FOR_RETRY" not in step_events(failed)
    checks = checks_by_name(failed)
    assert sorted(checks) == AUDIT_CHECKS  # the validation check never ran: nothing was validated
    bad = checks["audit_no_negative"]
    assert (bad.passed, bad.severity, bad.blocking) == (False, dg.AssetCheckSeverity.ERROR, True)
    metadata = values(bad.metadata)
    branch = metadata["audit_branch"]
    assert isinstance(branch, str) and branch.startswith("cascade-audit-")
    assert metadata["reason"] == "returned [(False,)], not one row holding true"
    assert (metadata["target_branch"], metadata["published"], metadata["partition"]) == ("main", False, "2024-05-02")
    assert f"on audit branch {branch!r}; branch 'main' was not changed" in (bad.description or "")
    assert checks["audit_unique_ids"].passed and checks["cascade_audit"].passed
    assert snapshot_id(config, "q.things") == main
    assert stored_things(config) == {"a": 1}
    assert metadata["snapshot_id"] == str(snapshot_id(config, "q.things", branch))  # kept for inspection
    assert stored_things(config, branch) == {"a": 1, "b": -7}
    assert instance.get_materialized_partitions(THINGS_KEY) == {"2024-05-01"}

    recorded.AUDIT_REASON = "row count below the expected 288"
    days["2024-05-03"] = [{"id": "c", "n": 3}]
    by_plugin = checks_by_name(run(defs, instance, "2024-05-03"))
    hook = by_plugin["cascade_audit"]
    assert (hook.passed, hook.severity) == (False, dg.AssetCheckSeverity.ERROR)
    assert values(hook.metadata)["failed_plugins"] == {"cascade-testplugin": "row count below the expected 288"}
    assert by_plugin["audit_no_negative"].passed and by_plugin["audit_unique_ids"].passed

    recorded.AUDIT_REASON, recorded.RAISE_IN = None, "cascade_audit"
    broken = checks_by_name(run(defs, instance, "2024-05-03"))
    assert sorted(broken) == ["cascade_audit"]
    assert broken["cascade_audit"].severity == dg.AssetCheckSeverity.ERROR
    assert "hook cascade_audit of plugin 'cascade-testplugin' failed" in (broken["cascade_audit"].description or "")
    assert snapshot_id(config, "q.things") == main


def test_the_publish_tag_audits_a_direct_asset(
    registry, config: CascadeConfig, instance: dg.DagsterInstance, audit_plugin: None
) -> None:
    days = {"2024-05-01": [{"id": "a", "n": -1}], "2024-05-02": [{"id": "b", "n": -2}], "2024-05-03": []}
    asset = things_asset(days, audits={"no_negative": NO_NEGATIVE}, max_retries=0, validate=False)  # see above
    defs = people_defs(config, asset)
    checks = ["audit_no_negative", "cascade_audit"]
    assert sorted(s.name for s in defs.get_assets_def(THINGS_KEY).check_specs) == [*checks, "validation"]
    direct = run(defs, instance, "2024-05-01")
    assert direct.success  # published directly: the audits are not run
    assert sorted(checks_by_name(direct)) == ["validation"]
    main = snapshot_id(config, "q.things")

    tagged = run(defs, instance, "2024-05-02", tags={"cascade/publish": "audit"})
    assert not tagged.success
    assert not checks_by_name(tagged)["audit_no_negative"].passed
    assert snapshot_id(config, "q.things") == main

    days["2024-05-03"] = [{"id": "c", "n": 3}]
    run_config = {"ops": {"q__things": {"config": {"publish": "audit"}}}}
    configured = run(defs, instance, "2024-05-03", run_config=run_config)
    assert configured.success
    assert [checks_by_name(configured)[name].passed for name in checks] == [True, True]
    assert stored_things(config) == {"a": -1, "c": 3}

    typo = run(defs, instance, "2024-05-03", tags={"cascade/publish": "audited"})
    assert not typo.success
    [failure] = [e for e in typo.all_events if e.event_type_value == "STEP_FAILURE"]
    message = failure.event_specific_data.error.message
    assert "asset 'things': publish='audited' is not one of ['direct', 'audit']; nothing was run" in message
