"""Spans, metrics and logs of real runs, captured with the OpenTelemetry SDK's in-memory parts."""

from __future__ import annotations

import io
import json

import pytest
import structlog
from opentelemetry import metrics, trace
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import StatusCode

import cascade
from cascade import CascadeConfig
from cascade.errors import SourceError
from cascade.logs import configure_logging
from cascade_nightscout import glucose
from tests.conftest import NIGHTSCOUT_TOKEN

EXPORTER = InMemorySpanExporter()
READER = InMemoryMetricReader()
PHASES = ["cascade.resolve", "cascade.extract", "cascade.stage", "cascade.validate", "cascade.merge"]


@pytest.fixture(scope="module", autouse=True)
def sdk() -> None:
    """The application's side: an SDK with in-memory exporters (global, so set once per process:
    when another test module set the provider first, the exporter joins it)."""
    provider = trace.get_tracer_provider()
    if not isinstance(provider, TracerProvider):
        provider = TracerProvider()
        trace.set_tracer_provider(provider)
    provider.add_span_processor(SimpleSpanProcessor(EXPORTER))
    metrics.set_meter_provider(MeterProvider(metric_readers=[READER]))


@pytest.fixture
def spans() -> InMemorySpanExporter:
    EXPORTER.clear()
    return EXPORTER


def by_name(finished: tuple[ReadableSpan, ...]) -> dict[str, ReadableSpan]:
    return {span.name: span for span in finished}


def test_span_tree_of_a_run(ns_config: CascadeConfig, spans: InMemorySpanExporter) -> None:
    result = cascade.run(glucose, "2024-03-01", config=ns_config)
    found = by_name(spans.get_finished_spans())
    run = found["cascade.run"]
    assert set(found) == {"cascade.run", *PHASES, "cascade.commit"}
    for phase in PHASES:
        assert found[phase].parent.span_id == run.context.span_id
    assert found["cascade.commit"].parent.span_id == found["cascade.merge"].context.span_id
    expected = {
        "cascade.asset": "glucose",
        "cascade.table": "nightscout.glucose",
        "cascade.namespace": "nightscout",
        "cascade.branch": "main",
        "cascade.partition": "2024-03-01",
        "cascade.run_id": result.run_id,
        "cascade.rows_extracted": 288,
        "cascade.rows_inserted": 288,
        "cascade.snapshot_id": result.snapshot_id,
    }
    assert expected.items() <= dict(run.attributes).items()
    assert found["cascade.stage"].attributes["cascade.rows_out"] == result.rows_extracted
    assert found["cascade.stage"].attributes["cascade.bytes_staged"] == result.bytes_staged
    assert found["cascade.validate"].attributes["cascade.rows_in"] == 288
    assert found["cascade.merge"].attributes["cascade.rows_inserted"] == result.rows_inserted
    assert found["cascade.merge"].attributes["cascade.snapshot_id"] == result.snapshot_id
    assert found["cascade.commit"].attributes["cascade.attempt"] == 1
    assert all(span.status.status_code != StatusCode.ERROR for span in found.values())


def test_failing_run_span_has_error_status(ns_config: CascadeConfig, spans: InMemorySpanExporter, nightscout) -> None:
    nightscout.fail(status=401)
    with pytest.raises(SourceError):
        cascade.run(glucose, "2024-03-01", config=ns_config)
    found = by_name(spans.get_finished_spans())
    for name in ("cascade.run", "cascade.extract"):
        span = found[name]
        assert span.status.status_code == StatusCode.ERROR
        assert span.attributes["error.type"] == "SourceError"
        [event] = span.events
        assert event.name == "exception" and "HTTP 401" in event.attributes["exception.message"]


def metric_points(name: str) -> list:
    data = READER.get_metrics_data()
    return [
        point
        for resource in data.resource_metrics
        for scope in resource.scope_metrics
        for metric in scope.metrics
        if metric.name == name
        for point in metric.data.data_points
    ]


def test_metrics(ns_config: CascadeConfig, nightscout) -> None:
    cascade.run(glucose, "2024-03-01", config=ns_config)
    rows = [p for p in metric_points("cascade.rows_ingested") if p.attributes["cascade.asset"] == "glucose"]
    assert sum(p.value for p in rows) >= 288
    assert rows[0].attributes["cascade.table"] == "nightscout.glucose"
    phases = {p.attributes["cascade.phase"] for p in metric_points("cascade.phase.duration")}
    assert {"extract", "stage", "validate", "merge", "commit"} <= phases
    nightscout.fail(status=401)
    with pytest.raises(SourceError):
        cascade.run(glucose, "2024-03-02", config=ns_config)
    failures = [p for p in metric_points("cascade.runs.failed") if p.attributes["error.type"] == "SourceError"]
    assert failures and failures[0].value >= 1


def test_no_secret_anywhere(ns_config: CascadeConfig, spans: InMemorySpanExporter, nightscout) -> None:
    """A run and a failed run with a known token: not in log lines, span attributes, events or results."""
    stream = io.StringIO()
    configure_logging("json", "DEBUG", force=True, stream=stream)
    try:
        ok = cascade.run(glucose, "2024-03-01", config=ns_config)
        nightscout.fail(status=500)
        with pytest.raises(cascade.CascadeError) as caught:
            cascade.run(glucose, "2024-03-02", config=ns_config)
    finally:
        structlog.reset_defaults()
        configure_logging(force=True)
    captured = [
        stream.getvalue(),
        repr(ok),
        json.dumps(ok.as_dict()),
        str(caught.value),
        *(
            repr(dict(span.attributes)) + repr([dict(e.attributes or {}) for e in span.events])
            for span in spans.get_finished_spans()
        ),
    ]
    assert all(NIGHTSCOUT_TOKEN not in text for text in captured)
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    started = next(line for line in lines if line["event"] == "run started")
    assert {k: started[k] for k in ("asset", "partition", "branch")} == {
        "asset": "glucose",
        "partition": "2024-03-01",
        "branch": "main",
    }
    assert started["run_id"] == ok.run_id
