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
from typing import Annotated, Any

import pyarrow as pa
import pyarrow.compute as pc
import typer
from rich.markup import escape
from rich.table import Table

import cascade
from cascade import open_catalog, table_identifier
from cascade.errors import CascadeError, ConfigurationError
from cascade.quarantine import drop_quarantined, quarantine_identifier, read_quarantine
from cascade.spec import INGESTED_AT

quarantine_app = typer.Typer(
    help="Rows kept out of a table by on_invalid='quarantine': list, show, replay, drop.", no_args_is_help=True
)
AssetArgument = Annotated[str, typer.Argument(metavar="ASSET", help="Asset name or namespace.table.")]
JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON.")]
BranchOption = Annotated[str | None, typer.Option("--branch", "-b", help="Iceberg branch (default: the run's).")]


def _date(value: str | None) -> str | None:
    from cascade_cli.main import parse_optional_date

    return parse_optional_date(value)


DateOption = Annotated[str, typer.Option("--date", "-d", help="Partition date, YYYY-MM-DD.", callback=_date)]


def _held(spec: cascade.AssetSpec, config: cascade.CascadeConfig, **where: str | None) -> pa.Table:
    namespace, table_name = table_identifier(spec, config)
    rows = read_quarantine(open_catalog(config), quarantine_identifier(spec, namespace, table_name), **where)
    return rows.filter(pc.equal(rows.column("asset"), spec.name))


def _asset(name: str) -> tuple[cascade.CascadeAsset[Any, Any], cascade.CascadeConfig]:
    cascade.discover()
    return cascade.registry().get(name), cascade.load_config()


def _branch(branch: str | None, config: cascade.CascadeConfig) -> str:
    from cascade.runner import resolve_branch

    return resolve_branch(branch, {}, config)


def summarize(spec: cascade.AssetSpec, rows: pa.Table) -> list[dict[str, Any]]:
    """One entry per partition and branch: the count, each check's count, and when first seen."""
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
def quarantine_list(as_json: JsonOption = False) -> None:
    """Per asset, partition and branch: rows quarantined, the checks they failed, and when first seen."""
    from cascade_cli.main import fail, out

    try:
        found = cascade.discover()
        config = cascade.load_config()
        entries = [entry for asset in found.assets for entry in summarize(asset.spec, _held(asset.spec, config))]
    except CascadeError as error:
        fail(error)
    if as_json:
        print(json.dumps(entries, indent=2))
        return
    if not entries:
        out.print("no quarantined rows")
        return
    view = Table(title="Quarantined rows")
    for column in ("asset", "partition", "branch", "rows", "checks", "first seen"):
        view.add_column(column)
    for entry in entries:
        checks = ", ".join(f"{check} ({count})" for check, count in entry["checks"].items())
        view.add_row(
            entry["asset"], entry["partition"], entry["branch"], str(entry["rows"]), escape(checks), entry["first_seen"]
        )
    out.print(view)


@quarantine_app.command("show")
def quarantine_show(
    asset: AssetArgument, date: DateOption, branch: BranchOption = None, as_json: JsonOption = False
) -> None:
    """The quarantined rows of one partition, with what each failed."""
    from cascade_cli.main import fail, out

    try:
        found, config = _asset(asset)
        rows = _held(found.spec, config, partition=date, branch=_branch(branch, config))
    except CascadeError as error:
        fail(error)
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
        print(json.dumps(entries, indent=2, default=str))
        return
    view = Table(title=f"{found.spec.name} {date}: {len(entries)} quarantined row(s)")
    for column in ("key", "checks", "record"):
        view.add_column(column, overflow="fold")
    for entry in entries:
        checks = "; ".join(entry["checks"]) + (f" ({entry['detail']})" if entry["detail"] else "")
        view.add_row(escape(json.dumps(entry["key"])), escape(checks), escape(json.dumps(entry["record"])))
    out.print(view)


@quarantine_app.command("replay")
def quarantine_replay(
    asset: AssetArgument, date: DateOption, branch: BranchOption = None, as_json: JsonOption = False
) -> None:
    """Re-validate one partition's quarantined rows against the asset now; merge those that pass."""
    from cascade import replay
    from cascade_cli.main import fail, print_result

    try:
        found, config = _asset(asset)
        result = replay(found, date, branch=branch, config=config)
    except CascadeError as error:
        fail(error)
    if as_json:
        print(json.dumps(result.as_dict(), indent=2))
    else:
        print_result(result)


@quarantine_app.command("drop")
def quarantine_drop(
    asset: AssetArgument,
    date: Annotated[
        str | None, typer.Option("--date", "-d", help="Only this partition (default: all).", callback=_date)
    ] = None,
    branch: BranchOption = None,
    yes: Annotated[bool, typer.Option("--yes", help="Really delete the quarantined rows.")] = False,
    as_json: JsonOption = False,
) -> None:
    """Delete quarantined rows of an asset (one partition with --date); needs --yes."""
    from cascade_cli.main import fail, out

    try:
        if not yes:
            raise ConfigurationError(f"quarantine drop {asset}: deleting quarantined rows needs --yes")
        found, config = _asset(asset)
        namespace, table_name = table_identifier(found.spec, config)
        dropped = drop_quarantined(
            open_catalog(config),
            quarantine_identifier(found.spec, namespace, table_name),
            asset=found.spec.name,
            partition=date,
            branch=_branch(branch, config) if branch or date else None,
        )
    except CascadeError as error:
        fail(error)
    if as_json:
        print(json.dumps({"asset": found.spec.name, "partition": date, "rows_dropped": dropped}, indent=2))
    else:
        out.print(f"dropped {dropped} quarantined row(s) of {found.spec.name}", highlight=False)
