"""Hook plugins: the installed test plugin (``cascade.hooks`` entry point) and the run history."""

from __future__ import annotations

from collections.abc import Iterator

import cascade_runlog.plugin
import pyarrow as pa
import pytest
import structlog

import cascade
import cascade.expiry
import cascade_testplugin.hooks as recorded
from cascade import CascadeConfig
from cascade.errors import CommitVetoedError, HookError, SourceError
from cascade.plugins import hooks
from cascade_nightscout import glucose
from tests.conftest import read_table, snapshot_id
from tests.planted import runlog

pytestmark = pytest.mark.catalog_sensitive  # hooks around catalog commits: again on PostgreSQL + S3

__all__ = ["runlog"]


@pytest.fixture(autouse=True)
def reset_test_plugin() -> Iterator[None]:
    hooks()  # loaded first: once loaded, the plugin hears of every asset already registered
    recorded.CALLS.clear()
    recorded.VETO = recorded.RAISE_IN = recorded.DROP_WHERE = None
    yield
    recorded.VETO = recorded.RAISE_IN = recorded.DROP_WHERE = None


def hook_names() -> list[str]:
    return [name for name, _ in recorded.CALLS]


def test_installed_hook_plugin_is_loaded_by_entry_point() -> None:
    assert hooks().manager.has_plugin("cascade-testplugin")


def test_hooks_are_called_in_order_with_their_arguments(ns_config: CascadeConfig) -> None:
    result = cascade.run(glucose, "2024-03-01", branch="dev", config=ns_config)
    assert hook_names() == [
        "cascade_run",
        "cascade_config_loaded",
        "cascade_run_started",
        "cascade_after_extract",
        "cascade_after_validation",
        "cascade_before_commit",
        "cascade_after_commit",
    ]
    calls = dict(recorded.CALLS)
    assert calls["cascade_config_loaded"] == {"home": str(ns_config.home)}
    assert calls["cascade_run_started"] == {"asset": "glucose", "partition": "2024-03-01", "branch": "dev"}
    assert calls["cascade_after_extract"] == {"rows": 288}
    assert calls["cascade_after_validation"] == {"passed": True, "rows": 288}
    assert calls["cascade_before_commit"] == {"inserted": 288, "updated": 0}
    assert calls["cascade_after_commit"] == {"inserted": 288, "snapshot_id": result.snapshot_id}


def test_failed_run_calls_run_failed(ns_config: CascadeConfig, nightscout) -> None:
    nightscout.fail(status=401)
    with pytest.raises(SourceError):
        cascade.run(glucose, "2024-03-01", config=ns_config)
    assert hook_names() == ["cascade_run", "cascade_config_loaded", "cascade_run_started", "cascade_run_failed"]
    assert dict(recorded.CALLS)["cascade_run_failed"] == {"error": "SourceError"}


def test_veto_before_commit_leaves_the_table(ns_config: CascadeConfig) -> None:
    first = cascade.run(glucose, "2024-03-01", config=ns_config)
    recorded.VETO = "audit: readings must be reviewed"
    with pytest.raises(CommitVetoedError) as caught:
        cascade.run(glucose, "2024-03-02", config=ns_config)
    assert caught.value.plugin == "cascade-testplugin"
    assert "commit vetoed by plugin 'cascade-testplugin': audit: readings must be reviewed" in str(caught.value)
    assert snapshot_id(ns_config, "nightscout.glucose") == first.snapshot_id
    assert hook_names()[-1] == "cascade_run_failed"


def test_after_extract_may_drop_records(ns_config: CascadeConfig) -> None:
    recorded.DROP_WHERE = ("direction", "Flat")
    result = cascade.run(glucose, "2024-03-01", config=ns_config)
    rows = read_table(ns_config, "nightscout.glucose")
    assert "Flat" not in set(rows.column("direction").to_pylist())
    assert result.rows_extracted == rows.num_rows < 288


def test_failing_shaping_hook_aborts_naming_the_plugin(ns_config: CascadeConfig) -> None:
    recorded.RAISE_IN = "cascade_after_extract"
    with pytest.raises(HookError) as caught:
        cascade.run(glucose, "2024-03-01", config=ns_config)
    assert "hook cascade_after_extract of plugin 'cascade-testplugin' failed: RuntimeError" in str(caught.value)
    assert snapshot_id(ns_config, "nightscout.glucose") is None


def test_failing_observer_changes_nothing(ns_config: CascadeConfig) -> None:
    recorded.RAISE_IN = "cascade_after_commit"
    with structlog.testing.capture_logs() as logs:
        result = cascade.run(glucose, "2024-03-01", config=ns_config)
    assert result.committed
    assert read_table(ns_config, "nightscout.glucose").num_rows == 288
    [failure] = [entry for entry in logs if entry["event"] == "hook failed"]
    assert (failure["plugin"], failure["hook"], failure["error"]) == (
        "cascade-testplugin",
        "cascade_after_commit",
        "RuntimeError",
    )


def test_run_history_records_successes_and_failures(runlog: None, ns_config: CascadeConfig, nightscout) -> None:
    ok = cascade.run(glucose, "2024-03-01", config=ns_config)
    nightscout.fail(status=500)
    with pytest.raises(cascade.CascadeError):
        cascade.run(glucose, "2024-03-02", config=ns_config)
    runs = read_table(ns_config, "cascade.runs").sort_by("finished_at").to_pylist()
    assert [(r["asset"], r["partition"], r["status"]) for r in runs] == [
        ("glucose", "2024-03-01", "succeeded"),
        ("glucose", "2024-03-02", "failed"),
    ]
    assert (runs[0]["run_id"], runs[0]["rows_inserted"], runs[0]["snapshot_id"]) == (ok.run_id, 288, ok.snapshot_id)
    assert runs[0]["duration_seconds"] > 0
    assert runs[1]["error_class"] == "TransientSourceError"
    assert "HTTP 500" in runs[1]["error_message"]
    assert isinstance(read_table(ns_config, "cascade.runs"), pa.Table)


def test_the_run_log_keeps_its_history_bounded(ns_config: CascadeConfig, monkeypatch: pytest.MonkeyPatch) -> None:
    """A snapshot per run would grow the log's metadata, read by every append and every status,
    for as long as Cascade runs; the log expires its history as an asset's table does, and merges
    its manifests so a reader opens a handful."""
    monkeypatch.setattr(cascade.expiry, "LEAST_MAX_SNAPSHOTS", 5)
    monkeypatch.setattr(cascade.expiry, "EXPIRY_SLACK", 3)
    table = cascade_runlog.plugin.runs_table(ns_config)
    table.transaction().set_properties({cascade.expiry.MAX_SNAPSHOTS: "5"}).commit_transaction()
    most = 0
    for n in range(20):  # past the limit and its slack twice
        cascade_runlog.plugin.append_record(table, {"run_id": f"run-{n}", "asset": "a", "status": "succeeded"})
        most = max(most, len(table.metadata.snapshots))
    assert 5 < most <= 5 + 3
    current = table.current_snapshot()
    assert current is not None and len(current.manifests(table.io)) <= 10  # merged once ten are listed
    assert sorted(read_table(ns_config, "cascade.runs")["run_id"].to_pylist()) == sorted(f"run-{n}" for n in range(20))


def test_a_run_log_created_before_its_properties_gets_them_with_its_next_row(ns_config: CascadeConfig) -> None:
    catalog = cascade.open_catalog(ns_config)
    plugin = cascade_runlog.plugin
    table = cascade.load_or_create_table(catalog, plugin.RUNS_TABLE, plugin.runs_schema())  # as an older plugin did
    assert "commit.manifest.min-count-to-merge" not in table.properties
    before = len(table.metadata.snapshots)
    plugin.append_record(plugin.runs_table(ns_config), {"run_id": "run-1", "asset": "a", "status": "succeeded"})
    table = table.refresh()
    assert table.properties["commit.manifest.min-count-to-merge"] == "10"
    assert len(table.metadata.snapshots) == before + 1  # the row; the properties need no snapshot
    assert read_table(ns_config, "cascade.runs")["run_id"].to_pylist() == ["run-1"]


def test_asset_registered_hook(registry) -> None:
    from pyiceberg.schema import Schema
    from pyiceberg.types import NestedField, StringType

    @cascade.cascade_ingestion(
        table_name="widgets",
        unique_key="id",
        group="shop",
        iceberg_schema=Schema(NestedField(1, "id", StringType(), required=False)),
    )
    def widgets(partition_date: str) -> list[dict[str, str]]:
        return []

    assert recorded.CALLS == [("cascade_asset_registered", {"asset": "widgets", "table": "shop.widgets"})]


def test_every_hook_is_documented_and_implemented_by_the_test_plugin() -> None:
    import inspect

    from cascade import hookspecs

    specs = {name for name, _ in inspect.getmembers(hookspecs, inspect.isfunction) if name.startswith("cascade_")}
    assert len(specs) == 10
    for name in specs:
        doc = inspect.getdoc(getattr(hookspecs, name)) or ""
        assert "Called" in doc and ("Observing" in doc or "Shaping" in doc), name
        assert ("Shaping:" in doc) == (name in hookspecs.SHAPING_HOOKS), f"{name}: its doc and SHAPING_HOOKS disagree"
        firstresult = getattr(hookspecs, name).cascade_spec.get("firstresult", False)
        assert ("Stops at first non-None result." in doc) == firstresult, name
        assert hasattr(recorded, name), f"{name} has no implementation in the test plugin, so no test"
