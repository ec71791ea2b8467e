"""Arguments and options that several commands share, declared once."""

from __future__ import annotations

import datetime as dt
from typing import Annotated

import typer


def parse_date(value: str | None) -> str | None:
    """An ISO date (``YYYY-MM-DD``) as given, or a usage error; ``None`` (an option left out) passes."""
    if value is None:
        return None
    try:
        return dt.date.fromisoformat(value).isoformat()
    except ValueError:
        raise typer.BadParameter(f"{value!r} is not a date (YYYY-MM-DD)") from None


AssetArgument = Annotated[str, typer.Argument(metavar="ASSET", help="Asset name or namespace.table.")]
TableArgument = Annotated[str, typer.Argument(metavar="TABLE", help="namespace.table")]
DateOption = Annotated[str, typer.Option("--date", "-d", help="Partition date, YYYY-MM-DD.", callback=parse_date)]
JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON.")]
