"""``cascade list``, ``run`` and ``demo`` on the embedded catalog, with the installed plugins, in process."""

from __future__ import annotations

import datetime as dt
import logging
import os
import sys
from pathlib import Path

import pytest
import structlog

import cascade
from cascade_github.server import sample_events
from tests.conftest import GITHUB_TOKEN, NIGHTSCOUT_TOKEN


def test_list_json(cli) -> None:  # type: ignore[no-untyped-def]
    listing = cli("list", "--json").json()
    glucose = next(a for a in listing["assets"] if a["asset"] == "glucose")
    assert glucose == {
        "asset": "glucose",
        "group": "nightscout",
        "table": "nightscout.glucose",
        "unique_key": ["_id"],
        "cron": "0 */1 * * *",
        "freshness_hours": [1.0, 24.0],
        "plugin": "cascade-nightscout",
    }
    assert listing["failed_plugins"] == []


def test_list_reports_broken_plugin(cli) -> None:  # type: ignore[no-untyped-def]
    done = cli("list", env={"CASCADE_BLOCKED_PLUGINS": ""})
    assert done.exit_code == 0, done.output
    assert "glucose" in done.stdout and "readings" in done.stdout
    assert "plugin 'cascade-testplugin-broken' failed to load: ModuleNotFoundError" in done.stderr


def test_run_prints_result_and_json(cli, tmp_path: Path, ns_env: dict[str, str]) -> None:  # type: ignore[no-untyped-def]
    result = cli("run", "glucose", "--date", "2024-04-01", "--json", env=ns_env).json()
    assert (result["table"], result["branch"], result["rows_inserted"]) == ("nightscout.glucose", "main", 288)
    again = cli("run", "glucose", "--date", "2024-04-01", "--branch", "dev", env=ns_env)
    assert again.exit_code == 0, again.output
    assert "nightscout.glucose@dev" in again.stdout and "rows_unchanged" in again.stdout
    assert (tmp_path / ".cascade" / "catalog.db").is_file()


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        pytest.param(["run", "nope", "--date", "2024-01-01"], 2, "error: no asset named 'nope'", id="unknown-asset"),
        pytest.param(["run", "glucose", "--date", "2024-02-30"], 2, "is not a date", id="bad-date"),
        pytest.param(["run", "nope[x]", "--date", "2024-01-01"], 2, "no asset named 'nope[x]'", id="brackets-as-is"),
    ],
)
def test_usage_errors_exit_2(cli, args: list[str], code: int, message: str) -> None:  # type: ignore[no-untyped-def]
    done = cli(*args)
    assert done.exit_code == code
    assert message in done.stderr  # brackets: not eaten as Rich markup


def test_failed_run_is_one_line_and_exit_1(cli, nightscout, ns_env: dict[str, str]) -> None:  # type: ignore[no-untyped-def]
    nightscout.fail(status=401)
    done = cli("run", "glucose", "--date", "2024-04-01", env=ns_env)
    assert done.exit_code == 1
    errors = [line for line in done.stderr.splitlines() if line.startswith("error:")]
    assert errors == [errors[0]] and "asset 'glucose', partition 2024-04-01: HTTP 401" in errors[0]
    assert NIGHTSCOUT_TOKEN not in done.output


def test_demo_runs_offline(cli) -> None:  # type: ignore[no-untyped-def]
    done = cli("demo", "--days", "3")
    assert done.exit_code == 0, done.output
    assert "nightscout.glucose: 864 rows, 864 distinct _id" in done.stdout
    assert "re-runs added 0 duplicates" in done.stdout


def test_github_plugin_lists_and_runs(cli, github) -> None:  # type: ignore[no-untyped-def]
    github.state.events["octocat"] = sample_events("octocat", dt.date(2024, 5, 1), 2, 5)
    listing = cli("list", "--json").json()
    found = {a["asset"]: a for a in listing["assets"] if a["plugin"] == "cascade-github"}
    assert set(found) == {"events", "repos"}
    assert found["repos"]["unique_key"] == ["repository", "snapshot_date"]
    env = {"GITHUB_API_URL": github.url, "GITHUB_TOKEN": GITHUB_TOKEN, "GITHUB_USERS": "octocat"}
    done = cli("run", "events", "--date", "2024-05-02", "--json", env=env)
    assert done.json()["rows_inserted"] == 5
    assert GITHUB_TOKEN not in done.output


def test_a_command_in_process_leaves_this_process_as_it_found_it(cli) -> None:  # type: ignore[no-untyped-def]
    """What the command sets up as the application (logging, streams, environment) is undone."""
    environment, streams = dict(os.environ), (sys.stdout, sys.stderr)
    structlog_configured = structlog.is_configured()
    handlers = {name: list(logging.getLogger(name).handlers) for name in ("", "dlt", "pyiceberg")}
    assert cli("demo", "--days", "1").exit_code == 0  # the demo sets NIGHTSCOUT_URL for its runs
    assert dict(os.environ) == environment and "NIGHTSCOUT_URL" not in os.environ
    assert (sys.stdout, sys.stderr) == streams
    assert structlog.is_configured() == structlog_configured
    assert {name: list(logging.getLogger(name).handlers) for name in handlers} == handlers
    assert "glucose" in {a.spec.name for a in cascade.registry().assets()}  # discovered into this test's registry
