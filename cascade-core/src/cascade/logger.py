"""Cascade's own log lines: through structlog when the application configured it, else the
standard logger ``cascade``, which prints nothing unless the application gives it a handler."""

from __future__ import annotations

import logging
import sys
from collections.abc import Mapping
from typing import Any

from cascade.redaction import redact

_stdlib_log = logging.getLogger("cascade")
_stdlib_log.addHandler(logging.NullHandler())  # a library prints nothing unless its application says so


class CascadeLogger:
    """Cascade's log: structlog's when the application configured structlog, else the standard
    logger ``cascade``, silent unless the application gives it a handler. Unconfigured structlog
    would print to stdout, which a library must never do."""

    def __init__(self, context: Mapping[str, Any] | None = None) -> None:
        self._context = dict(context or {})

    def bind(self, **values: Any) -> CascadeLogger:
        return CascadeLogger({**self._context, **values})

    def debug(self, event: str, **values: Any) -> None:
        self._emit(logging.DEBUG, event, values)

    def info(self, event: str, **values: Any) -> None:
        self._emit(logging.INFO, event, values)

    def warning(self, event: str, **values: Any) -> None:
        self._emit(logging.WARNING, event, values)

    def error(self, event: str, **values: Any) -> None:
        self._emit(logging.ERROR, event, values)

    def _emit(self, level: int, event: str, values: Mapping[str, Any]) -> None:
        values = {**self._context, **values}
        structlog = sys.modules.get("structlog")  # not imported yet: not configured either
        if structlog is not None and structlog.is_configured():
            structlog.get_logger("cascade").log(level, event, **values)
        elif _stdlib_log.isEnabledFor(level):
            details = " ".join(f"{k}={v}" for k, v in values.items())
            _stdlib_log.log(level, "%s", redact(f"{event} {details}".strip()))


log = CascadeLogger()
