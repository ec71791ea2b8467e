"""Hooks are called the pluggy way: plugins written as an outsider writes a pytest or llm plugin.

Each plugin below uses one pluggy feature (argument subsets, new- and old-style wrappers,
``firstresult``, ``tryfirst``/``trylast``) and each run is real: a dlt source, a SQLite catalog in
a temporary folder. Plugins are registered with ``cascade.register_hooks`` for one test.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

import dlt
import pluggy
import pyarrow as pa
import pyarrow.compute as pc
import pytest
import structlog
from opentelemetry import trace
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from pyiceberg.schema import Schema
from pyiceberg.types import NestedField, StringType

import cascade
from cascade import (
    CascadeConfig,
    CascadeError,
    CommitVetoedError,
    HookError,
    IngestionResult,
    cascade_ingestion,
    hookimpl,
    register_hooks,
    unregister_hooks,
)
from cascade.asset_registry import Registry
from cascade.audit import AuditFailedError
from cascade.plugins import hooks
from tests.conftest import read_table, snapshot_id

SCHEMA = Schema(
    NestedField(1, "id", StringType(), required=False), NestedField(2, "kind", StringType(), required=False)
)
PARCELS = [{"id": "p1", "kind": "box"}, {"id": "p2", "kind": "letter"}, {"id": "p3", "kind": "crate"}]
DAY, CLOSED = "2024-05-01", "2024-05-02"  # the source fails on CLOSED
TABLE = "depot.parcels"


def parcels_asset(**options: Any) -> Any:
    @cascade_ingestion(table_name="parcels", unique_key="id", iceberg_schema=SCHEMA, group="depot", **options)
    def parcels(partition_date: str):  # type: ignore[no-untyped-def]
        if partition_date == CLOSED:
            raise RuntimeError("the depot is closed")
        return dlt.resource(PARCELS, name="parcels")

    return parcels


@pytest.fixture
def parcels(registry: Registry) -> Any:
    return parcels_asset()


@pytest.fixture
def plug() -> Iterator[Callable[[object, str], str]]:
    """``plug(plugin, name)`` registers a plugin for this test only."""
    names: list[str] = []

    def plug(plugin: object, name: str) -> str:
        names.append(register_hooks(plugin, name))
        return name

    yield plug
    for name in reversed(names):
        unregister_hooks(name)


def stored_ids(config: CascadeConfig) -> list[str]:
    return sorted(read_table(config, TABLE).column("id").to_pylist())


def hook_failures(logs: list[dict[str, Any]]) -> list[tuple[str, str, str]]:
    return [(e["plugin"], e["hook"], e["message"]) for e in logs if e["event"] == "hook failed"]


# --- implementations declare the arguments they need ---------------------------------------------------


class Alerts:
    """Each implementation takes a subset of its spec's arguments, one in another order."""

    def __init__(self) -> None:
        self.seen: list[tuple[Any, ...]] = []

    @hookimpl
    def cascade_after_extract(self, rows: pa.Table, context: Any) -> None:
        self.seen.append(("extracted", rows.num_rows, context.asset))

    @hookimpl
    def cascade_before_commit(self, plan: Any) -> None:
        self.seen.append(("plan", plan.rows_inserted))

    @hookimpl
    def cascade_after_commit(self, result: IngestionResult) -> None:
        self.seen.append(("committed", result.rows_inserted))

    @hookimpl
    def cascade_run_failed(self, error: BaseException) -> None:
        self.seen.append(("failed", type(error).__name__))


def test_implementations_declare_only_the_arguments_they_need(parcels: Any, config: CascadeConfig, plug) -> None:  # type: ignore[no-untyped-def]
    alerts = Alerts()
    plug(alerts, "alerts")
    cascade.run(parcels, DAY, config=config)
    with pytest.raises(CascadeError) as failed:
        cascade.run(parcels, CLOSED, config=config)
    assert alerts.seen == [
        ("extracted", 3, "parcels"),
        ("plan", 3),
        ("committed", 3),
        ("failed", type(failed.value).__name__),
    ]


# --- wrappers around the whole run -------------------------------------------------------------------------


class Stopwatch:
    """Times every run and marks its span: a new-style wrapper, as pytest plugins write them."""

    def __init__(self, events: list[str]) -> None:
        self.events = events
        self.runs: list[tuple[Any, ...]] = []

    @hookimpl(wrapper=True)
    def cascade_run(self, context: Any) -> Any:
        self.events.append("stopwatch started")
        started = time.perf_counter()
        trace.get_current_span().set_attribute("depot.stopwatch", context.partition_date)
        try:
            result = yield
        except CascadeError as error:
            self.events.append("stopwatch stopped")
            self.runs.append((context.partition_date, type(error).__name__))
            raise
        self.events.append("stopwatch stopped")
        self.runs.append((context.partition_date, result.rows_inserted, time.perf_counter() - started > 0))
        return result


class OldStyleStopwatch:
    """The same with ``hookwrapper=True``: the ``yield`` returns a ``pluggy.Result``."""

    def __init__(self) -> None:
        self.outcomes: list[object] = []

    @hookimpl(hookwrapper=True)
    def cascade_run(self, context: Any) -> Iterator[None]:
        outcome = yield
        error = outcome.exception
        self.outcomes.append(type(error).__name__ if error else outcome.get_result().rows_inserted)


class Milestones:
    def __init__(self, events: list[str]) -> None:
        self.events = events

    @hookimpl
    def cascade_config_loaded(self) -> None:
        self.events.append("config loaded")

    @hookimpl
    def cascade_after_commit(self) -> None:
        self.events.append("committed")

    @hookimpl
    def cascade_run_failed(self) -> None:
        self.events.append("run failed")


def test_a_wrapper_times_and_annotates_whole_runs(
    parcels: Any, config: CascadeConfig, plug, exported: InMemorySpanExporter
) -> None:  # type: ignore[no-untyped-def]
    events: list[str] = []
    stopwatch, old_style = Stopwatch(events), OldStyleStopwatch()
    plug(Milestones(events), "milestones")
    plug(stopwatch, "stopwatch")
    plug(old_style, "old-style-stopwatch")
    result = cascade.run(parcels, DAY, config=config)
    with pytest.raises(CascadeError) as failed:
        cascade.run(parcels, CLOSED, config=config)
    error = type(failed.value).__name__
    assert stopwatch.runs == [(DAY, 3, True), (CLOSED, error)]
    assert old_style.outcomes == [3, error]
    assert events == [
        *("stopwatch started", "config loaded", "committed", "stopwatch stopped"),
        *("stopwatch started", "config loaded", "run failed", "stopwatch stopped"),
    ]
    runs = {s.context.span_id: s for s in exported.get_finished_spans() if s.name == "cascade.run"}
    assert sorted(span.attributes["depot.stopwatch"] for span in runs.values()) == [DAY, CLOSED]
    assert result.committed


class BrokenStopwatch:
    def __init__(self, breaks: str) -> None:
        self.breaks = breaks

    @hookimpl(wrapper=True)
    def cascade_run(self) -> Any:
        if self.breaks == "before":
            raise RuntimeError("broke before the run")
        yield
        if self.breaks == "after":
            raise RuntimeError("broke after the run")
        return "not the result"  # what a wrapper returns in place of the run's outcome is ignored


class BrokenOldStyleStopwatch:
    @hookimpl(hookwrapper=True)
    def cascade_run(self) -> Iterator[None]:
        yield
        raise RuntimeError("broke after the run")


@pytest.mark.parametrize(
    ("plugin", "logged"),
    [
        pytest.param(BrokenStopwatch("before"), ["broke before the run"], id="fails-before"),
        pytest.param(BrokenStopwatch("after"), ["broke after the run"], id="fails-after"),
        pytest.param(BrokenStopwatch("replace"), [], id="returns-something-else"),
        pytest.param(BrokenOldStyleStopwatch(), ["broke after the run"], id="old-style-fails-after"),
    ],
)
def test_a_failing_wrapper_changes_nothing(  # type: ignore[no-untyped-def]
    parcels: Any, config: CascadeConfig, plug, plugin: object, logged: list[str]
) -> None:
    plug(plugin, "broken-stopwatch")
    with structlog.testing.capture_logs() as logs:
        result = cascade.run(parcels, DAY, config=config)
    assert (result.committed, result.rows_inserted) == (True, 3)
    assert stored_ids(config) == ["p1", "p2", "p3"]
    assert hook_failures(logs) == [("broken-stopwatch", "cascade_run", message) for message in logged]


def test_cascade_run_takes_wrappers_only() -> None:
    class TakesOver:
        @hookimpl
        def cascade_run(self, context: Any) -> str:
            return "a run of its own"

    with pytest.raises(pluggy.PluginValidationError, match="'takes-over': cascade_run takes wrappers only"):
        register_hooks(TakesOver(), "takes-over")
    assert not hooks().manager.has_plugin("takes-over")


# --- order: last registered first, tryfirst and trylast, firstresult ---------------------------------------


class Named:
    def __init__(self, name: str, calls: list[str], reason: str | None = None) -> None:
        self.name, self.calls, self.reason = name, calls, reason

    @hookimpl
    def cascade_after_commit(self) -> None:
        self.calls.append(self.name)

    @hookimpl
    def cascade_before_commit(self) -> str | None:
        self.calls.append(self.name)
        return self.reason


class First(Named):
    @hookimpl(tryfirst=True)
    def cascade_after_commit(self) -> None:
        self.calls.append(self.name)


class Last(Named):
    @hookimpl(trylast=True)
    def cascade_after_commit(self) -> None:
        self.calls.append(self.name)


def test_tryfirst_and_trylast_order_implementations(parcels: Any, config: CascadeConfig, plug) -> None:  # type: ignore[no-untyped-def]
    calls: list[str] = []
    for plugin in (First("first", calls), Last("last", calls), Named("older", calls), Named("newer", calls)):
        plug(plugin, plugin.name)
    cascade.run(parcels, DAY, config=config)
    committed = calls[len(calls) // 2 :]  # after the before_commit calls, which are plain
    assert committed == ["first", "newer", "older", "last"]


def test_before_commit_stops_at_the_first_veto_and_names_its_plugin(parcels: Any, config: CascadeConfig, plug) -> None:  # type: ignore[no-untyped-def]
    calls: list[str] = []
    plug(Named("gate-a", calls), "gate-a")
    plug(Named("gate-b", calls, reason="the depot is full"), "gate-b")
    plug(Named("gate-c", calls), "gate-c")
    with pytest.raises(CommitVetoedError) as vetoed:
        cascade.run(parcels, DAY, config=config)
    assert calls == ["gate-c", "gate-b"]  # firstresult: gate-a is never asked
    assert vetoed.value.plugin == "gate-b"
    assert "commit vetoed by plugin 'gate-b': the depot is full" in str(vetoed.value)
    assert snapshot_id(config, TABLE) is None


class Reviewer:
    """A wrapper that can veto what the gates let through."""

    @hookimpl(wrapper=True)
    def cascade_before_commit(self, plan: Any) -> Any:
        reason = yield
        return reason or (f"{plan.rows_inserted} parcels need a review" if plan.rows_inserted > 2 else None)


def test_a_wrapper_may_veto_and_is_named(parcels: Any, config: CascadeConfig, plug) -> None:  # type: ignore[no-untyped-def]
    plug(Named("gate", []), "gate")
    plug(Reviewer(), "reviewer")
    with pytest.raises(CommitVetoedError, match="commit vetoed by plugin 'reviewer': 3 parcels need a review"):
        cascade.run(parcels, DAY, config=config)
    assert snapshot_id(config, TABLE) is None


# --- after_extract: a chain, each implementation receiving the previous one's rows ------------------------


class DropKind:
    def __init__(self, kind: str, sizes: list[int]) -> None:
        self.kind, self.sizes = kind, sizes

    @hookimpl
    def cascade_after_extract(self, rows: pa.Table) -> pa.Table:
        self.sizes.append(rows.num_rows)
        if self.kind == "everything":
            raise RuntimeError("dropped the parcels on the floor")
        return rows.filter(pc.not_equal(rows.column("kind"), self.kind))


def test_after_extract_implementations_form_a_chain(parcels: Any, config: CascadeConfig, plug) -> None:  # type: ignore[no-untyped-def]
    sizes: list[int] = []
    plug(DropKind("letter", sizes), "no-letters")
    plug(DropKind("crate", sizes), "no-crates")
    result = cascade.run(parcels, DAY, config=config)
    assert sizes == [3, 2]  # no-crates (registered last) first, then no-letters on its rows
    assert stored_ids(config) == ["p1"]
    assert result.rows_inserted == 1


def test_a_failing_after_extract_aborts_naming_its_plugin(parcels: Any, config: CascadeConfig, plug) -> None:  # type: ignore[no-untyped-def]
    sizes: list[int] = []
    plug(DropKind("everything", sizes), "clumsy")
    plug(DropKind("crate", sizes), "no-crates")
    with pytest.raises(HookError) as failed:
        cascade.run(parcels, DAY, config=config)
    assert (failed.value.plugin, failed.value.hook) == ("clumsy", "cascade_after_extract")
    assert "plugin 'clumsy' failed: RuntimeError: dropped the parcels on the floor" in str(failed.value)
    assert sizes == [3, 2]
    assert snapshot_id(config, TABLE) is None


class Repacker:
    """A wrapper that replaces the rows with a table of another schema: refused, and named."""

    @hookimpl(wrapper=True)
    def cascade_after_extract(self, rows: pa.Table) -> Any:
        yield
        return [rows.drop_columns(["kind"])]


def test_a_wrapper_replacing_the_rows_is_checked_and_named(parcels: Any, config: CascadeConfig, plug) -> None:  # type: ignore[no-untyped-def]
    plug(DropKind("crate", []), "no-crates")
    plug(Repacker(), "repacker")
    with pytest.raises(HookError, match="hook cascade_after_extract of plugin 'repacker' failed: returned the schema"):
        cascade.run(parcels, DAY, config=config)
    assert snapshot_id(config, TABLE) is None


# --- failures: an observer's is logged and changes nothing; a shaping hook's aborts, naming it -------------


class Pager:
    def __init__(self, calls: list[str], down: bool = False) -> None:
        self.calls, self.down = calls, down

    @hookimpl
    def cascade_after_commit(self, result: IngestionResult) -> None:
        if self.down:
            raise RuntimeError("the pager is down")
        self.calls.append(f"paged: {result.rows_inserted}")

    @hookimpl
    def cascade_run_failed(self, error: BaseException) -> None:
        if self.down:
            raise RuntimeError("the pager is down")
        self.calls.append(f"paged: {type(error).__name__}")


def test_a_failing_observer_is_logged_and_the_others_still_run(parcels: Any, config: CascadeConfig, plug) -> None:  # type: ignore[no-untyped-def]
    calls: list[str] = []
    plug(Pager(calls), "pager")
    plug(Pager(calls, down=True), "broken-pager")  # called first: registered last
    with structlog.testing.capture_logs() as logs:
        result = cascade.run(parcels, DAY, config=config)
        with pytest.raises(CascadeError) as failed:
            cascade.run(parcels, CLOSED, config=config)
    assert result.committed and stored_ids(config) == ["p1", "p2", "p3"]
    assert "the depot is closed" in str(failed.value)  # the run's own error, not the pager's
    assert calls == ["paged: 3", f"paged: {type(failed.value).__name__}"]
    assert hook_failures(logs) == [
        ("broken-pager", "cascade_after_commit", "the pager is down"),
        ("broken-pager", "cascade_run_failed", "the pager is down"),
    ]


class Customs:
    @hookimpl
    def cascade_before_commit(self, plan: Any) -> None:
        raise LookupError(f"no papers for {plan.rows_inserted} parcels")


def test_a_failing_before_commit_aborts_naming_its_plugin(parcels: Any, config: CascadeConfig, plug) -> None:  # type: ignore[no-untyped-def]
    plug(Customs(), "customs")
    plug(Named("gate", []), "gate")
    with pytest.raises(HookError) as failed:
        cascade.run(parcels, DAY, config=config)
    assert "hook cascade_before_commit of plugin 'customs' failed: LookupError: no papers for 3 parcels" in str(
        failed.value
    )
    assert snapshot_id(config, TABLE) is None


class Inspector:
    def __init__(self, reason: str | None) -> None:
        self.reason = reason

    @hookimpl
    def cascade_audit(self, snapshot_id: int) -> str | None:
        return self.reason


def test_audit_reasons_are_collected_per_plugin(registry: Registry, config: CascadeConfig, plug) -> None:  # type: ignore[no-untyped-def]
    asset = parcels_asset(publish="audit")
    plug(Inspector("three parcels is too few"), "counter")
    plug(Inspector(None), "weigher")
    plug(Inspector("crates need a permit"), "permits")
    with pytest.raises(AuditFailedError) as failed:
        cascade.run(asset, DAY, config=config)
    assert [(f.audit, f.reason) for f in failed.value.outcome.failures] == [
        ("plugin:permits", "crates need a permit"),
        ("plugin:counter", "three parcels is too few"),
    ]
    assert read_table(config, TABLE).num_rows == 0  # the target branch is untouched


# --- asset_registered reaches plugins registered later, as pluggy's historic hooks do -------------------------


class Catalogue:
    def __init__(self) -> None:
        self.assets: list[str] = []

    @hookimpl
    def cascade_asset_registered(self, asset: Any) -> None:
        self.assets.append(asset.spec.name)


def test_a_plugin_registered_late_is_told_of_earlier_assets(parcels: Any, plug) -> None:  # type: ignore[no-untyped-def]
    catalogue = Catalogue()
    plug(catalogue, "catalogue")
    assert catalogue.assets.count("parcels") == 1

    @cascade_ingestion(table_name="sacks", unique_key="id", iceberg_schema=SCHEMA, group="depot")
    def sacks(partition_date: str):  # type: ignore[no-untyped-def]
        return dlt.resource([], name="sacks")

    assert catalogue.assets[-1] == "sacks"
