"""Tracing and logging of runs through the OpenTelemetry API and structlog.

Cascade only uses the OpenTelemetry *API*: the application decides exporters. One span per
run (``cascade.run``) and one child span per phase (``cascade.<phase>``); a failure is recorded
on the span with status ERROR and ``error.type``, then re-raised.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator, Mapping
from typing import Any

import structlog
from opentelemetry import trace
from opentelemetry.trace import Span, Status, StatusCode

from cascade import __version__
from cascade.redaction import redact

tracer = trace.get_tracer("cascade", __version__)
log = structlog.get_logger("cascade")

AttributeValue = str | int | float | bool


def span_attributes(values: Mapping[str, Any]) -> dict[str, AttributeValue]:
    """Attributes fit for a span: ``cascade.``-prefixed, no None, secrets masked."""
    out: dict[str, AttributeValue] = {}
    for key, value in values.items():
        if value is None:
            continue
        name = key if "." in key else f"cascade.{key}"
        out[name] = redact(value) if isinstance(value, str) else value
    return out


@contextlib.contextmanager
def traced(name: str, timings: dict[str, float] | None = None, **attributes: Any) -> Iterator[Span]:
    """Open span ``cascade.<name>``; record its duration in ``timings`` and any error on the span."""
    started = time.perf_counter()
    with tracer.start_as_current_span(
        f"cascade.{name}", attributes=span_attributes(attributes), record_exception=False, set_status_on_exception=False
    ) as span:
        try:
            yield span
        except BaseException as error:
            span.set_status(Status(StatusCode.ERROR, redact(str(error))[:500]))
            span.set_attribute("error.type", type(error).__qualname__)
            span.record_exception(error, attributes={"exception.message": redact(str(error))})
            raise
        finally:
            elapsed = time.perf_counter() - started
            if timings is not None:
                timings[name] = elapsed
            log.debug("phase finished", phase=name, seconds=round(elapsed, 4))
