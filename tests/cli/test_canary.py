"""The canary: distinct secrets planted everywhere one can enter, and not one of them in any output.

Each secret enters by another door: ``cascade.toml`` (a catalog header, an S3 key, plugin settings
named like ``apikey`` and ``private_key``, a URL with userinfo and a ``?token=``), the environment
(``CASCADE_*`` variables, a variable read with ``context.secret``), an exception message, and a
plugin that fails to import. Every command's stdout and stderr, with and without ``--verbose``,
the log lines and the OpenTelemetry console spans are searched for each of them.
"""

from __future__ import annotations

import io
import json
import sys
import textwrap
from pathlib import Path

import dlt
import pytest
import structlog
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import ConsoleSpanExporter, SimpleSpanProcessor
from pyiceberg.schema import Schema
from pyiceberg.types import LongType, NestedField, StringType

from cascade import cascade_ingestion
from cascade.asset_registry import Registry

SECRETS = {
    "toml-header": "CANARY-toml-header-1a2b",
    "toml-s3": "CANARY-toml-s3key-3c4d",
    "toml-apikey": "CANARY-toml-apikey-5e6f",
    "toml-private-key": "CANARY-toml-privkey-7g8h",
    "toml-userinfo": "CANARY-toml-userinfo-9i0j",
    "toml-query": "CANARY-toml-query-1k2l",
    "env-credential": "CANARY-env-credential-3m4n",
    "env-token": "CANARY-env-token-5o6p",
    "context-secret": "CANARY-context-secret-7q8r",
    "import-userinfo": "CANARY-import-userinfo-9s0t",
    "import-query": "CANARY-import-query-1u2v",
}
SCHEMA = Schema(NestedField(1, "id", LongType(), required=False), NestedField(2, "note", StringType(), required=False))


class SpanSink(io.StringIO):
    """Where the OpenTelemetry console exporter writes; emptied per test."""


SPANS = SpanSink()


@pytest.fixture(scope="module", autouse=True)
def console_spans() -> None:
    """The application's side: the SDK's console exporter (added to the provider if one is set already)."""
    provider = trace.get_tracer_provider()
    if not isinstance(provider, TracerProvider):
        provider = TracerProvider()
        trace.set_tracer_provider(provider)
    provider.add_span_processor(SimpleSpanProcessor(ConsoleSpanExporter(out=SPANS)))


@pytest.fixture
def planted(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, registry: Registry) -> None:
    (tmp_path / "cascade.toml").write_text(
        textwrap.dedent(
            f"""
            [catalog]
            "header.Authorization" = "Bearer {SECRETS["toml-header"]}"
            "s3.secret-access-key" = "{SECRETS["toml-s3"]}"

            [plugins.canary]
            apikey = "{SECRETS["toml-apikey"]}"
            private_key = "{SECRETS["toml-private-key"]}"
            url = "http://canary:{SECRETS["toml-userinfo"]}@127.0.0.1:9/api?token={SECRETS["toml-query"]}&page=1"
            """
        )
    )
    monkeypatch.setenv("CASCADE_CATALOG__CREDENTIAL", SECRETS["env-credential"])
    monkeypatch.setenv("CASCADE_PLUGINS__CANARY__TOKEN", SECRETS["env-token"])
    monkeypatch.setenv("CANARY_SECRET", SECRETS["context-secret"])
    _broken_plugin(tmp_path / "site", monkeypatch)

    @cascade_ingestion(table_name="canary", unique_key="id", iceberg_schema=SCHEMA, group="canary")
    def canary(partition_date: str, context):  # type: ignore[no-untyped-def]
        secret = context.secret("canary", "secret", env="CANARY_SECRET")
        structlog.get_logger("canary").warning("calling the API", key=secret, url=context.setting("canary", "url"))
        return dlt.resource([{"id": 1, "note": "fine"}], name="canary")

    @cascade_ingestion(table_name="canary_failing", unique_key="id", iceberg_schema=SCHEMA, group="canary")
    def canary_failing(partition_date: str, context):  # type: ignore[no-untyped-def]
        secret = context.secret("canary", "secret", env="CANARY_SECRET")
        raise RuntimeError(f"the API refused {secret} and {context.setting('canary', 'token')}")


def _broken_plugin(site: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A really installed plugin (a dist-info on sys.path) whose import fails with secrets in the message."""
    dist = site / "canary_broken-0.0.1.dist-info"
    dist.mkdir(parents=True)
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: canary-broken\nVersion: 0.0.1\n")
    (dist / "entry_points.txt").write_text("[cascade.assets]\ncanary-broken = canary_broken_plugin\n")
    (site / "canary_broken_plugin.py").write_text(
        "raise ImportError(\n"
        f"    'cannot reach https://me:{SECRETS['import-userinfo']}@api.example/v1?api_key={SECRETS['import-query']}'\n"
        f"    ' with {SECRETS['toml-apikey']}'\n"
        ")\n"
    )
    monkeypatch.syspath_prepend(str(site))
    monkeypatch.delitem(sys.modules, "canary_broken_plugin", raising=False)


DUMP = Path(p) if (p := __import__("os").environ.get("CANARY_DUMP")) else None


def leaks(text: str) -> list[str]:
    return [name for name, secret in SECRETS.items() if secret in text]


COMMANDS = [
    ["list"],
    ["list", "--json"],
    ["run", "canary", "--date", "2024-05-01"],
    ["run", "canary", "--date", "2024-05-02", "--json"],
    ["run", "canary_failing", "--date", "2024-05-01"],
    ["--verbose", "run", "canary_failing", "--date", "2024-05-01"],
    ["--verbose", "run", "canary_failing", "--date", "2024-05-01", "--json"],
    ["backfill", "canary_failing", "--start", "2024-05-01", "--end", "2024-05-02", "--json"],
    ["tables"],
    ["tables", "--json"],
    ["history", "canary.canary"],
    ["history", "canary.canary", "--json"],
    ["show", "canary.canary"],
    ["show", "canary.canary", "--json"],
    ["query", "select * from canary.canary"],
    ["--verbose", "query", "select * from no_such.table"],
    ["branch", "list", "canary.canary"],
    ["doctor"],
    ["doctor", "--json"],
]


def test_no_planted_secret_reaches_any_output(planted: None, cli) -> None:  # type: ignore[no-untyped-def]
    SPANS.seek(0)
    SPANS.truncate()
    outputs: dict[str, str] = {}
    for args in COMMANDS:
        done = cli(*args)
        outputs[" ".join(args)] = done.output
    if DUMP:
        DUMP.write_text("\n\n".join(f"$ cascade {c}\n{t}" for c, t in outputs.items()) + "\nSPANS\n" + SPANS.getvalue())
    assert {command: leaks(text) for command, text in outputs.items() if leaks(text)} == {}
    spans = SPANS.getvalue()
    assert leaks(spans) == []
    # the doors were really open: the secrets reached the places that mask them
    assert '"exception.stacktrace"' in spans and "***" in spans
    assert "plugin 'canary-broken' failed to load: ImportError" in outputs["list"]
    assert "Traceback (most recent call last)" in outputs["--verbose run canary_failing --date 2024-05-01"]
    assert "the API refused ***" in outputs["run canary_failing --date 2024-05-01"]
    doctor = json.loads(cli("doctor", "--json").stdout)
    assert doctor["configuration"]["plugins"]["canary"]["apikey"] == "***"
    assert doctor["configuration"]["catalog"]["header.Authorization"] == "***"
