"""structlog set-up: readable on a terminal, JSON lines otherwise; always on stderr.

Cascade configures structlog only when the application has not (``structlog.is_configured()``),
and routes the standard-library logging of dlt and pyiceberg through the same renderer.
"""

from __future__ import annotations

import logging
import sys
from typing import Any, TextIO

import structlog

from cascade.redaction import redact

QUIET_LIBRARIES = {"dlt": logging.WARNING, "pyiceberg": logging.WARNING}


def _redact_event(_: Any, __: str, event_dict: dict[str, Any]) -> dict[str, Any]:
    return {k: redact(v) if isinstance(v, str) else v for k, v in event_dict.items()}


def configure_logging(
    log_format: str = "auto", level: str = "INFO", *, force: bool = False, stream: TextIO | None = None
) -> None:
    """Configure structlog (and stdlib logging) once; ``force`` reconfigures. Logs go to ``stream`` (stderr)."""
    if structlog.is_configured() and not force:
        return
    stream = stream or sys.stderr
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
        processors=[*shared, structlog.processors.format_exc_info, renderer],
        wrapper_class=structlog.make_filtering_bound_logger(numeric),
        logger_factory=structlog.PrintLoggerFactory(file=stream),
        cache_logger_on_first_use=False,
    )
    handler = logging.StreamHandler(stream)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, renderer], foreign_pre_chain=shared
        )
    )
    for name, library_level in QUIET_LIBRARIES.items():
        library = logging.getLogger(name)
        library.handlers = [handler]
        library.setLevel(max(library_level, numeric))
        library.propagate = False
