"""How the ``cascade`` command writes: secrets masked on every byte, stored values never read as markup,
plain tab-separated lines when stdout is not a terminal."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any, TextIO

from cascade import redact, redact_values

if TYPE_CHECKING:
    from rich.console import Console

    from cascade import IngestionResult


class RedactingStream:
    """A text stream that masks secrets (:func:`cascade.redact`) in everything written to it.

    The command wraps its stdout and stderr in one, so whatever reaches them (its own output, a
    plugin's print or log line, a traceback) passes the same redaction.
    """

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream

    def write(self, text: str) -> int:
        self.stream.write(redact(text))
        return len(text)

    def writelines(self, lines: Iterable[str]) -> None:
        for line in lines:
            self.write(line)

    def flush(self) -> None:
        self.stream.flush()

    def isatty(self) -> bool:
        return self.stream.isatty()

    def fileno(self) -> int:
        return self.stream.fileno()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.stream, name)


def guard_standard_streams() -> None:
    """Wrap ``sys.stdout`` and ``sys.stderr`` in :class:`RedactingStream` (once)."""
    if not isinstance(sys.stdout, RedactingStream):
        sys.stdout = RedactingStream(sys.stdout)
    if not isinstance(sys.stderr, RedactingStream):
        sys.stderr = RedactingStream(sys.stderr)


def cell(value: object) -> str:
    return "" if value is None else str(value)


def plain_cell(value: object) -> str:
    """One value on one tab-separated line: tabs, newlines and backslashes escaped, nothing cut."""
    return cell(value).replace("\\", "\\\\").replace("\t", "\\t").replace("\n", "\\n").replace("\r", "\\r")


def print_table(
    console: Console,
    columns: Sequence[str],
    rows: Iterable[Sequence[object]],
    *,
    title: str | None = None,
    show_header: bool = True,
    fold: bool = False,
) -> None:
    """A Rich table on a terminal, else tab-separated lines (a header line first) with full values.

    Cells are :class:`rich.text.Text`, so a stored ``"[/bold]"`` or ``"[link=...]"`` prints as itself.
    """
    from rich.markup import escape
    from rich.table import Table
    from rich.text import Text

    if not console.is_terminal:
        if show_header:
            console.file.write("\t".join(plain_cell(c) for c in columns) + "\n")
        for row in rows:
            console.file.write("\t".join(plain_cell(v) for v in row) + "\n")
        console.file.flush()
        return
    table = Table(title=escape(title) if title else None, show_header=show_header)
    for column in columns:
        table.add_column(Text(column), overflow="fold" if fold else "ellipsis")
    for row in rows:
        table.add_row(*(Text(cell(v)) for v in row))
    console.print(table)


def print_json(value: Any, **options: Any) -> None:
    """JSON on stdout, secrets masked in every string value; other values (paths, times) as their text."""
    print(json.dumps(redact_values(value), default=lambda other: redact(str(other)), **options))


def print_json_lines(rows: Iterable[dict[str, Any]]) -> None:
    """One JSON object a line, for ``--json`` of table rows (stored values printed as stored)."""
    for row in rows:
        print(json.dumps(row, default=str))


def print_result(console: Console, result: IngestionResult) -> None:
    """A run's result as a key/value table titled ``asset partition -> table@branch``."""
    rows = [(key, value) for key, value in result.as_dict().items() if key != "phase_seconds"]
    rows.append(("phases (s)", ", ".join(f"{k} {v:.3f}" for k, v in result.phase_seconds.items())))
    title = f"{result.asset} {result.partition} -> {result.table}@{result.branch}"
    if not console.is_terminal:
        console.file.write(title + "\n")
    print_table(console, ("key", "value"), rows, title=title, show_header=False)


def first_line(error: BaseException) -> str:
    """An error's message, masked, up to its first line break (drivers append SQL and links)."""
    return (redact(str(error)).strip().splitlines() or [type(error).__name__])[0]
