"""structlog set-up for applications: readable on a terminal, JSON lines otherwise; always on stderr.

The library never calls this: the ``cascade`` command and the Dagster adapter do, because the
application decides what is printed. It configures structlog only when the application has not
(``structlog.is_configured()``) unless forced, and routes the standard-library logging of dlt
and pyiceberg through the same renderer. Every rendered line is redacted last, so a
secret in an exception's traceback is masked too.
"""

from __future__ import annotations

import logging
import sys
from typing import Any, TextIO

import structlog

from cascade.redaction import redact

QUIET_LIBRARIES = {"dlt": logging.WARNING, "pyiceberg": logging.WARNING}


class _StandardError:
    """``sys.stderr`` as it is at each write, so a swapped stream (tests, a redacting wrapper) is followed."""

    def write(self, text: str) -> int:
        return sys.stderr.write(text)

    def flush(self) -> None:
        sys.stderr.flush()

    def isatty(self) -> bool:
        return sys.stderr.isatty()


def _redact_event(_: Any, __: str, event_dict: dict[str, Any]) -> dict[str, Any]:
    return {k: redact(v) if isinstance(v, str) else v for k, v in event_dict.items()}


def _redact_rendered(_: Any, __: str, rendered: Any) -> Any:
    """The last processor: the rendered line, tracebacks included, with secrets masked."""
    return redact(rendered) if isinstance(rendered, str) else rendered


def configure_logging(
    log_format: str = "auto", level: str = "INFO", *, force: bool = False, stream: TextIO | None = None
) -> None:
    """Configure structlog (and stdlib logging) once; ``force`` reconfigures. Logs go to ``stream`` (stderr)."""
    if structlog.is_configured() and not force:
        return
    stream = stream or _StandardError()  # type: ignore[assignment]
    assert stream is not None
    as_json = log_format == "json" or (log_format == "auto" and not stream.isatty())
    renderer: Any = structlog.processors.JSONRenderer() if as_json else structlog.dev.ConsoleRenderer(colors=False)
    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        _redact_event,
    ]
    numeric = logging.getLevelNamesMapping().get(level.upper(), logging.INFO)
    structlog.configure(
        processors=[*shared, structlog.processors.format_exc_info, renderer, _redact_rendered],
        wrapper_class=structlog.make_filtering_bound_logger(numeric),
        logger_factory=structlog.PrintLoggerFactory(file=stream),
        cache_logger_on_first_use=False,
    )
    handler = logging.StreamHandler(stream)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, renderer, _redact_rendered],
            foreign_pre_chain=[*shared, structlog.processors.format_exc_info],
        )
    )
    for name, library_level in QUIET_LIBRARIES.items():
        library = logging.getLogger(name)
        library.handlers = [handler]
        library.setLevel(max(library_level, numeric))
        library.propagate = False
