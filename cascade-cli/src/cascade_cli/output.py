"""How the ``cascade`` command writes: secrets masked on every byte, stored values never read as markup,
plain tab-separated lines when stdout is not a terminal."""

from __future__ import annotations

import sys
from collections.abc import Iterable, Sequence
from typing import Any, TextIO

from rich.console import Console
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from cascade.redaction import redact


class RedactingStream:
    """A text stream that masks secrets (:func:`cascade.redaction.redact`) in everything written to it.

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
