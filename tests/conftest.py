"""Shared fixtures: a temporary catalog, the local API servers, helpers.

Everything here is real: a pyiceberg SQL catalog on SQLite in a temporary folder, real dlt
pipelines, and HTTP servers on 127.0.0.1. Tests marked ``catalog_sensitive`` run again on
PostgreSQL with the warehouse in an S3-compatible store when ``--catalogs`` names ``shared``
(``nox -s tests`` runs both; ``nox -s tests_shared`` only the shared runs).
"""

from __future__ import annotations

import contextlib
import hashlib
import inspect
import json
import logging
import multiprocessing
import os
import pty
import shutil
import subprocess
import sys

# Sources retry 5xx with backoff (cascade.http); keep failing tests fast, here and in the
# console scripts the tests start.
FAST_HTTP = {"max_attempts": "2", "backoff_seconds": "0.05", "timeout_seconds": "10"}
for _name, _value in FAST_HTTP.items():
    os.environ.setdefault(f"CASCADE_HTTP__{_name.upper()}", _value)
# The test suite is the application: it, not the library, tells dlt not to phone home (no network).
os.environ.setdefault("RUNTIME__DLTHUB_TELEMETRY", "false")
# The run-history plugin would add a cascade.runs table to every test's catalog; its own tests
# enable it (in process by registering it, across processes by clearing this list).
os.environ["CASCADE_BLOCKED_PLUGINS"] = "cascade-runlog"  # before anything loads the hook plugins

from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from importlib.metadata import entry_points
from multiprocessing.pool import Pool
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pyarrow as pa
import pytest
import structlog
from typer.testing import CliRunner

from cascade import CascadeConfig, HttpPolicy
from cascade.asset_registry import Registry, isolated_registry
from cascade.catalog import open_catalog
from cascade_cli.main import app
from cascade_github.server import GitHubServer
from cascade_nightscout.server import NightscoutServer
from tests.servers import PostgresServer, S3Server, shared_catalog_properties

if TYPE_CHECKING:
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

NIGHTSCOUT_TOKEN = "ns-T0ken-for-tests-7f3a"
GITHUB_TOKEN = "ghp_TestToken0123456789abcdefABCDEF"


CATALOGS = ("embedded", "shared")  # SQLite in a temporary folder; PostgreSQL with S3 storage
# A session that re-runs property tests on older dependency versions (``tests_lowest``) checks that
# the behaviour holds there with a share of each test's examples; ``nox -s tests`` runs them all.
EXAMPLE_SHARE = float(os.environ.get("CASCADE_TEST_EXAMPLE_SHARE", "1"))


def examples(count: int) -> int:
    """A property test's example budget in this session (at least 4)."""
    return max(4, round(count * EXAMPLE_SHARE))


CATALOGS_KEY = pytest.StashKey[tuple[str, ...]]()


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--catalogs",
        default="embedded",
        help="comma-separated catalogs the catalog_sensitive tests run on: embedded (default), shared",
    )


def pytest_configure(config: pytest.Config) -> None:
    catalogs = tuple(name.strip() for name in config.getoption("--catalogs").split(",") if name.strip())
    if not catalogs or set(catalogs) - set(CATALOGS):
        raise pytest.UsageError(f"--catalogs takes a comma-separated subset of {', '.join(CATALOGS)}")
    config.stash[CATALOGS_KEY] = catalogs


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """A catalog-sensitive test once per catalog asked for; every other test on the embedded one."""
    catalogs = metafunc.config.stash[CATALOGS_KEY]
    if catalogs != ("embedded",) and _catalog_sensitive(metafunc.definition):
        metafunc.parametrize("catalog_kind", catalogs, indirect=True)


def _catalog_sensitive(definition: pytest.Function) -> bool:
    """Marked itself (or its module), or one of its parameters is (``pytest.param(..., marks=...)``)."""
    if definition.get_closest_marker("catalog_sensitive"):
        return True
    for parametrize in definition.iter_markers("parametrize"):
        values = parametrize.kwargs.get("argvalues", parametrize.args[1] if len(parametrize.args) > 1 else ())
        if any(mark.name == "catalog_sensitive" for value in values for mark in getattr(value, "marks", ())):
            return True
    return False


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Of a test whose parameters are marked one by one, only the marked ones run on other catalogs."""
    kept, dropped = [], []
    for item in items:
        params = item.callspec.params if isinstance(item, pytest.Function) and hasattr(item, "callspec") else {}
        sensitive = item.get_closest_marker("catalog_sensitive") is not None
        (kept if params.get("catalog_kind", "embedded") == "embedded" or sensitive else dropped).append(item)
    if dropped:
        config.hook.pytest_deselected(items=dropped)
        items[:] = kept


@pytest.fixture
def catalog_kind(request: pytest.FixtureRequest) -> str:
    """The catalog this test runs on: ``embedded`` unless a catalog-sensitive test was given another."""
    return str(getattr(request, "param", "embedded"))


@pytest.fixture(scope="session")
def shared_servers() -> Iterator[tuple[PostgresServer, S3Server]]:
    """PostgreSQL and an S3-compatible server on 127.0.0.1, for the whole session."""
    with PostgresServer() as postgres, S3Server() as s3:
        postgres.create_database("cascade")
        yield postgres, s3


class WriterProcesses:
    """Spawned interpreters that have imported what a merge needs, shared by the tests that race writers.

    Spawning and importing costs seconds of CPU an interpreter; each writer loads its own catalog,
    so nothing else carries over from one test to the next.
    """

    def __init__(self) -> None:
        self.pool: Pool | None = None
        self.size = 0

    def at_least(self, count: int) -> Pool:
        if self.pool is None or self.size < count:
            from tests.integration.test_concurrency import warm_up  # a light module the children can import

            self.close()
            self.pool, self.size = multiprocessing.get_context("spawn").Pool(count), count
            self.pool.map(warm_up, range(count), chunksize=1)
        return self.pool

    def close(self) -> None:
        if self.pool is not None:
            self.pool.terminate()
            self.pool.join()


@pytest.fixture(scope="session")
def writer_processes() -> Iterator[WriterProcesses]:
    processes = WriterProcesses()
    yield processes
    processes.close()


def shared_properties(servers: tuple[PostgresServer, S3Server], name: str) -> dict[str, str]:
    return shared_catalog_properties(*servers, database="cascade", prefix=name)


@pytest.fixture
def catalog_name(request: pytest.FixtureRequest) -> str:
    """A catalog name of this test's own: on a shared catalog, tests never see each other's tables."""
    return "t_" + hashlib.sha1(request.node.nodeid.encode()).hexdigest()[:12]


@pytest.fixture(autouse=True)
def shared_catalog_environment(
    request: pytest.FixtureRequest, catalog_kind: str, catalog_name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With the shared catalog, point ``load_config`` (and so every ``cascade`` subprocess) at it."""
    if catalog_kind != "shared":
        return
    servers = request.getfixturevalue("shared_servers")
    monkeypatch.setenv("CASCADE_CATALOG_NAME", catalog_name)
    for key, value in shared_properties(servers, catalog_name).items():
        monkeypatch.setenv("CASCADE_CATALOG__" + key.upper().replace(".", "__").replace("-", "_"), value)


@pytest.fixture
def config(tmp_path: Path, request: pytest.FixtureRequest, catalog_kind: str, catalog_name: str) -> CascadeConfig:
    """A fresh catalog: embedded in a temporary folder, or this test's own on the shared pair."""
    config = CascadeConfig(home=tmp_path / "cascade", http=HttpPolicy.from_settings(FAST_HTTP))
    if catalog_kind != "shared":
        return config
    properties = shared_properties(request.getfixturevalue("shared_servers"), catalog_name)
    return replace(config, catalog_name=catalog_name, catalog_properties=properties)


@pytest.fixture(scope="session")
def nightscout_server() -> Iterator[NightscoutServer]:
    with NightscoutServer(token=NIGHTSCOUT_TOKEN) as server:
        yield server


@pytest.fixture
def nightscout(nightscout_server: NightscoutServer) -> Iterator[NightscoutServer]:
    """The shared server, healed of any fault before and after each test."""
    nightscout_server.heal()
    yield nightscout_server
    nightscout_server.heal()


@pytest.fixture
def ns_config(config: CascadeConfig, nightscout: NightscoutServer) -> CascadeConfig:
    """``config`` pointed at the local Nightscout server."""
    return replace(config, plugins={"nightscout": {"url": nightscout.url, "token": NIGHTSCOUT_TOKEN}})


@pytest.fixture(scope="session")
def github_server() -> Iterator[GitHubServer]:
    with GitHubServer(token=GITHUB_TOKEN) as server:
        yield server


@pytest.fixture
def github(github_server: GitHubServer) -> Iterator[GitHubServer]:
    """The shared GitHub-compatible server, emptied of data, faults and requests for each test."""
    github_server.reset()
    yield github_server
    github_server.reset()


@pytest.fixture
def gh_config(config: CascadeConfig, github: GitHubServer) -> CascadeConfig:
    """``config`` pointed at the local GitHub server, for the user ``octocat``."""
    settings = {"base_url": github.url, "token": GITHUB_TOKEN, "users": ["octocat"], "repositories": ["octo/cat"]}
    return replace(config, plugins={"github": settings})


@pytest.fixture
def ns_env(nightscout: NightscoutServer) -> dict[str, str]:
    """Environment for a ``cascade`` subprocess pointed at the local Nightscout server."""
    return {"NIGHTSCOUT_URL": nightscout.url, "NIGHTSCOUT_TOKEN": NIGHTSCOUT_TOKEN}


# --- the cascade command ----------------------------------------------------------------------------
# In process (``cli``), as most tests run it: about 0.1 s a command instead of an interpreter's start.
# A few tests run the console script (``cascade_cli``), in a terminal (``in_terminal``) too: a kill -9,
# Ctrl-C, a pty, and spans exported through OpenTelemetry's process-wide provider need a process.

OUT_OF_THE_WAY = "cascade-testplugin-broken,cascade-runlog"  # plugins a plain command run does not load


@dataclass(frozen=True)
class Invocation:
    """What one ``cascade`` command did: its exit code, and what it wrote to stdout and to stderr."""

    exit_code: int
    stdout: str
    stderr: str

    @property
    def output(self) -> str:
        return self.stdout + self.stderr

    def json(self) -> Any:
        """stdout as JSON, after checking that the command succeeded."""
        assert self.exit_code == 0, self.output
        return json.loads(self.stdout)


# click < 8.2 (the lowest lock) mixes stderr into stdout unless told not to; later versions have no such switch
_SEPARATE_STDERR = {"mix_stderr": False} if "mix_stderr" in inspect.signature(CliRunner.__init__).parameters else {}


def invoke_cli(*args: str, env: Mapping[str, str | None] | None = None) -> Invocation:
    """``cascade ARGS`` in this process, as if in a fresh one: what the command sets up for its process
    (environment variables, logging) is undone afterwards. ``env`` adds to (None: removes from) the
    environment for this command only."""
    exporter = (env or {}).get("OTEL_TRACES_EXPORTER", os.environ.get("OTEL_TRACES_EXPORTER"))
    assert exporter in (None, "", "none"), (
        "an exporter in process would set OpenTelemetry's provider for the rest of the session: use cascade_cli"
    )
    runner = CliRunner(**_SEPARATE_STDERR)
    with process_state_restored():
        done = runner.invoke(app, list(args), env={"COLUMNS": "200", **(env or {})}, catch_exceptions=False)
    return Invocation(done.exit_code, done.stdout, done.stderr)


@contextlib.contextmanager
def process_state_restored() -> Iterator[None]:
    """Undo what an application sets up for its process: the environment, structlog and logging."""
    environment = dict(os.environ)
    structlog_configured, structlog_config = structlog.is_configured(), structlog.get_config()
    loggers = {logger: _logger_state(logger) for logger in _loggers()}
    try:
        yield
    finally:
        os.environ.clear()
        os.environ.update(environment)
        if structlog_configured:
            structlog.configure(**structlog_config)
        else:
            structlog.reset_defaults()
        for logger in _loggers():
            logger.handlers, logger.level, logger.propagate = loggers.get(logger, ([], logging.NOTSET, True))


def _loggers() -> list[logging.Logger]:
    known = logging.Logger.manager.loggerDict.values()
    return [logging.getLogger(), *(logger for logger in known if isinstance(logger, logging.Logger))]


def _logger_state(logger: logging.Logger) -> tuple[list[logging.Handler], int, bool]:
    return list(logger.handlers), logger.level, logger.propagate


@pytest.fixture
def cli(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, registry: Registry) -> Iterator[Callable[..., Invocation]]:
    """``cli("list", "--json")``: the ``cascade`` command in process (:func:`invoke_cli`), in ``tmp_path``.

    As in a new process, the registry starts empty (but for assets the test defines) and ``discover()``
    imports the installed plugins' modules afresh into it; the broken test plugin and the run log stay
    out unless ``CASCADE_BLOCKED_PLUGINS`` says otherwise.
    """
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("CASCADE_BLOCKED_PLUGINS", OUT_OF_THE_WAY)
    modules = {entry_point.module for entry_point in entry_points(group="cascade.assets")}
    before = {name: sys.modules.pop(name) for name in modules if name in sys.modules}
    yield invoke_cli
    # Put back the modules as they were: a plugin first imported here registered its assets in this
    # test's registry only, so leaving it imported would hide them from every later discover().
    for name in modules:
        sys.modules.pop(name, None)
    sys.modules.update(before)


BESIDE_PYTHON = Path(sys.executable).parent / "cascade"
CASCADE = str(BESIDE_PYTHON) if BESIDE_PYTHON.exists() else shutil.which("cascade")


def cascade_env(env: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment of a ``cascade`` subprocess: this one's, without the plugins tests keep out."""
    return {**os.environ, "CASCADE_BLOCKED_PLUGINS": OUT_OF_THE_WAY, "COLUMNS": "200", **(env or {})}


def cascade_cli(*args: str, cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """Run the ``cascade`` console script as a user would, in ``cwd``."""
    assert CASCADE, "the cascade console script is not installed"
    environment = cascade_env(env)
    return subprocess.run([CASCADE, *args], cwd=cwd, env=environment, capture_output=True, text=True, timeout=300)


def in_terminal(argv: Sequence[str], *, cwd: Path, env: Mapping[str, str]) -> tuple[int, str]:
    """Run ``argv`` with a pseudo-terminal as its stdin, stdout and stderr; its exit code and the screen.

    Reads until the program exits and closes the terminal: no time limit to miss on a busy machine.
    """
    main, child = pty.openpty()
    process = subprocess.Popen(argv, cwd=cwd, env=dict(env), stdin=child, stdout=child, stderr=child)
    os.close(child)
    screen = b""
    try:
        while True:
            try:
                chunk = os.read(main, 65536)
            except OSError:  # EIO: every end of the terminal is closed, the program has exited
                break
            if not chunk:
                break
            screen += chunk
    finally:
        os.close(main)
    return process.wait(), screen.decode(errors="replace")


@pytest.fixture(autouse=True)
def forget_learned_secrets() -> Iterator[None]:
    """Secrets a test's runs taught redaction (it remembers them for the process) stay with that test:
    a token "nope" learned by one test would mask an asset named "nope" in the next one's output."""
    import cascade.redaction as redaction

    known = set(redaction._KNOWN_SECRETS)
    yield
    with redaction._lock:
        redaction._KNOWN_SECRETS.clear()
        redaction._KNOWN_SECRETS.update(known)
        redaction._pattern = None


@pytest.fixture
def registry() -> Iterator[Registry]:
    """An empty registry for assets a test defines."""
    with isolated_registry() as fresh:
        yield fresh


@pytest.fixture
def exported() -> InMemorySpanExporter:
    """test_telemetry's in-memory exporter, installed here when that module has not run in this process."""
    from opentelemetry import trace
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor

    from tests.integration.test_telemetry import EXPORTER

    provider = trace.get_tracer_provider()
    if not isinstance(provider, TracerProvider):  # OpenTelemetry takes one provider per process
        provider = TracerProvider()
        trace.set_tracer_provider(provider)
    if not getattr(provider, "_cascade_test_exporter", False):  # another module's provider lacks it
        provider.add_span_processor(SimpleSpanProcessor(EXPORTER))
        provider._cascade_test_exporter = True  # type: ignore[attr-defined]
    EXPORTER.clear()
    return EXPORTER


def read_table(config: CascadeConfig, identifier: str, branch: str = "main") -> pa.Table:
    table = open_catalog(config).load_table(identifier)
    snapshot = table.snapshot_by_name(branch)
    if snapshot is None:
        return table.schema().as_arrow().empty_table()
    return table.scan(snapshot_id=snapshot.snapshot_id).to_arrow()


def snapshot_id(config: CascadeConfig, identifier: str, branch: str = "main") -> int | None:
    catalog = open_catalog(config)
    if not catalog.table_exists(identifier):
        return None
    snapshot = catalog.load_table(identifier).snapshot_by_name(branch)
    return snapshot.snapshot_id if snapshot else None
