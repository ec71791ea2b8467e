"""``cascade quarantine``: the rows ``on_invalid="quarantine"`` kept out of an asset's table.

    cascade quarantine list [--json]
    cascade quarantine show ASSET --date D [--branch B] [--json]
    cascade quarantine replay ASSET --date D [--branch B] [--json]
    cascade quarantine drop ASSET [--date D] [--branch B] --yes [--json]

The work is the core's (``cascade.quarantine``, ``cascade.quarantine_replay``); this module only reads
options and prints.
"""

from __future__ import annotations

import json
from collections import Counter
from typing import TYPE_CHECKING, Annotated, Any

import typer

from cascade_cli.app import CascadeTyper, session
from cascade_cli.options import AssetArgument, DateOption, JsonOption, parse_date

if TYPE_CHECKING:
    import pyarrow as pa

    from cascade import AssetSpec, CascadeAsset, CascadeConfig

quarantine_app = CascadeTyper(help="Rows kept out of a table by on_invalid='quarantine': list, show, replay, drop.")
BranchOption = Annotated[str | None, typer.Option("--branch", "-b", help="Iceberg branch (default: the run's).")]


def _held(spec: AssetSpec, config: CascadeConfig, **where: str | None) -> pa.Table:
    import pyarrow.compute as pc

    from cascade import open_catalog, quarantine_identifier, read_quarantine, table_identifier

    namespace, table_name = table_identifier(spec, config)
    rows = read_quarantine(open_catalog(config), quarantine_identifier(spec, namespace, table_name), **where)
    return rows.filter(pc.equal(rows.column("asset"), spec.name))


def _asset(name: str) -> tuple[CascadeAsset[Any, Any], CascadeConfig]:
    from cascade import discover, load_config, registry

    discover()
    return registry().get(name), load_config()


def summarize(spec: AssetSpec, rows: pa.Table) -> list[dict[str, Any]]:
    """One entry per partition and branch: the count, each check's count, and when first seen."""
    from cascade import INGESTED_AT

    groups: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for row in rows.to_pylist():
        groups.setdefault((row["partition"], row["branch"]), []).append(row)
    summary = []
    for (partition, branch), held in sorted(groups.items()):
        checks = Counter(check for row in held for check in json.loads(row["checks"]))
        summary.append(
            {
                "asset": spec.name,
                "partition": partition,
                "branch": branch,
                "rows": len(held),
                "checks": dict(sorted(checks.items())),
                "first_seen": min(row["first_seen"] or row[INGESTED_AT] for row in held).isoformat(),
            }
        )
    return summary


@quarantine_app.command("list")
def quarantine_list(ctx: typer.Context, as_json: JsonOption = False) -> None:
    """Per asset, partition and branch: rows quarantined, the checks they failed, and when first seen."""
    from rich.markup import escape
    from rich.table import Table

    from cascade import discover, load_config
    from cascade_cli.output import print_json

    found = discover()
    config = load_config()
    entries = [entry for asset in found.assets for entry in summarize(asset.spec, _held(asset.spec, config))]
    if as_json:
        print_json(entries, indent=2)
        return
    if not entries:
        session(ctx).out.print("no quarantined rows")
        return
    view = Table(title="Quarantined rows")
    for column in ("asset", "partition", "branch", "rows", "checks", "first seen"):
        view.add_column(column)
    for entry in entries:
        checks = ", ".join(f"{check} ({count})" for check, count in entry["checks"].items())
        view.add_row(
            entry["asset"], entry["partition"], entry["branch"], str(entry["rows"]), escape(checks), entry["first_seen"]
        )
    session(ctx).out.print(view)


@quarantine_app.command("show")
def quarantine_show(
    ctx: typer.Context, asset: AssetArgument, date: DateOption, branch: BranchOption = None, as_json: JsonOption = False
) -> None:
    """The quarantined rows of one partition, with what each failed."""
    from rich.markup import escape
    from rich.table import Table

    from cascade import INGESTED_AT, resolve_branch
    from cascade_cli.output import print_json

    found, config = _asset(asset)
    rows = _held(found.spec, config, partition=date, branch=resolve_branch(branch, {}, config))
    entries = [
        {
            "key": json.loads(row["row_key"]),
            "checks": json.loads(row["checks"]),
            "columns": json.loads(row["columns"]),
            "detail": row["detail"],
            "record": json.loads(row["record"]),
            "run_id": row["run_id"],
            INGESTED_AT: row[INGESTED_AT].isoformat(),
        }
        for row in rows.to_pylist()
    ]
    if as_json:
        print_json(entries, indent=2)
        return
    view = Table(title=f"{found.spec.name} {date}: {len(entries)} quarantined row(s)")
    for column in ("key", "checks", "record"):
        view.add_column(column, overflow="fold")
    for entry in entries:
        checks = "; ".join(entry["checks"]) + (f" ({entry['detail']})" if entry["detail"] else "")
        view.add_row(escape(json.dumps(entry["key"])), escape(checks), escape(json.dumps(entry["record"])))
    session(ctx).out.print(view)


@quarantine_app.command("replay")
def quarantine_replay(
    ctx: typer.Context, asset: AssetArgument, date: DateOption, branch: BranchOption = None, as_json: JsonOption = False
) -> None:
    """Re-validate one partition's quarantined rows against the asset now; merge those that pass."""
    from cascade import replay
    from cascade_cli.output import print_json, print_result

    found, config = _asset(asset)
    result = replay(found, date, branch=branch, config=config)
    if as_json:
        print_json(result.as_dict(), indent=2)
    else:
        print_result(session(ctx).out, result)


@quarantine_app.command("drop")
def quarantine_drop(
    ctx: typer.Context,
    asset: AssetArgument,
    date: Annotated[
        str | None, typer.Option("--date", "-d", help="Only this partition (default: all).", callback=parse_date)
    ] = None,
    branch: BranchOption = None,
    yes: Annotated[bool, typer.Option("--yes", help="Really delete the quarantined rows.")] = False,
    as_json: JsonOption = False,
) -> None:
    """Delete quarantined rows of an asset (one partition with --date); needs --yes."""
    from cascade import (
        ConfigurationError,
        drop_quarantined,
        open_catalog,
        quarantine_identifier,
        resolve_branch,
        table_identifier,
    )
    from cascade_cli.output import print_json

    if not yes:
        raise ConfigurationError(f"quarantine drop {asset}: deleting quarantined rows needs --yes")
    found, config = _asset(asset)
    namespace, table_name = table_identifier(found.spec, config)
    dropped = drop_quarantined(
        open_catalog(config),
        quarantine_identifier(found.spec, namespace, table_name),
        asset=found.spec.name,
        partition=date,
        branch=resolve_branch(branch, {}, config) if branch or date else None,
    )
    if as_json:
        print_json({"asset": found.spec.name, "partition": date, "rows_dropped": dropped}, indent=2)
    else:
        session(ctx).out.print(f"dropped {dropped} quarantined row(s) of {found.spec.name}", highlight=False)
