"""Write-audit-publish: a run's snapshot is audited on a private branch before its target sees it.

Real SQLite catalog, a real dlt source, audits in DuckDB, and hook plugins written as an
outsider would, registered with ``cascade.register_hooks``.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import dlt
import pytest
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from pyiceberg.schema import Schema
from pyiceberg.types import LongType, NestedField, StringType

import cascade
import cascade_testplugin.hooks as recorded
from cascade import CascadeConfig, cascade_ingestion, hookimpl, register_hooks, unregister_hooks
from cascade.asset_registry import isolated_registry
from cascade.audit import PUBLISH_TAG, AuditFailedError
from cascade.catalog import branches, open_catalog
from cascade.tables import ancestry
from tests.conftest import read_table, snapshot_id

SCHEMA = Schema(NestedField(1, "id", StringType(), required=True), NestedField(2, "n", LongType(), required=False))
TABLE = "wap.things"
NO_NEGATIVE = "select count(*) = 0 from batch where n < 0"
UNIQUE_IDS = 'select count(*) = count(distinct id) from "table"'


def things_asset(batches: dict[str, list[dict[str, Any]]], audits: dict[str, str] | None = None) -> Any:
    @cascade_ingestion(
        table_name="things",
        unique_key="id",
        iceberg_schema=SCHEMA,
        group="wap",
        publish="audit",
        audits=audits if audits is not None else {"no_negative": NO_NEGATIVE, "unique_ids": UNIQUE_IDS},
    )
    def things(partition_date: str):
        return dlt.resource(batches.get(partition_date, []), name="things")

    return things


@pytest.fixture(autouse=True)
def fresh_registry() -> Iterator[None]:
    recorded.AUDIT_REASON = None
    with isolated_registry():
        yield
    recorded.AUDIT_REASON = None


def stored(config: CascadeConfig, branch: str = "main") -> dict[str, int]:
    return {r["id"]: r["n"] for r in read_table(config, TABLE, branch).to_pylist()}


def table_branches(config: CascadeConfig) -> dict[str, int]:
    return branches(open_catalog(config).load_table(TABLE))


def test_a_passing_audit_fast_forwards_main_to_exactly_the_audited_snapshot(config: CascadeConfig) -> None:
    asset = things_asset({"2024-01-01": [{"id": "a", "n": 1}, {"id": "b", "n": 2}]})
    result = cascade.run(asset, "2024-01-01", config=config)
    assert result.audit is not None
    assert result.audit.as_dict() == {
        "branch": f"cascade-audit-{result.run_id}",
        "target": "main",
        "snapshot_id": result.audit.snapshot_id,
        "audits": ["no_negative", "unique_ids"],
        "rounds": 1,
        "published": True,
        "failures": {},
    }
    assert snapshot_id(config, TABLE) == result.audit.snapshot_id == result.snapshot_id
    assert stored(config) == {"a": 1, "b": 2}
    assert set(table_branches(config)) == {"main"}  # the audit branch is dropped


def test_a_failing_sql_audit_leaves_main_unchanged_and_the_audit_branch_inspectable(config: CascadeConfig) -> None:
    batches = {"2024-01-01": [{"id": "a", "n": 1}], "2024-01-02": [{"id": "b", "n": -7}]}
    asset = things_asset(batches)
    cascade.run(asset, "2024-01-01", config=config)
    before = snapshot_id(config, TABLE)

    with pytest.raises(AuditFailedError, match=r"no_negative: returned \[\(False,\)\]") as failed:
        cascade.run(asset, "2024-01-02", config=config, run_id="bad0run")
    assert "branch 'main' was not changed; inspect branch 'cascade-audit-bad0run'" in str(failed.value)
    assert [f.audit for f in failed.value.outcome.failures] == ["no_negative"]
    assert snapshot_id(config, TABLE) == before and stored(config) == {"a": 1}
    assert table_branches(config)["cascade-audit-bad0run"] == failed.value.outcome.snapshot_id
    assert stored(config, "cascade-audit-bad0run") == {"a": 1, "b": -7}  # the data as it was audited


def test_a_broken_audit_query_fails_naming_the_audit(config: CascadeConfig) -> None:
    asset = things_asset({"2024-01-01": [{"id": "a", "n": 1}]}, audits={"typo": "select count(*) from nowhere"})
    with pytest.raises(AuditFailedError, match=r"typo: the query failed: CatalogException"):
        cascade.run(asset, "2024-01-01", config=config)
    assert snapshot_id(config, TABLE) is not None  # created, with main still empty
    assert stored(config) == {}


def test_the_cascade_audit_hook_sees_the_unpublished_snapshot_and_may_fail_it(config: CascadeConfig) -> None:
    asset = things_asset({"2024-01-01": [{"id": "a", "n": 1}, {"id": "b", "n": 2}]}, audits={})
    recorded.CALLS.clear()
    recorded.AUDIT_REASON = "row count below the expected 288"
    with pytest.raises(AuditFailedError, match=r"plugin:cascade-testplugin: row count below the expected 288"):
        cascade.run(asset, "2024-01-01", config=config)
    assert ("cascade_audit", {"branch": "main", "rows": 2}) in recorded.CALLS
    assert stored(config) == {}


def test_a_writer_moving_main_during_the_audit_leads_to_a_re_merge_and_a_re_audit(config: CascadeConfig) -> None:
    batches = {"2024-01-01": [{"id": "a", "n": 1}], "2024-01-02": [{"id": "w", "n": 9}]}
    asset = things_asset(batches)
    audited: list[int] = []

    class ConcurrentWriter:
        @hookimpl
        def cascade_audit(self, context: Any, table: Any, snapshot_id: int) -> None:
            audited.append(snapshot_id)
            if len(audited) == 1:  # another writer lands on main while the first round is audited
                cascade.run(asset, "2024-01-02", config=config, tags={PUBLISH_TAG: "direct"})

    register_hooks(ConcurrentWriter(), name="concurrent-writer")
    try:
        result = cascade.run(asset, "2024-01-01", config=config)
    finally:
        unregister_hooks("concurrent-writer")
    assert result.audit is not None and result.audit.rounds == 2
    assert len(audited) == 2 and audited[1] == result.audit.snapshot_id
    assert snapshot_id(config, TABLE) == audited[1]  # main is exactly the second audited snapshot
    main_history = {s.snapshot_id for s in ancestry(open_catalog(config).load_table(TABLE), "main")}
    assert audited[0] not in main_history  # the first, stale, round was never published
    assert stored(config) == {"a": 1, "w": 9}


def test_the_run_tag_asks_for_an_audit_on_an_asset_that_publishes_directly(config: CascadeConfig) -> None:
    @cascade_ingestion(table_name="things", unique_key="id", iceberg_schema=SCHEMA, group="wap")
    def things(partition_date: str):
        return dlt.resource([{"id": "a", "n": 1}], name="things")

    result = cascade.run(things, "2024-01-01", config=config, tags={PUBLISH_TAG: "audit"})
    assert result.audit is not None and result.audit.published and result.audit.audits == ()
    assert snapshot_id(config, TABLE) == result.audit.snapshot_id


def test_the_audit_phase_has_its_own_span(config: CascadeConfig, exported: InMemorySpanExporter) -> None:
    result = cascade.run(things_asset({"2024-01-01": [{"id": "a", "n": 1}]}), "2024-01-01", config=config)
    spans = {span.name: span for span in exported.get_finished_spans()}
    audit = spans["cascade.audit"]
    assert audit.parent is not None and audit.parent.span_id == spans["cascade.merge"].context.span_id
    assert dict(audit.attributes or {}) == {
        "cascade.table": TABLE,
        "cascade.branch": f"cascade-audit-{result.run_id}",
        "cascade.snapshot_id": result.snapshot_id,
        "cascade.round": 1,
        "cascade.audits": ("no_negative", "unique_ids"),
        "cascade.audits_failed": 0,
    }


def test_cascade_run_audit_flag(cli, monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]
    from cascade import load_config

    monkeypatch.setenv("CASCADE_DISABLE_PLUGIN_AUTOLOAD", "1")

    @cascade_ingestion(table_name="things", unique_key="id", iceberg_schema=SCHEMA, group="wap")
    def things(partition_date: str):
        return dlt.resource([{"id": "a", "n": 1}], name="things")

    result = cli("run", "things", "--date", "2024-01-01", "--audit", "--json").json()
    assert result["audit"]["published"] is True and result["audit"]["snapshot_id"] == result["snapshot_id"]
    assert snapshot_id(load_config(), TABLE) == result["snapshot_id"]
