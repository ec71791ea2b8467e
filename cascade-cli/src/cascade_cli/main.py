"""``cascade``: list and run Cascade assets from a shell. A thin layer over ``cascade``'s core.

Exit codes: 0 success, 1 a failed run, 2 bad usage (unknown asset, bad date, bad configuration).
Every error, expected or not, is one line on stderr (``--verbose`` adds the traceback, redacted):
commands raise, and :class:`CascadeGroup` reports.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import sys
from typing import Annotated, Any, NoReturn

import typer
from rich.console import Console
from rich.markup import escape

import cascade
from cascade import check_branch_name
from cascade.errors import CascadeError, ConfigurationError, SchemaEvolutionError, UnknownAssetError, ValidationError
from cascade.logs import configure_logging
from cascade.redaction import redact, redact_values, redacted_traceback
from cascade_cli.maintain import maintain_command
from cascade_cli.output import guard_standard_streams, print_table
from cascade_cli.quarantine import quarantine_app
from cascade_cli.schema import schema_app
from cascade_cli.status import status_command


class CascadeGroup(typer.core.TyperGroup):
    """The one error path: whatever a command raises becomes one line on stderr and an exit code."""

    def invoke(self, ctx: Any) -> Any:
        try:
            return super().invoke(ctx)
        except Exception as error:
            if _is_click_control(error):
                raise
            fail(error)


def _is_click_control(error: Exception) -> bool:
    """Exit, Abort and usage errors of click (or the click that typer vendors) keep their own handling."""
    return any(kind.__module__.split(".")[0] in ("click", "typer") for kind in type(error).__mro__)


app = typer.Typer(
    cls=CascadeGroup, help="Land data from APIs into Apache Iceberg tables.", no_args_is_help=True, add_completion=False
)
app.add_typer(schema_app, name="schema")
app.add_typer(quarantine_app, name="quarantine")
out = Console()
err = Console(stderr=True)

USAGE_ERRORS = (UnknownAssetError, ConfigurationError)
_state: dict[str, bool] = {"verbose": False}


@app.callback()
def _options(
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Show tracebacks on errors.")] = False,
) -> None:
    _state["verbose"] = verbose
    set_up_process()


def set_up_process() -> None:
    """What the command, as the application, decides for its process (the library decides none of it):
    every byte out is redacted, configured secrets are known before anything prints, logs go to
    stderr (so ``--json`` stdout stays JSON), and dlt does not phone home."""
    guard_standard_streams()
    os.environ.setdefault("RUNTIME__DLTHUB_TELEMETRY", "false")
    try:
        config = cascade.load_config()  # registers the configured secrets with the redaction
    except CascadeError:
        config = None  # not swallowed: each command that needs the configuration loads it and reports this
    configure_logging(config.log_format if config else "auto", config.log_level if config else "INFO", force=True)


LISTING_ERRORS = (ValidationError, SchemaEvolutionError)  # their further lines are Cascade's own list


def fail(error: BaseException) -> NoReturn:
    """One clear line on stderr; exit 2 for usage errors, 1 for failed runs and everything else."""
    if _state["verbose"]:
        err.print(redacted_traceback(error), markup=False, highlight=False, soft_wrap=True, end="")
    text = redact(str(error)).strip()
    lines = text.splitlines() or [""]
    first_line = lines[0] if isinstance(error, CascadeError) else f"{type(error).__name__}: {lines[0]}".rstrip(": ")
    if not isinstance(error, CascadeError) and not _state["verbose"]:
        first_line += " (cascade --verbose shows the traceback)"
    err.print(f"[bold red]error:[/] {escape(first_line)}", highlight=False, soft_wrap=True)
    if not _state["verbose"] and isinstance(error, LISTING_ERRORS):  # the failing checks or changes, one per line
        for line in lines[1:12]:
            err.print(f"  {line}", markup=False, highlight=False, soft_wrap=True)
    raise typer.Exit(2 if isinstance(error, USAGE_ERRORS) else 1)


def print_json(value: Any, **options: Any) -> None:
    """JSON on stdout, secrets masked in every string value."""
    print(json.dumps(redact_values(value), **options))


def parse_date(value: str) -> str:
    try:
        return dt.date.fromisoformat(value).isoformat()
    except ValueError:
        raise typer.BadParameter(f"{value!r} is not a date (YYYY-MM-DD)") from None


@app.command("list")
def list_assets(as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False) -> None:
    """List the assets that installed plugins provide, and plugins that failed to load."""
    try:
        found = cascade.discover()
    except CascadeError as error:
        fail(error)
    rows = [{**asset_row(a.spec), "table": found.tables.get(a.spec.name, a.spec.identifier)} for a in found.assets]
    failures = [{"plugin": f.plugin, "error": redact(f"{type(f.error).__name__}: {f.error}")} for f in found.failures]
    if as_json:
        print_json({"assets": rows, "failed_plugins": failures}, indent=2)
        return
    columns = ("asset", "group", "table", "unique key", "cron", "freshness (warn/fail h)", "plugin")
    lines = []
    for row in rows:
        freshness = "/".join(f"{h:g}" for h in row["freshness_hours"]) if row["freshness_hours"] else "-"
        lines.append(
            (
                row["asset"],
                row["group"],
                row["table"],
                ", ".join(row["unique_key"]),
                row["cron"] or "-",
                freshness,
                row["plugin"],
            )
        )
    print_table(out, columns, lines, title="Cascade assets")
    for failure in failures:
        err.print(
            f"[yellow]plugin {escape(repr(failure['plugin']))} failed to load:[/] {escape(failure['error'])}",
            highlight=False,
        )


def asset_row(spec: cascade.AssetSpec) -> dict[str, Any]:
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
    asset: Annotated[str, typer.Argument(help="Asset name or namespace.table.")],
    date: Annotated[str, typer.Option("--date", "-d", help="Partition date, YYYY-MM-DD.", callback=parse_date)],
    branch: Annotated[str | None, typer.Option("--branch", "-b", help="Iceberg branch to write.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the result as JSON.")] = False,
    audit: Annotated[
        bool, typer.Option("--audit", help="Write-audit-publish: audit on a private branch, then publish.")
    ] = False,
) -> None:
    """Ingest one partition of an asset."""
    try:
        cascade.discover()
        result = cascade.run(asset, date, branch=branch, tags={"cascade/publish": "audit"} if audit else None)
    except CascadeError as error:
        fail(error)
    if as_json:
        print_json(result.as_dict(), indent=2)
    else:
        print_result(result)


def print_result(result: cascade.IngestionResult) -> None:
    rows = [(key, value) for key, value in result.as_dict().items() if key != "phase_seconds"]
    rows.append(("phases (s)", ", ".join(f"{k} {v:.3f}" for k, v in result.phase_seconds.items())))
    title = f"{result.asset} {result.partition} -> {result.table}@{result.branch}"
    if not out.is_terminal:
        out.file.write(title + "\n")
    print_table(out, ("key", "value"), rows, title=title, show_header=False)


def parse_optional_date(value: str | None) -> str | None:
    return None if value is None else parse_date(value)


@app.command("backfill")
def backfill_command(
    asset: Annotated[str, typer.Argument(help="Asset name or namespace.table.")],
    start: Annotated[
        str | None, typer.Option("--start", help="First partition, YYYY-MM-DD.", callback=parse_optional_date)
    ] = None,
    end: Annotated[
        str | None,
        typer.Option("--end", help="Last partition (inclusive), YYYY-MM-DD.", callback=parse_optional_date),
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
    from cascade_cli.backfill import backfill, date_range, status_plan

    selecting = missing or failed
    if not selecting and (start is None or end is None):
        raise typer.BadParameter("give --start and --end, or --missing and/or --failed", param_hint="--start")
    if selecting and (start is not None or end is not None):
        raise typer.BadParameter("--missing/--failed take --since, not --start/--end", param_hint="--start")
    if since is not None and not selecting:
        raise typer.BadParameter("--since goes with --missing or --failed", param_hint="--since")
    if start is not None and end is not None and end < start:
        raise typer.BadParameter(f"--end {end} is before --start {start}", param_hint="--end")
    try:
        cascade.discover()
        chosen = cascade.registry().get(asset)
        config = cascade.load_config()
        target = check_branch_name(branch or config.branch or "main")
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
    except CascadeError as error:
        fail(error)
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


def _catalog() -> Any:
    from cascade.catalog import open_catalog

    return open_catalog(cascade.load_config())


def _load(identifier: str) -> Any:
    from pyiceberg.exceptions import NoSuchTableError

    from cascade.tables import load_table, parse_identifier

    try:
        return load_table(_catalog(), parse_identifier(identifier))
    except NoSuchTableError:
        raise ConfigurationError(f"no table {identifier!r} in the catalog (see: cascade tables)") from None


@app.command("tables")
def tables_command(as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False) -> None:
    """Tables in the catalog with row count, snapshot count, branches and last update."""
    from cascade.tables import all_tables, summarize

    try:
        catalog = _catalog()
        summaries = [summarize(catalog, identifier) for identifier in all_tables(catalog)]
    except CascadeError as error:
        fail(error)
    if as_json:
        rows = [
            {**s.__dict__, "last_updated": s.last_updated.isoformat() if s.last_updated else None} for s in summaries
        ]
        print_json(json.loads(json.dumps(rows, default=list)), indent=2)
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
    print_table(out, columns, lines, title="Cascade tables")


def parse_filter(where: str | None, schema: Any) -> Any:
    """A pyiceberg row filter from ``--where``, checked against the table's columns (usage error otherwise)."""
    from pyiceberg.expressions import AlwaysTrue
    from pyiceberg.expressions.parser import parse
    from pyiceberg.expressions.visitors import bind
    from pyparsing import ParseException

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
    table_name: Annotated[str, typer.Argument(metavar="TABLE", help="namespace.table")],
    branch: Annotated[str, typer.Option("--branch", "-b")] = "main",
    limit: Annotated[int, typer.Option("--limit", "-n", min=1)] = 20,
    where: Annotated[str | None, typer.Option("--where", help='Row filter, e.g. "sgv > 180".')] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON lines.")] = False,
) -> None:
    """Rows of a table (on a branch), optionally filtered."""
    try:
        table = _load(table_name)
        head = table.snapshot_by_name(branch)
        if head is None:
            raise ConfigurationError(f"table {table_name}: no branch {branch!r} with data")
        rows = table.scan(
            row_filter=parse_filter(where, table.schema()), snapshot_id=head.snapshot_id, limit=limit
        ).to_arrow()
    except CascadeError as error:
        fail(error)
    if as_json:
        for row in rows.to_pylist():
            print(json.dumps(row, default=str))
        return
    title = f"{table_name}@{branch} ({rows.num_rows} rows shown)"
    print_table(out, rows.column_names, (row.values() for row in rows.to_pylist()), title=title, fold=True)


@app.command("query")
def query_command(
    sql: Annotated[
        str,
        typer.Argument(
            help='SQL over Cascade tables named namespace.table, e.g. "select count(*) from nightscout.glucose"'
        ),
    ],
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON lines.")] = False,
) -> None:
    """Read-only SQL over the Cascade tables with DuckDB (pip install 'cascade-cli[query]')."""
    try:
        import duckdb  # noqa: F401
    except ImportError:
        fail(ConfigurationError("cascade query needs DuckDB: pip install 'cascade-cli[query]'"))
    from cascade_cli.query import run_query

    try:
        rows = run_query(_catalog(), sql)
    except CascadeError as error:
        fail(error)
    if as_json:
        for row in rows.to_pylist():
            print(json.dumps(row, default=str))
        return
    print_table(out, rows.column_names, (row.values() for row in rows.to_pylist()), fold=True)


@app.command("history")
def history_command(
    table_name: Annotated[str, typer.Argument(metavar="TABLE", help="namespace.table")],
    branch: Annotated[str, typer.Option("--branch", "-b")] = "main",
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Snapshots of a branch with time, operation, rows added/removed and the Cascade run behind each."""
    from cascade.tables import history

    try:
        records = history(_load(table_name), branch)
    except CascadeError as error:
        fail(error)
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
    print_table(out, columns, lines, title=f"history of {table_name}@{branch}")


branch_app = typer.Typer(help="Iceberg branches of a table: list, create, drop, publish.", no_args_is_help=True)
TableArgument = Annotated[str, typer.Argument(metavar="TABLE")]
BranchArgument = Annotated[str, typer.Argument(metavar="NAME")]
app.add_typer(branch_app, name="branch")


@branch_app.command("list")
def branch_list(table_name: TableArgument) -> None:
    """Branches and the snapshot each points at."""
    from cascade.catalog import branches

    try:
        found = branches(_load(table_name))
    except CascadeError as error:
        fail(error)
    for name, snapshot in sorted(found.items()):
        out.print(f"{name}\t{snapshot}", markup=False, highlight=False)


@branch_app.command("create")
def branch_create(
    table_name: TableArgument,
    name: BranchArgument,
) -> None:
    """Create branch NAME at main's head."""
    from cascade.tables import create_branch

    try:
        snapshot = create_branch(_load(table_name), name)
    except CascadeError as error:
        fail(error)
    out.print(f"created branch {name} of {table_name} at snapshot {snapshot}", markup=False, highlight=False)


@branch_app.command("drop")
def branch_drop(
    table_name: TableArgument,
    name: BranchArgument,
) -> None:
    """Drop branch NAME (its snapshots stay until expired)."""
    from cascade.tables import drop_branch

    try:
        drop_branch(_load(table_name), name)
    except CascadeError as error:
        fail(error)
    out.print(f"dropped branch {name} of {table_name}", markup=False, highlight=False)


@branch_app.command("publish")
def branch_publish(
    table_name: TableArgument,
    name: BranchArgument,
) -> None:
    """Fast-forward main to branch NAME; refused when main has diverged from it."""
    from cascade.tables import publish_branch

    try:
        snapshot = publish_branch(_load(table_name), name)
    except CascadeError as error:
        fail(error)
    out.print(f"published {name}: main of {table_name} is now at snapshot {snapshot}", markup=False, highlight=False)


app.command("maintain")(maintain_command)
app.command("status")(status_command)


@app.command("doctor")
def doctor_command(as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False) -> None:
    """Configuration in effect (secrets masked), catalog and warehouse health, plugins, versions."""
    from cascade_cli.doctor import diagnose

    report = diagnose()
    if as_json:
        print_json(json.loads(json.dumps(report, default=str)), indent=2)
    else:
        for section, value in report.items():
            out.print(f"[bold]{escape(section)}[/]")
            out.print(redact_values(value), markup=False, highlight=False)
    if not report["healthy"]:
        raise typer.Exit(1)


@app.command("demo")
def demo(
    days: Annotated[int, typer.Option(help="How many days back from yesterday to ingest.")] = 7,
) -> None:
    """Offline tour: a local Nightscout-compatible server, a week of glucose, and a re-run."""
    try:
        from cascade_cli.demo import run_demo
    except ImportError as error:
        fail(ConfigurationError(f"the demo needs the nightscout plugin: pip install 'cascade-cli[demo]' ({error})"))
    try:
        run_demo(out, days=days)
    except CascadeError as error:
        fail(error)


def main() -> None:
    try:
        app()
    except KeyboardInterrupt:
        err.print("interrupted")
        sys.exit(130)


if __name__ == "__main__":
    main()
