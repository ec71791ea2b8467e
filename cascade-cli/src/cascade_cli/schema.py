"""``cascade schema``: an asset's table against the asset, and evolving it on purpose.

    cascade schema diff ASSET [--json]
    cascade schema apply ASSET [--allow partition-spec] [--allow unique-key] [--allow drop-column] [--json]

The decisions are the core's (``cascade.evolution``), so a run, this command and Dagster agree:
additive changes are applied by the next run anyway; breaking ones only here, with ``--allow``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any

import typer

from cascade_cli.app import CascadeTyper, session
from cascade_cli.options import AssetArgument, JsonOption

if TYPE_CHECKING:
    from rich.console import Console
    from rich.table import Table

    from cascade import AssetSpec, CascadeConfig, Column, TableDiff

schema_app = CascadeTyper(help="An asset's table against the asset: diff, and apply changes.")


def _asset_spec(name: str) -> tuple[AssetSpec, CascadeConfig]:
    from cascade import discover, load_config, registry

    discover()
    return registry().get(name).spec, load_config()


def _no_table(spec: AssetSpec, config: CascadeConfig) -> dict[str, Any]:
    from cascade import table_identifier

    return {"asset": spec.name, "table": ".".join(table_identifier(spec, config)), "table_exists": False, "changes": []}


@schema_app.command("diff")
def schema_diff(ctx: typer.Context, asset: AssetArgument, as_json: JsonOption = False) -> None:
    """Show the table's schema, unique key and partition spec against the asset's, and each change."""
    from cascade import diff_asset
    from cascade_cli.output import print_json

    out = session(ctx).out
    spec, config = _asset_spec(asset)
    diff = diff_asset(spec, config)
    if diff is None:
        if as_json:
            print_json(_no_table(spec, config), indent=2)
        else:
            out.print(f"table {_no_table(spec, config)['table']} does not exist yet: its first run creates it")
        return
    if as_json:
        print_json({**diff.as_dict(), "table_exists": True}, indent=2)
        return
    out.print(side_by_side(diff))
    print_changes(out, diff)


def side_by_side(diff: TableDiff) -> Table:
    from rich.markup import escape
    from rich.table import Table

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
    from rich.markup import escape

    if column is None:
        return "-"
    return escape(f"{column.type}{' required' if column.required else ''}")


def print_changes(out: Console, diff: TableDiff) -> None:
    from rich.markup import escape

    if not diff.changes:
        out.print("no changes: the table matches the asset")
        return
    for change in diff.changes:
        mark = "[green]additive[/]" if change.additive else "[red]breaking[/]"
        out.print(
            f"{mark} {escape(change.describe())}: {escape(change.remedy(diff.asset))}", highlight=False, soft_wrap=True
        )


def parse_allowed(values: list[str] | None) -> list[str]:
    """``--allow`` values as :class:`cascade.Allow` (any case); an unknown one is a usage error listing them.

    The option is typed ``str`` and converted here (Typer reads this signature at every start) so that
    ``--help`` need not import the evolution module.
    """
    if not values:
        return []
    from cascade import Allow

    allowed: list[str] = []
    for value in values:
        try:
            allowed.append(Allow(value.lower()))
        except ValueError:
            choices = ", ".join(a.value for a in Allow)
            raise typer.BadParameter(f"{value!r} is not one of {choices}") from None
    return allowed


@schema_app.command("apply")
def schema_apply(
    ctx: typer.Context,
    asset: AssetArgument,
    allow: Annotated[
        list[str] | None,
        typer.Option(
            "--allow",
            metavar="CHANGE",
            help="A breaking change to apply on purpose, as `cascade schema diff` names it (repeatable).",
            callback=parse_allowed,
        ),
    ] = None,
    as_json: JsonOption = False,
) -> None:
    """Evolve the table to the asset: additive changes, and the breaking ones --allow names; else nothing."""
    from rich.markup import escape

    from cascade import Allow, apply_asset
    from cascade_cli.output import print_json

    out = session(ctx).out
    spec, config = _asset_spec(asset)
    applied = apply_asset(spec, config, allow=[Allow(a) for a in allow or ()])
    if applied is None:
        if as_json:
            print_json(_no_table(spec, config), indent=2)
        else:
            out.print(f"table {_no_table(spec, config)['table']} does not exist yet: its first run creates it")
        return
    if as_json:
        print_json({**applied.as_dict(), "table_exists": True}, indent=2)
        return
    if not applied.changes:
        out.print(f"nothing to apply: {applied.table} matches asset {applied.asset}", highlight=False)
        return
    for change in applied.changes:
        out.print(f"applied: {escape(change.describe())}", highlight=False, soft_wrap=True)
