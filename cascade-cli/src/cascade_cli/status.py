"""``cascade status``: which days of each asset are committed, late, failed or missing, and is it fresh.

    cascade status [ASSET ...] [--since 90d] [--branch B] [--weeks 26] [--json]

Per asset, a calendar of the last weeks in the style of GitHub's contributions (in colour on a
terminal, in plain characters in a pipe), a legend, and one line of summary. Exit code 0 when
every asset is fresh or only late, 1 when any is past its fail window (a health check). The
judgement is the core's (:mod:`cascade.coverage`), read from the tables and the run log.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated

import typer

from cascade_cli.app import session
from cascade_cli.options import JsonOption

if TYPE_CHECKING:
    from rich.console import Console
    from rich.text import Text

    from cascade import AssetStatus, State

WEEKDAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")


@dataclass(frozen=True)
class Glyph:
    plain: str
    rich: str
    style: str


GLYPHS: dict[State, Glyph] = {
    "committed": Glyph("#", "■", "green"),
    "late": Glyph("+", "■", "yellow"),
    "failed": Glyph("x", "■", "bold red"),
    "missing": Glyph(".", "□", "red"),
    "future": Glyph("-", "·", "bright_black"),
}
OUTSIDE = Glyph(" ", " ", "")  # before the first day looked at


def status_command(
    ctx: typer.Context,
    assets: Annotated[
        list[str] | None, typer.Argument(metavar="[ASSET]...", help="Asset names (default: every asset).")
    ] = None,
    since: Annotated[
        str | None, typer.Option("--since", help="First day: 90d, 12w or YYYY-MM-DD (default: start_date).")
    ] = None,
    branch: Annotated[str | None, typer.Option("--branch", "-b", help="Iceberg branch to look at.")] = None,
    weeks: Annotated[int, typer.Option("--weeks", min=1, max=106, help="Weeks the calendar shows.")] = 26,
    as_json: JsonOption = False,
    now: Annotated[str | None, typer.Option("--now", hidden=True, help="Judge as of this ISO time (tests).")] = None,
) -> None:
    """Per asset: a calendar of committed, late, failed and missing days, and whether it is fresh."""
    from cascade_cli.output import print_json

    statuses = collect(assets or [], since=since, branch=branch, now=parse_now(now))
    if as_json:
        print_json({"fresh": all_fresh(statuses), "assets": [s.as_dict() for s in statuses]}, indent=2)
    else:
        for status in statuses:
            print_status(session(ctx).out, status, weeks=weeks)
    if not all_fresh(statuses):
        raise typer.Exit(1)


def parse_now(value: str | None) -> dt.datetime:
    from cascade import ConfigurationError

    if value is None:
        return dt.datetime.now(dt.UTC)
    try:
        moment = dt.datetime.fromisoformat(value)
    except ValueError:
        raise ConfigurationError(f"--now {value!r} is not an ISO 8601 time") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=dt.UTC)


def collect(names: Sequence[str], *, since: str | None, branch: str | None, now: dt.datetime) -> list[AssetStatus]:
    """The status of each named asset (every registered asset when none is named)."""
    from cascade import (
        discover,
        load_config,
        open_catalog,
        parse_since,
        registry,
        resolve_branch,
        table_identifier,
        table_status,
    )

    discover()
    assets = registry()
    chosen = [assets.get(name) for name in names] if names else sorted(assets.assets(), key=lambda a: a.spec.name)
    config = load_config()
    catalog = open_catalog(config)
    first = parse_since(since, now.astimezone(dt.UTC).date()) if since else None
    target = resolve_branch(branch, {}, config)
    return [
        table_status(
            catalog, asset.spec, ".".join(table_identifier(asset.spec, config)), branch=target, now=now, since=first
        )
        for asset in chosen
    ]


def all_fresh(statuses: Sequence[AssetStatus]) -> bool:
    """True unless an asset is past its fail window (late ones still pass a health check)."""
    return all(s.freshness.level != "fail" for s in statuses)


def print_status(console: Console, status: AssetStatus, *, weeks: int) -> None:
    from rich.markup import escape
    from rich.text import Text

    fancy = console.is_terminal
    console.print(f"[bold]{escape(status.asset)}[/]  {escape(status.table)} @ {escape(status.branch)}", highlight=False)
    for line in calendar_lines(status, weeks=weeks, fancy=fancy):
        console.print(line, highlight=False, crop=False, overflow="ignore", no_wrap=True)
    console.print(legend(fancy), highlight=False, no_wrap=True)
    style = {"fail": "bold red", "warn": "yellow", "fresh": "green"}.get(status.freshness.level, "")
    console.print(Text(status.summary(), style=style if fancy else ""), highlight=False, soft_wrap=True)
    console.print()


def calendar_lines(status: AssetStatus, *, weeks: int, fancy: bool) -> list[Text]:
    """A header of month names, then one row per weekday, one column per week (oldest left)."""
    from rich.text import Text

    states = {dt.date.fromisoformat(d.partition): d.state for d in status.days}
    last_monday = status.today - dt.timedelta(days=status.today.weekday())
    mondays = [last_monday - dt.timedelta(weeks=n) for n in range(weeks - 1, -1, -1)]
    # Month names take three characters; write each where its first week starts.
    months = [" "] * (2 * len(mondays) + 1)
    shown, free_from = None, 0
    for column, monday in enumerate(mondays):
        if monday.month != shown:
            shown = monday.month
            if 2 * column >= free_from and 2 * column + 3 <= len(months):
                months[2 * column : 2 * column + 3] = list(monday.strftime("%b"))
                free_from = 2 * column + 4
    lines = [Text("    " + "".join(months).rstrip())]
    for weekday in range(7):
        row = Text(WEEKDAYS[weekday] + " ")
        for monday in mondays:
            day = monday + dt.timedelta(days=weekday)
            if day > status.today:
                glyph = GLYPHS["future"]
            else:
                state = states.get(day)
                glyph = GLYPHS[state] if state is not None else OUTSIDE
            row.append(glyph.rich if fancy else glyph.plain, style=glyph.style if fancy else "")
            row.append(" ")
        lines.append(row)
    return lines


def legend(fancy: bool) -> Text:
    from rich.text import Text

    from cascade import STATES

    text = Text("    ")
    for state in STATES:
        glyph = GLYPHS[state]
        text.append(glyph.rich if fancy else glyph.plain, style=glyph.style if fancy else "")
        text.append(f" {state}  ")
    text.rstrip()
    return text
