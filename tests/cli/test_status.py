"""``cascade status`` and ``cascade backfill --missing/--failed`` on the planted history (``tests/planted.py``).

In process, judged at a fixed ``--now`` relative to today's commit: in a pipe (plain characters),
and as on a terminal (``FORCE_COLOR``: colour and box glyphs; a real pty is tested in
``tests/e2e/test_console_script.py``).
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from cascade import CascadeConfig
from cascade.asset_registry import Registry
from cascade.catalog import open_catalog
from tests.conftest import invoke_cli
from tests.planted import FRESH, LATE, OVERDUE, TABLE, Planted, plant, planted_once, runlog

__all__ = ["planted_once", "runlog"]


@pytest.fixture
def planted(cli, tmp_path: Path, config: CascadeConfig, runlog: None, monkeypatch: pytest.MonkeyPatch) -> Planted:  # type: ignore[no-untyped-def]
    """A history of this test's own, for the tests that write (a backfill, a failing run)."""
    (tmp_path / "cascade.toml").write_text('[cascade]\nhome = "cascade"\n')
    monkeypatch.setenv("CASCADE_DISABLE_PLUGIN_AUTOLOAD", "1")
    return plant(config)


@pytest.fixture
def history(planted_once, cli, registry: Registry, tmp_path: Path, monkeypatch) -> Planted:  # type: ignore[no-untyped-def]
    """The module's history, for tests that only read it."""
    planted, planted_config = planted_once
    (tmp_path / "cascade.toml").write_text(f'[cascade]\nhome = "{planted_config.home}"\n')
    monkeypatch.setenv("CASCADE_DISABLE_PLUGIN_AUTOLOAD", "1")
    registry.add(planted.asset)
    return planted


def invoke(*args: str, env: dict[str, str | None] | None = None) -> tuple[int, str, str]:
    done = invoke_cli(*args, env=env)
    return done.exit_code, done.stdout, done.stderr


def status_json(planted: Planted, seconds: int, *extra: str) -> tuple[int, dict]:
    code, stdout, stderr = invoke("status", "planted", "--now", planted.at(seconds).isoformat(), "--json", *extra)
    assert code in (0, 1), stderr
    return code, json.loads(stdout)


@pytest.mark.parametrize(
    ("seconds", "code", "level", "recent"),
    [(FRESH, 0, "fresh", "committed"), (LATE, 0, "warn", "late"), (OVERDUE, 1, "fail", "late")],
    ids=["fresh", "late", "overdue"],
)
def test_status_json_and_exit_code(history: Planted, seconds: int, code: int, level: str, recent: str) -> None:
    exit_code, document = status_json(history, seconds)
    assert exit_code == code
    assert document["fresh"] is (code == 0)
    (status,) = document["assets"]
    assert (status["asset"], status["table"], status["branch"]) == ("planted", TABLE, "main")
    states = {history.day(offset): "committed" for offset in range(-9, 1)}
    states |= {history.gap: "missing", history.failed: "failed", history.day(-1): recent, history.day(0): recent}
    assert {d["partition"]: d["state"] for d in status["days"]} == states
    assert (status["missing"], status["failed"]) == ([history.gap], [history.failed])
    assert status["freshness"]["level"] == level
    assert status["freshness"]["newest_partition"] == history.day(0)
    assert status["last_run"]["run_id"] == history.results[history.backfilled].run_id
    for day in status["days"]:
        if day["state"] in ("committed", "late"):
            assert day["committed"]["run_id"] == history.results[day["partition"]].run_id
            assert day["committed"]["rows_added"] == 3
    [failed] = [d for d in status["days"] if d["state"] == "failed"]
    assert failed["failure"]["error"].startswith(f"SourceError: asset 'planted', partition {history.failed}")
    assert status["summary"].startswith("8 of 10 days, 1 missing, 1 failed, last run ")


def test_since_and_branch(history: Planted) -> None:
    _, document = status_json(history, FRESH, "--since", "3d")
    assert [d["partition"] for d in document["assets"][0]["days"]] == [history.day(n) for n in (-2, -1, 0)]
    code, document = status_json(history, FRESH, "--branch", "review")
    assert code == 1  # nothing was ever committed on that branch
    assert document["assets"][0]["missing"] == [history.day(n) for n in range(-9, 1)]  # the failure was on main


def test_calendar_in_a_pipe_is_plain_text(history: Planted) -> None:
    code, stdout, _ = invoke("status", "planted", "--now", history.at(LATE).isoformat(), "--weeks", "3")
    assert code == 0
    assert "\x1b[" not in stdout and "■" not in stdout
    lines = stdout.splitlines()
    assert lines[0] == f"planted  {TABLE} @ main"
    rows = {line[:3]: line[4:] for line in lines[2:9]}
    assert list(rows) == ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"]
    cells = {}
    for weekday, row in enumerate(rows.values()):
        for week, cell in enumerate(row[::2]):
            cells[(week, weekday)] = cell
    monday = history.today.toordinal() - history.today.weekday() - 14
    expected = {}
    for week in range(3):
        for weekday in range(7):
            day = monday + 7 * week + weekday
            offset = day - history.today.toordinal()
            if offset > 0:
                expected[(week, weekday)] = "-"
            elif offset < -9:
                expected[(week, weekday)] = " "
            else:
                expected[(week, weekday)] = {history.gap: ".", history.failed: "x"}.get(
                    history.day(offset), "+" if offset >= -1 else "#"
                )
    assert {k: cells.get(k, " ") for k in expected} == expected
    assert lines[9] == "    # committed  + late  x failed  . missing  - future"
    assert lines[10] == (
        "8 of 10 days, 1 missing, 1 failed, last run 2 min ago, "  # the backfill, seconds after today's run
        f"late: newest partition {history.day(0)} committed 2 min ago (warn after 0.02 h)"
    )


def test_calendar_on_a_terminal_has_colour(history: Planted) -> None:
    terminal = {"FORCE_COLOR": "1", "TERM": "xterm-256color", "NO_COLOR": None, "COLUMNS": "120"}
    code, text, _ = invoke("status", "planted", "--weeks", "3", "--now", history.at(OVERDUE).isoformat(), env=terminal)
    assert code == 1, text  # overdue: past the fail window
    assert "\x1b[32m■" in text and "\x1b[33m■" in text and "\x1b[1;31m■" in text  # committed, late, failed
    plain = re.sub(r"\x1b\[[0-9;]*m", "", text)
    assert "    ■ committed  ■ late  ■ failed  □ missing  · future" in plain
    assert f"overdue: newest partition {history.day(0)} committed 3 min ago (fail after 0.04 h)" in plain


def test_backfill_missing_runs_exactly_the_gaps(planted: Planted, config: CascadeConfig) -> None:
    code, stdout, stderr = invoke("backfill", "planted", "--missing", "--json")
    assert code == 0, stderr
    report = json.loads(stdout)
    assert (report["planned"], report["succeeded"], report["failed"]) == ([planted.gap], [planted.gap], {})
    table = open_catalog(config).load_table(TABLE)
    assert table.current_snapshot().summary["cascade.partition"] == planted.gap


def test_backfill_failed_reruns_the_failed_days(planted: Planted, config: CascadeConfig) -> None:
    code, stdout, _ = invoke("backfill", "planted", "--failed", "--since", "30d", "--json")
    # The planted source still fails that day: the plan is exactly it, and it fails again.
    assert code == 1
    report = json.loads(stdout)
    assert (report["planned"], report["succeeded"], list(report["failed"])) == ([planted.failed], [], [planted.failed])


def test_backfill_missing_and_failed_together_and_dry_plan(history: Planted) -> None:
    code, stdout, stderr = invoke("backfill", "planted", "--missing", "--failed", "--since", "3d", "--json")
    assert code == 0, stderr
    assert json.loads(stdout)["planned"] == []  # the last three days are all committed


def test_backfill_needs_a_range_or_a_selection(history: Planted) -> None:
    code, _, stderr = invoke("backfill", "planted")
    assert code == 2
    assert "--start and --end" in stderr
