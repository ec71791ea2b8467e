"""The installed ``cascade`` console script in its own process, where only a process will do: what
``--help`` imports, spans through OpenTelemetry's process-wide provider, a real terminal, Ctrl-C.

Everything else the command does is tested in process (``tests/cli``); ``nox -s wheels`` runs the
command installed from wheels, and ``tests/e2e/test_crash.py`` kills it at every commit phase.
"""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

from cascade import load_config
from tests.conftest import CASCADE, cascade_cli, cascade_env, in_terminal, read_table

DAYS = [f"2024-06-{d:02d}" for d in range(1, 11)]
# what a command's start must not import (``cascade list`` imports the plugins, and so some of these)
HEAVY = ("dlt", "pyiceberg", "pandera", "pyarrow", "pandas", "structlog", "duckdb", "opentelemetry.sdk")
IMPORTS_AFTER = """
import sys
from cascade_cli.main import app
try:
    app(sys.argv[1:])
except SystemExit:
    pass
print(sorted(m for m in sys.modules if m.startswith({heavy!r})))
"""


@pytest.mark.parametrize(
    "args",
    [["--help"], ["run", "--help"], ["backfill", "--help"], ["schema", "apply", "--help"], ["run"]],
    ids=["help", "run-help", "backfill-help", "schema-apply-help", "usage-error"],
)
def test_help_and_usage_errors_import_nothing_heavy(tmp_path: Path, args: list[str]) -> None:
    """``bench/startup.py`` measures the time; this keeps the imports that cost it out."""
    script = IMPORTS_AFTER.format(heavy=HEAVY)
    done = subprocess.run(
        [sys.executable, "-c", script, *args], cwd=tmp_path, env=cascade_env(), capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[-1] == "[]"


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


def test_progress_bar_on_a_terminal(tmp_path: Path, ns_env: dict[str, str]) -> None:
    assert CASCADE
    code, screen = in_terminal(
        [CASCADE, "backfill", "glucose", "--start", DAYS[0], "--end", DAYS[2]],
        cwd=tmp_path,
        env=cascade_env({"TERM": "xterm", "COLUMNS": "140", **ns_env}),
    )
    assert code == 0, screen[-2000:]
    assert "glucose @ main" in screen and "3/3" in screen and "rows 864" in screen and "failures 0" in screen
    assert "━" in screen  # the bar itself


def test_ctrl_c_stops_cleanly(tmp_path: Path, nightscout, ns_env: dict[str, str]) -> None:  # type: ignore[no-untyped-def]
    assert CASCADE
    nightscout.fail(delay=1.0)  # every request takes a second: the backfill is mid-way when interrupted
    process = subprocess.Popen(
        [CASCADE, "backfill", "glucose", "--start", DAYS[0], "--end", DAYS[-1]],
        cwd=tmp_path,
        env=cascade_env(ns_env),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert process.stderr is not None
    logged = []
    for line in process.stderr:  # JSON log lines (a pipe), until the first partition has committed
        logged.append(line)
        if '"event": "run finished"' in line:
            break
    process.send_signal(signal.SIGINT)  # while the second partition runs
    _, rest = process.communicate()
    stderr = "".join(logged) + rest
    nightscout.heal()
    assert process.returncode == 130, stderr[-2000:]
    assert "interrupted: partitions that finished stay committed" in stderr
    days = Counter(
        t.date() for t in read_table(load_config(tmp_path), "nightscout.glucose").column("date_string").to_pylist()
    )
    assert 0 < len(days) < len(DAYS)
    assert set(days.values()) == {288}  # every committed day whole, none half-written
