"""Tracing of runs through the OpenTelemetry API (log lines: :mod:`cascade.logger`).

Cascade only uses the OpenTelemetry *API*: the application decides exporters. One span per
run (``cascade.run``) and one child span per phase (``cascade.<phase>``); a failure is recorded
on the span with status ERROR and ``error.type``, then re-raised.
"""

from __future__ import annotations

import contextlib
import os
import sys
import time
from collections.abc import Iterator, Mapping
from typing import Any

from opentelemetry import metrics, trace
from opentelemetry.trace import Span, Status, StatusCode

from cascade import __version__
from cascade.logger import log
from cascade.redaction import redact, redacted_traceback

tracer = trace.get_tracer("cascade", __version__)
meter = metrics.get_meter("cascade", __version__)


rows_ingested = meter.create_counter(
    "cascade.rows_ingested", unit="{row}", description="Rows inserted or updated by committed runs"
)
phase_duration = meter.create_histogram("cascade.phase.duration", unit="s", description="Duration of each run phase")
runs_failed = meter.create_counter("cascade.runs.failed", unit="{run}", description="Runs that failed")

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
            record_exception(span, error)
            raise
        finally:
            elapsed = time.perf_counter() - started
            if timings is not None:
                timings[name] = elapsed
            phase_duration.record(elapsed, _metric_attributes(attributes, phase=name))
            log.debug("phase finished", phase=name, seconds=round(elapsed, 4))


def record_exception(span: Span, error: BaseException) -> None:
    """``Span.record_exception`` with the message and stack trace redacted (it would keep them raw)."""
    span.add_event(
        "exception",
        {
            "exception.type": type(error).__qualname__,
            "exception.message": redact(str(error)),
            "exception.stacktrace": redacted_traceback(error),
            "exception.escaped": "True",
        },
    )


def _metric_attributes(attributes: Mapping[str, Any], **extra: str) -> dict[str, AttributeValue]:
    picked = {k: attributes[k] for k in ("asset", "table") if attributes.get(k) is not None}
    return span_attributes({**picked, **extra})


def record_rows(asset: str, table: str, rows: int) -> None:
    rows_ingested.add(rows, span_attributes({"asset": asset, "table": table}))


def record_failure(asset: str, table: str, error: BaseException) -> None:
    runs_failed.add(1, span_attributes({"asset": asset, "table": table, "error.type": type(error).__name__}))


_configured = False


def configure_from_environment() -> None:
    """Turn on export from standard ``OTEL_*`` variables when the application set up no SDK.

    ``OTEL_TRACES_EXPORTER=console`` prints spans; ``otlp`` needs the OTLP exporter package
    installed. An application that configured its own tracer provider is left alone.
    """
    global _configured
    exporters = [e.strip() for e in os.environ.get("OTEL_TRACES_EXPORTER", "").split(",") if e.strip()]
    disabled = os.environ.get("OTEL_SDK_DISABLED", "").lower() == "true"
    if _configured or disabled or not exporters or exporters == ["none"]:
        return
    if not isinstance(trace.get_tracer_provider(), trace.ProxyTracerProvider):
        return
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter, SimpleSpanProcessor

    provider = TracerProvider(
        resource=Resource.create({"service.name": os.environ.get("OTEL_SERVICE_NAME", "cascade")})
    )
    for name in exporters:
        if name == "console":
            # stderr, with the logs: stdout carries command output such as --json
            provider.add_span_processor(SimpleSpanProcessor(ConsoleSpanExporter(out=sys.stderr)))
        elif name == "otlp":
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

            provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    trace.set_tracer_provider(provider)
    _configured = True
