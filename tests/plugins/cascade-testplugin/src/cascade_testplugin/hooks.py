"""Hook implementations installed through the ``cascade.hooks`` entry point, inert unless a test
sets one of the switches below (tests reset them)."""

from __future__ import annotations

from typing import Any

import pyarrow.compute as pc

from cascade import hookimpl

CALLS: list[tuple[str, dict[str, Any]]] = []
VETO: str | None = None
RAISE_IN: str | None = None
DROP_WHERE: tuple[str, Any] | None = None  # (column, value): rows to drop after extract


def _record(hook: str, **values: Any) -> None:
    CALLS.append((hook, values))
    if hook == RAISE_IN:
        raise RuntimeError(f"{hook} exploded on purpose")


@hookimpl
def cascade_config_loaded(config: Any) -> None:
    _record("cascade_config_loaded", home=str(config.home))


@hookimpl
def cascade_asset_registered(asset: Any) -> None:
    _record("cascade_asset_registered", asset=asset.spec.name, table=asset.spec.identifier)


@hookimpl(wrapper=True)
def cascade_run(context: Any) -> Any:
    _record("cascade_run", asset=context.asset)
    return (yield)


@hookimpl
def cascade_run_started(context: Any) -> None:
    _record("cascade_run_started", asset=context.asset, partition=context.partition_date, branch=context.branch)


@hookimpl
def cascade_after_extract(context: Any, rows: Any) -> Any:
    _record("cascade_after_extract", rows=rows.num_rows)
    if DROP_WHERE is None:
        return None
    column, value = DROP_WHERE
    return rows.filter(pc.not_equal(rows.column(column), value))


@hookimpl
def cascade_after_validation(context: Any, report: Any) -> None:
    _record("cascade_after_validation", passed=report.passed, rows=report.rows)


@hookimpl
def cascade_before_commit(context: Any, plan: Any) -> str | None:
    _record("cascade_before_commit", inserted=plan.rows_inserted, updated=plan.rows_updated)
    return VETO


@hookimpl
def cascade_after_commit(context: Any, result: Any) -> None:
    _record("cascade_after_commit", inserted=result.rows_inserted, snapshot_id=result.snapshot_id)


@hookimpl
def cascade_run_failed(context: Any, error: BaseException) -> None:
    _record("cascade_run_failed", error=type(error).__name__)


AUDIT_REASON: str | None = None  # what cascade_audit returns (None: the audit passes)


@hookimpl
def cascade_audit(context: Any, table: Any, snapshot_id: int) -> str | None:
    _record("cascade_audit", branch=context.branch, rows=table.scan(snapshot_id=snapshot_id).to_arrow().num_rows)
    return AUDIT_REASON
