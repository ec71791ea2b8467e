"""``cascade``: list and run Cascade assets from a shell. A thin layer over ``cascade``'s core.

Exit codes: 0 success, 1 a failed run, 2 bad usage (unknown asset, bad date, bad configuration).
Every error, expected or not, is one line on stderr (``--verbose`` adds the traceback, redacted):
commands raise, and :class:`cascade_cli.app.CascadeGroup` reports.

Starting is cheap: this module and the command modules import only Typer and ``cascade`` (whose
names load on first use); each command imports what it needs (Rich, pyiceberg, DuckDB, the
backfill's progress bar) when it runs, so ``cascade --help`` answers at once.
"""

from __future__ import annotations

import datetime as dt
import gc
import sys
from typing import TYPE_CHECKING, Annotated, Any

import typer

from cascade_cli.app import CascadeTyper, Session, session
from cascade_cli.maintain import maintain_command
from cascade_cli.options import JsonOption, TableArgument, parse_date
from cascade_cli.quarantine import quarantine_app
from cascade_cli.schema import schema_app
from cascade_cli.status import status_command

if TYPE_CHECKING:
    from pyiceberg.table import Table

    from cascade import AssetSpec

app = CascadeTyper(help="Land data from APIs into Apache Iceberg tables.")
app.add_typer(schema_app, name="schema")
app.add_typer(quarantine_app, name="quarantine")


@app.callback()
def _options(
    ctx: typer.Context,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Show tracebacks on errors.")] = False,
) -> None:
    ctx.obj = Session(verbose=verbose)


@app.command("list")
def list_assets(ctx: typer.Context, as_json: JsonOption = False) -> None:
    """List the assets that installed plugins provide, and plugins that failed to load."""
    from rich.markup import escape

    from cascade import discover, redact
    from cascade_cli.output import print_json, print_table

    found = discover()
    rows = [{**asset_row(a.spec), "table": found.tables.get(a.spec.name, a.spec.identifier)} for a in found.assets]
    failures = [{"plugin": f.plugin, "error": redact(f"{type(f.error).__name__}: {f.error}")} for f in found.failures]
    if as_json:
        print_json({"assets": rows, "failed_plugins": failures}, indent=2)
        return
    columns = ("asset", "group", "table", "unique key", "cron", "freshness (warn/fail h)", "plugin")
    lines = [
        (
            row["asset"],
            row["group"],
            row["table"],
            ", ".join(row["unique_key"]),
            row["cron"] or "-",
            "/".join(f"{h:g}" for h in row["freshness_hours"]) if row["freshness_hours"] else "-",
            row["plugin"],
        )
        for row in rows
    ]
    print_table(session(ctx).out, columns, lines, title="Cascade assets")
    for failure in failures:
        session(ctx).err.print(
            f"[yellow]plugin {escape(repr(failure['plugin']))} failed to load:[/] {escape(failure['error'])}",
            highlight=False,
        )


def asset_row(spec: AssetSpec) -> dict[str, Any]:
    return {
        "asset": spec.name,
        "group": spec.group,
        "table": spec.identifier,
        "unique_key": list(spec.unique_key),
        "cron": spec.cron,
        "freshness_hours": list(spec.freshness_hours) if spec.freshness_hours else None,
        "plugin": spec.plugin,
    }


@app.command("run")
def run_asset(
    ctx: typer.Context,
    asset: Annotated[str, typer.Argument(help="Asset name or namespace.table.")],
    date: Annotated[str, typer.Option("--date", "-d", help="Partition date, YYYY-MM-DD.", callback=parse_date)],
    branch: Annotated[str | None, typer.Option("--branch", "-b", help="Iceberg branch to write.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the result as JSON.")] = False,
    audit: Annotated[
        bool, typer.Option("--audit", help="Write-audit-publish: audit on a private branch, then publish.")
    ] = False,
) -> None:
    """Ingest one partition of an asset."""
    from cascade import discover, run
    from cascade_cli.output import print_json, print_result

    discover()
    result = run(asset, date, branch=branch, tags={"cascade/publish": "audit"} if audit else None)
    if as_json:
        print_json(result.as_dict(), indent=2)
    else:
        print_result(session(ctx).out, result)


@app.command("backfill")
def backfill_command(
    ctx: typer.Context,
    asset: Annotated[str, typer.Argument(help="Asset name or namespace.table.")],
    start: Annotated[
        str | None, typer.Option("--start", help="First partition, YYYY-MM-DD.", callback=parse_date)
    ] = None,
    end: Annotated[
        str | None, typer.Option("--end", help="Last partition (inclusive), YYYY-MM-DD.", callback=parse_date)
    ] = None,
    workers: Annotated[int, typer.Option("--workers", "-w", min=1, max=32, help="Partitions at a time.")] = 1,
    branch: Annotated[str | None, typer.Option("--branch", "-b", help="Iceberg branch to write.")] = None,
    force: Annotated[bool, typer.Option("--force", help="Re-run partitions already ingested.")] = False,
    missing: Annotated[bool, typer.Option("--missing", help="Run exactly the partitions never committed.")] = False,
    failed: Annotated[bool, typer.Option("--failed", help="Run the partitions whose last run failed.")] = False,
    since: Annotated[
        str | None, typer.Option("--since", help="With --missing/--failed: first day, 90d or YYYY-MM-DD.")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
) -> None:
    """Ingest every partition from --start to --end, resuming where earlier backfills stopped.

    With --missing and/or --failed, ingest exactly the gaps and/or the failed days that
    ``cascade status`` shows, from --since (or the asset's start_date) to today.
    """
    selecting = missing or failed
    if not selecting and (start is None or end is None):
        raise typer.BadParameter("give --start and --end, or --missing and/or --failed", param_hint="--start")
    if selecting and (start is not None or end is not None):
        raise typer.BadParameter("--missing/--failed take --since, not --start/--end", param_hint="--start")
    if since is not None and not selecting:
        raise typer.BadParameter("--since goes with --missing or --failed", param_hint="--since")
    if start is not None and end is not None and end < start:
        raise typer.BadParameter(f"--end {end} is before --start {start}", param_hint="--end")

    from rich.markup import escape

    from cascade import discover, load_config, registry, resolve_branch
    from cascade_cli.backfill import backfill, date_range, status_plan
    from cascade_cli.output import print_json

    out, err = session(ctx).out, session(ctx).err
    discover()
    chosen = registry().get(asset)
    config = load_config()
    target = resolve_branch(branch, {}, config)
    if selecting:
        partitions = status_plan(chosen, config, branch=target, since=since, missing=missing, failed=failed)
    else:
        assert start is not None and end is not None
        partitions = date_range(dt.date.fromisoformat(start), dt.date.fromisoformat(end))
    report = backfill(
        chosen,
        partitions,
        workers=workers,
        branch=target,
        force=force or selecting,  # the plan is exact: a failed day may hold an older commit
        config=config,
        console=err,
        show_progress=not as_json,
    )
    if as_json:
        print_json(report.as_dict(), indent=2)
    else:
        out.print(
            f"{len(report.succeeded)} partition(s) ingested, {len(report.skipped)} skipped (already ingested), "
            f"{len(report.failed)} failed; {report.rows:,} rows"
        )
        for partition, message in sorted(report.failed.items()):
            err.print(f"[red]failed {partition}:[/] {escape(message)}", highlight=False, soft_wrap=True)
    if report.interrupted:
        err.print("interrupted: partitions that finished stay committed; run the backfill again to resume")
        raise typer.Exit(130)
    if report.failed:
        raise typer.Exit(1)


def load(identifier: str) -> Table:
    """A table of the configured catalog, or a usage error naming it."""
    from pyiceberg.exceptions import NoSuchTableError

    from cascade import ConfigurationError, load_config, load_table, open_catalog, parse_identifier

    try:
        return load_table(open_catalog(load_config()), parse_identifier(identifier))
    except NoSuchTableError:
        raise ConfigurationError(f"no table {identifier!r} in the catalog (see: cascade tables)") from None


@app.command("tables")
def tables_command(ctx: typer.Context, as_json: JsonOption = False) -> None:
    """Tables in the catalog with row count, snapshot count, branches and last update."""
    from cascade import all_tables, load_config, open_catalog, summarize
    from cascade_cli.output import print_json, print_table

    catalog = open_catalog(load_config())
    summaries = [summarize(catalog, identifier) for identifier in all_tables(catalog)]
    if as_json:
        updated = [s.last_updated.isoformat() if s.last_updated else None for s in summaries]
        print_json([{**s.__dict__, "last_updated": u} for s, u in zip(summaries, updated, strict=True)], indent=2)
        return
    columns = ("table", "rows", "snapshots", "branches", "last update (UTC)")
    lines = [
        (
            s.identifier,
            f"{s.rows:,}",
            str(s.snapshots),
            ", ".join(s.branches),
            s.last_updated.strftime("%Y-%m-%d %H:%M:%S") if s.last_updated else "-",
        )
        for s in summaries
    ]
    print_table(session(ctx).out, columns, lines, title="Cascade tables")


def parse_filter(where: str | None, schema: Any) -> Any:
    """A pyiceberg row filter from ``--where``, checked against the table's columns (usage error otherwise)."""
    from pyiceberg.expressions import AlwaysTrue
    from pyiceberg.expressions.parser import parse
    from pyiceberg.expressions.visitors import bind
    from pyparsing import ParseException

    from cascade import ConfigurationError

    if not where:
        return AlwaysTrue()
    try:
        expression = parse(where)
    except ParseException as error:
        raise ConfigurationError(
            f"--where {where!r} does not parse (at column {error.col}); "
            'e.g. "sgv > 180", "direction = \'Flat\'", "date_string >= \'2024-05-01T00:00:00+00:00\'"'
        ) from None
    try:
        bind(schema, expression, case_sensitive=True)
    except (ValueError, TypeError) as error:
        raise ConfigurationError(f"--where {where!r}: {error} (columns: {', '.join(schema.column_names)})") from None
    return expression


@app.command("show")
def show_command(
    ctx: typer.Context,
    table_name: TableArgument,
    branch: Annotated[str, typer.Option("--branch", "-b")] = "main",
    limit: Annotated[int, typer.Option("--limit", "-n", min=1)] = 20,
    where: Annotated[str | None, typer.Option("--where", help='Row filter, e.g. "sgv > 180".')] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON lines.")] = False,
) -> None:
    """Rows of a table (on a branch), optionally filtered."""
    from cascade import ConfigurationError
    from cascade_cli.output import print_json_lines, print_table

    table = load(table_name)
    head = table.snapshot_by_name(branch)
    if head is None:
        raise ConfigurationError(f"table {table_name}: no branch {branch!r} with data")
    rows = table.scan(row_filter=parse_filter(where, table.schema()), snapshot_id=head.snapshot_id, limit=limit)
    shown = rows.to_arrow()
    if as_json:
        print_json_lines(shown.to_pylist())
        return
    title = f"{table_name}@{branch} ({shown.num_rows} rows shown)"
    print_table(session(ctx).out, shown.column_names, (r.values() for r in shown.to_pylist()), title=title, fold=True)


@app.command("query")
def query_command(
    ctx: typer.Context,
    sql: Annotated[
        str,
        typer.Argument(
            help='SQL over Cascade tables named namespace.table, e.g. "select count(*) from nightscout.glucose"'
        ),
    ],
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON lines.")] = False,
) -> None:
    """Read-only SQL over the Cascade tables with DuckDB (pip install 'cascade-cli[query]')."""
    from cascade import ConfigurationError, load_config, open_catalog
    from cascade_cli.output import print_json_lines, print_table

    try:
        import duckdb  # noqa: F401
    except ImportError:
        raise ConfigurationError("cascade query needs DuckDB: pip install 'cascade-cli[query]'") from None
    from cascade_cli.query import run_query

    rows = run_query(open_catalog(load_config()), sql)
    if as_json:
        print_json_lines(rows.to_pylist())
        return
    print_table(session(ctx).out, rows.column_names, (row.values() for row in rows.to_pylist()), fold=True)


@app.command("history")
def history_command(
    ctx: typer.Context,
    table_name: TableArgument,
    branch: Annotated[str, typer.Option("--branch", "-b")] = "main",
    as_json: JsonOption = False,
) -> None:
    """Snapshots of a branch with time, operation, rows added/removed and the Cascade run behind each."""
    from cascade import history
    from cascade_cli.output import print_json, print_table

    records = history(load(table_name), branch)
    if as_json:
        print_json([{**r.__dict__, "committed_at": r.committed_at.isoformat()} for r in records], indent=2)
        return
    columns = ("committed (UTC)", "snapshot", "operation", "+rows", "-rows", "total", "asset", "partition", "run")
    lines = [
        (
            r.committed_at.strftime("%Y-%m-%d %H:%M:%S"),
            str(r.snapshot_id),
            r.operation,
            f"{r.rows_added:,}",
            f"{r.rows_removed:,}",
            "-" if r.total_rows is None else f"{r.total_rows:,}",
            r.asset or "-",
            r.partition or "-",
            r.run_id or "-",
        )
        for r in records
    ]
    print_table(session(ctx).out, columns, lines, title=f"history of {table_name}@{branch}")


branch_app = CascadeTyper(help="Iceberg branches of a table: list, create, drop, publish.")
BranchArgument = Annotated[str, typer.Argument(metavar="NAME")]
app.add_typer(branch_app, name="branch")


def say(ctx: typer.Context, text: str) -> None:
    """One plain line on stdout: names from the catalog are printed as they are, never as markup."""
    session(ctx).out.print(text, markup=False, highlight=False)


@branch_app.command("list")
def branch_list(ctx: typer.Context, table_name: TableArgument) -> None:
    """Branches and the snapshot each points at."""
    from cascade import branches

    for name, snapshot in sorted(branches(load(table_name)).items()):
        say(ctx, f"{name}\t{snapshot}")


@branch_app.command("create")
def branch_create(ctx: typer.Context, table_name: TableArgument, name: BranchArgument) -> None:
    """Create branch NAME at main's head."""
    from cascade import create_branch

    snapshot = create_branch(load(table_name), name)
    say(ctx, f"created branch {name} of {table_name} at snapshot {snapshot}")


@branch_app.command("drop")
def branch_drop(ctx: typer.Context, table_name: TableArgument, name: BranchArgument) -> None:
    """Drop branch NAME (its snapshots stay until expired)."""
    from cascade import drop_branch

    drop_branch(load(table_name), name)
    say(ctx, f"dropped branch {name} of {table_name}")


@branch_app.command("publish")
def branch_publish(ctx: typer.Context, table_name: TableArgument, name: BranchArgument) -> None:
    """Fast-forward main to branch NAME; refused when main has diverged from it."""
    from cascade import publish_branch

    snapshot = publish_branch(load(table_name), name)
    say(ctx, f"published {name}: main of {table_name} is now at snapshot {snapshot}")


app.command("maintain")(maintain_command)
app.command("status")(status_command)


@app.command("doctor")
def doctor_command(ctx: typer.Context, as_json: JsonOption = False) -> None:
    """Configuration in effect (secrets masked), catalog and warehouse health, plugins, versions."""
    from rich.markup import escape

    from cascade import redact_values
    from cascade_cli.doctor import diagnose
    from cascade_cli.output import print_json

    report = diagnose()
    if as_json:
        print_json(report, indent=2)
    else:
        out = session(ctx).out
        for section, value in report.items():
            out.print(f"[bold]{escape(section)}[/]")
            out.print(redact_values(value), markup=False, highlight=False)
    if not report["healthy"]:
        raise typer.Exit(1)


@app.command("demo")
def demo(
    ctx: typer.Context,
    days: Annotated[int, typer.Option(help="How many days back from yesterday to ingest.")] = 7,
) -> None:
    """Offline tour: a local Nightscout-compatible server, a week of glucose, and a re-run."""
    from cascade import ConfigurationError

    try:
        from cascade_cli.demo import run_demo
    except ImportError as error:
        raise ConfigurationError(
            f"the demo needs the nightscout plugin: pip install 'cascade-cli[demo]' ({error})"
        ) from None
    run_demo(session(ctx).out, days=days)


def main() -> None:
    try:
        app()
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        sys.exit(130)
    finally:
        # The process is about to end: spare the interpreter's shutdown a garbage collection over
        # everything the command imported (0.3-0.5 s after reading a table). Objects are still
        # released by reference count; only unreachable cycles are left to the operating system.
        gc.freeze()


if __name__ == "__main__":
    main()
