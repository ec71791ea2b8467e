"""The ``cascade`` console script, run as users run it: in a subprocess, on the embedded catalog."""

from __future__ import annotations

import datetime as dt
import json
import re
from pathlib import Path

import pytest

from cascade_github.server import sample_events
from tests.conftest import GITHUB_TOKEN, NIGHTSCOUT_TOKEN, SHARED, cascade_cli


def test_list_json(tmp_path: Path) -> None:
    done = cascade_cli("list", "--json", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    listing = json.loads(done.stdout)
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


def test_list_reports_broken_plugin(tmp_path: Path) -> None:
    done = cascade_cli("list", cwd=tmp_path, env={"CASCADE_BLOCKED_PLUGINS": ""})
    assert done.returncode == 0
    assert "glucose" in done.stdout and "readings" in done.stdout
    assert "plugin 'cascade-testplugin-broken' failed to load: ModuleNotFoundError" in done.stderr


def test_run_prints_result_and_json(tmp_path: Path, ns_env: dict[str, str]) -> None:
    done = cascade_cli("run", "glucose", "--date", "2024-04-01", "--json", cwd=tmp_path, env=ns_env)
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert (result["table"], result["branch"], result["rows_inserted"]) == ("nightscout.glucose", "main", 288)
    again = cascade_cli("run", "glucose", "--date", "2024-04-01", "--branch", "dev", cwd=tmp_path, env=ns_env)
    assert again.returncode == 0, again.stderr
    assert "nightscout.glucose@dev" in again.stdout and "rows_unchanged" in again.stdout
    assert SHARED or (tmp_path / ".cascade" / "catalog.db").is_file()


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        pytest.param(["run", "nope", "--date", "2024-01-01"], 2, "error: no asset named 'nope'", id="unknown-asset"),
        pytest.param(["run", "glucose", "--date", "2024-02-30"], 2, "is not a date", id="bad-date"),
    ],
)
def test_usage_errors_exit_2(tmp_path: Path, args: list[str], code: int, message: str) -> None:
    done = cascade_cli(*args, cwd=tmp_path)
    assert done.returncode == code
    assert message in done.stderr


def test_failed_run_is_one_line_and_exit_1(tmp_path: Path, nightscout, ns_env: dict[str, str]) -> None:
    nightscout.fail(status=401)
    done = cascade_cli("run", "glucose", "--date", "2024-04-01", cwd=tmp_path, env=ns_env)
    assert done.returncode == 1
    errors = [line for line in done.stderr.splitlines() if line.startswith("error:")]
    assert errors == [errors[0]] and "asset 'glucose', partition 2024-04-01: HTTP 401" in errors[0]
    assert NIGHTSCOUT_TOKEN not in done.stderr + done.stdout


def test_demo_runs_offline(tmp_path: Path) -> None:
    done = cascade_cli("demo", "--days", "3", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "nightscout.glucose: 864 rows, 864 distinct _id" in done.stdout
    assert "re-runs added 0 duplicates" in done.stdout


def test_otel_console_prints_the_span_tree_beside_json(tmp_path: Path, ns_env: dict[str, str]) -> None:
    done = cascade_cli(
        "run",
        "glucose",
        "--date",
        "2024-04-02",
        "--json",
        cwd=tmp_path,
        env={**ns_env, "OTEL_TRACES_EXPORTER": "console"},
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["rows_inserted"] == 288  # spans stay off stdout
    names = [json.loads(m) for m in re.findall(r'"name": ("cascade\.[a-z]+")', done.stderr)]
    assert sorted(names) == sorted(
        [
            "cascade.run",
            "cascade.resolve",
            "cascade.extract",
            "cascade.stage",
            "cascade.validate",
            "cascade.merge",
            "cascade.commit",
        ]
    )


def test_error_text_with_brackets_is_printed_as_is(tmp_path: Path) -> None:
    done = cascade_cli("run", "nope[x]", "--date", "2024-01-01", cwd=tmp_path)
    assert done.returncode == 2
    assert "no asset named 'nope[x]'" in done.stderr  # not eaten as Rich markup


def test_github_plugin_lists_and_runs_through_the_console_script(tmp_path: Path, github) -> None:
    github.state.events["octocat"] = sample_events("octocat", dt.date(2024, 5, 1), 2, 5)
    listing = json.loads(cascade_cli("list", "--json", cwd=tmp_path).stdout)
    found = {a["asset"]: a for a in listing["assets"] if a["plugin"] == "cascade-github"}
    assert set(found) == {"events", "repos"}
    assert found["repos"]["unique_key"] == ["repository", "snapshot_date"]
    env = {"GITHUB_API_URL": github.url, "GITHUB_TOKEN": GITHUB_TOKEN, "GITHUB_USERS": "octocat"}
    done = cascade_cli("run", "events", "--date", "2024-05-02", "--json", cwd=tmp_path, env=env)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["rows_inserted"] == 5
    assert GITHUB_TOKEN not in done.stdout + done.stderr
