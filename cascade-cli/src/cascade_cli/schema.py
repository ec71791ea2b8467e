"""``cascade schema``: an asset's table against the asset, and evolving it on purpose.

    cascade schema diff ASSET [--json]
    cascade schema apply ASSET [--allow partition-spec] [--allow unique-key] [--allow drop-column] [--json]

The decisions are the core's (``cascade.evolution``), so a run, this command and Dagster agree:
additive changes are applied by the next run anyway; breaking ones only here, with ``--allow``.
"""

from __future__ import annotations

import json
from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

import cascade
from cascade import table_identifier
from cascade.errors import CascadeError
from cascade.evolution import Allow, Column, TableDiff, apply_asset, diff_asset

schema_app = typer.Typer(help="An asset's table against the asset: diff, and apply changes.", no_args_is_help=True)
AssetArgument = Annotated[str, typer.Argument(metavar="ASSET", help="Asset name or namespace.table.")]
JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON.")]


def _asset_spec(name: str) -> tuple[cascade.AssetSpec, cascade.CascadeConfig]:
    cascade.discover()
    return cascade.registry().get(name).spec, cascade.load_config()


def _no_table(spec: cascade.AssetSpec, config: cascade.CascadeConfig) -> dict[str, Any]:
    return {"asset": spec.name, "table": ".".join(table_identifier(spec, config)), "table_exists": False, "changes": []}


@schema_app.command("diff")
def schema_diff(asset: AssetArgument, as_json: JsonOption = False) -> None:
    """Show the table's schema, unique key and partition spec against the asset's, and each change."""
    from cascade_cli.main import fail, out

    try:
        spec, config = _asset_spec(asset)
        diff = diff_asset(spec, config)
    except CascadeError as error:
        fail(error)
    if diff is None:
        if as_json:
            print(json.dumps(_no_table(spec, config), indent=2))
        else:
            out.print(f"table {_no_table(spec, config)['table']} does not exist yet: its first run creates it")
        return
    if as_json:
        print(json.dumps({**diff.as_dict(), "table_exists": True}, indent=2))
        return
    out.print(side_by_side(diff))
    print_changes(diff)


def side_by_side(diff: TableDiff) -> Table:
    view = Table(title=f"{diff.table} (table) against asset {diff.asset}")
    for column in ("", "table", "asset"):
        view.add_column(column)
    stored = {c.name: c for c in diff.table_columns}
    wanted = {c.name: c for c in diff.asset_columns}
    for name in [*stored, *(n for n in wanted if n not in stored)]:
        view.add_row(escape(name), *(_column_text(c) for c in (stored.get(name), wanted.get(name))))
    key = ", ".join(diff.table_key) if diff.table_key is not None else "(not recorded)"
    view.add_row("[bold]unique key[/]", escape(key), escape(", ".join(diff.asset_key)))
    view.add_row("[bold]partition spec[/]", escape(diff.table_partition_spec), escape(diff.asset_partition_spec))
    return view


def _column_text(column: Column | None) -> str:
    if column is None:
        return "-"
    return escape(f"{column.type}{' required' if column.required else ''}")


def print_changes(diff: TableDiff) -> None:
    from cascade_cli.main import out

    if not diff.changes:
        out.print("no changes: the table matches the asset")
        return
    for change in diff.changes:
        mark = "[green]additive[/]" if change.additive else "[red]breaking[/]"
        out.print(
            f"{mark} {escape(change.describe())}: {escape(change.remedy(diff.asset))}", highlight=False, soft_wrap=True
        )


@schema_app.command("apply")
def schema_apply(
    asset: AssetArgument,
    allow: Annotated[
        list[Allow] | None,
        typer.Option("--allow", help="A breaking change to apply on purpose (repeatable).", case_sensitive=False),
    ] = None,
    as_json: JsonOption = False,
) -> None:
    """Evolve the table to the asset: additive changes, and the breaking ones --allow names; else nothing."""
    from cascade_cli.main import fail, out

    try:
        spec, config = _asset_spec(asset)
        applied = apply_asset(spec, config, allow=allow or ())
    except CascadeError as error:
        fail(error)
    if applied is None:
        if as_json:
            print(json.dumps(_no_table(spec, config), indent=2))
        else:
            out.print(f"table {_no_table(spec, config)['table']} does not exist yet: its first run creates it")
        return
    if as_json:
        print(json.dumps({**applied.as_dict(), "table_exists": True}, indent=2))
        return
    if not applied.changes:
        out.print(f"nothing to apply: {applied.table} matches asset {applied.asset}", highlight=False)
        return
    for change in applied.changes:
        out.print(f"applied: {escape(change.describe())}", highlight=False, soft_wrap=True)
