"""``cascade``: list and run Cascade assets from a shell. A thin layer over ``cascade``'s core.

Exit codes: 0 success, 1 a failed run, 2 bad usage (unknown asset, bad date, bad configuration).
"""

from __future__ import annotations

import datetime as dt
import json
import sys
from typing import Annotated, Any, NoReturn

import typer
from rich.console import Console
from rich.table import Table

import cascade
from cascade.errors import CascadeError, ConfigurationError, UnknownAssetError
from cascade.redaction import redact

app = typer.Typer(help="Land data from APIs into Apache Iceberg tables.", no_args_is_help=True, add_completion=False)
out = Console()
err = Console(stderr=True)

USAGE_ERRORS = (UnknownAssetError, ConfigurationError)
_state: dict[str, bool] = {"verbose": False}


@app.callback()
def _options(
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Show tracebacks on errors.")] = False,
) -> None:
    _state["verbose"] = verbose


def fail(error: BaseException) -> NoReturn:
    """One clear line on stderr; exit 2 for usage errors, 1 for failed runs."""
    if _state["verbose"]:
        err.print_exception()
    first_line = redact(str(error)).splitlines()[0] if str(error) else type(error).__name__
    err.print(f"[bold red]error:[/] {first_line}", markup=True, highlight=False, soft_wrap=True)
    if not _state["verbose"] and len(str(error).splitlines()) > 1:
        for line in redact(str(error)).splitlines()[1:12]:
            err.print(f"  {line}", markup=False, highlight=False, soft_wrap=True)
    raise typer.Exit(2 if isinstance(error, USAGE_ERRORS) else 1)


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
    rows = [asset_row(a.spec) for a in found.assets]
    failures = [{"plugin": f.plugin, "error": redact(f"{type(f.error).__name__}: {f.error}")} for f in found.failures]
    if as_json:
        print(json.dumps({"assets": rows, "failed_plugins": failures}, indent=2))
        return
    table = Table(title="Cascade assets")
    for column in ("asset", "group", "table", "unique key", "cron", "freshness (warn/fail h)", "plugin"):
        table.add_column(column)
    for row in rows:
        freshness = "/".join(f"{h:g}" for h in row["freshness_hours"]) if row["freshness_hours"] else "-"
        table.add_row(
            row["asset"],
            row["group"],
            row["table"],
            ", ".join(row["unique_key"]),
            row["cron"] or "-",
            freshness,
            row["plugin"],
        )
    out.print(table)
    for failure in failures:
        err.print(f"[yellow]plugin {failure['plugin']!r} failed to load:[/] {failure['error']}", highlight=False)


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
) -> None:
    """Ingest one partition of an asset."""
    try:
        cascade.discover()
        result = cascade.run(asset, date, branch=branch)
    except CascadeError as error:
        fail(error)
    if as_json:
        print(json.dumps(result.as_dict(), indent=2))
    else:
        print_result(result)


def print_result(result: cascade.IngestionResult) -> None:
    table = Table(title=f"{result.asset} {result.partition} -> {result.table}@{result.branch}", show_header=False)
    for key, value in result.as_dict().items():
        if key != "phase_seconds":
            table.add_row(key, str(value))
    table.add_row("phases (s)", ", ".join(f"{k} {v:.3f}" for k, v in result.phase_seconds.items()))
    out.print(table)


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
