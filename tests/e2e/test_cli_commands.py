"""``cascade backfill``, ``tables``, ``show``, ``query``, ``history``, ``branch``, ``doctor``: subprocesses."""

from __future__ import annotations

import json
import os
import pty
import select
import signal
import subprocess
import time
from pathlib import Path

import pytest

import cascade
from cascade import CascadeConfig
from cascade_nightscout import glucose
from tests.conftest import CASCADE, NIGHTSCOUT_TOKEN, cascade_cli, read_table

DAYS = [f"2024-06-{d:02d}" for d in range(1, 11)]


def ids_in(cwd: Path, env: dict[str, str], branch: str = "main") -> list[str]:
    done = cascade_cli("query", "select _id from nightscout.glucose order by _id", "--json", cwd=cwd, env=env)
    assert done.returncode == 0, done.stderr
    return [json.loads(line)["_id"] for line in done.stdout.splitlines()]


def test_backfill_with_two_workers_equals_single_runs(tmp_path: Path, ns_env: dict[str, str]) -> None:
    backfilled, single = tmp_path / "backfill", tmp_path / "single"
    backfilled.mkdir()
    single.mkdir()
    done = cascade_cli(
        "backfill",
        "glucose",
        "--start",
        DAYS[0],
        "--end",
        DAYS[-1],
        "--workers",
        "2",
        "--json",
        cwd=backfilled,
        env=ns_env,
    )
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert (sorted(report["succeeded"]), report["skipped"], report["failed"]) == (DAYS, [], {})
    assert report["rows_extracted"] == 2880
    reference = CascadeConfig(
        home=single / ".cascade", plugins={"nightscout": {"url": ns_env["NIGHTSCOUT_URL"], "token": NIGHTSCOUT_TOKEN}}
    )
    for day in DAYS:  # the same single runs, in process: no need for ten more interpreters
        cascade.run(glucose, day, config=reference)
    landed = ids_in(backfilled, ns_env)
    assert len(landed) == 2880 == len(set(landed))
    assert landed == sorted(read_table(reference, "nightscout.glucose").column("_id").to_pylist())


def test_failed_partition_is_listed_and_resumed(tmp_path: Path, nightscout, ns_env: dict[str, str]) -> None:
    nightscout.fail(status=500, scope=DAYS[4])
    first = cascade_cli(
        "backfill", "glucose", "--start", DAYS[0], "--end", DAYS[-1], "--workers", "2", cwd=tmp_path, env=ns_env
    )
    assert first.returncode == 1
    assert "9 partition(s) ingested, 0 skipped (already ingested), 1 failed" in first.stdout
    assert f"failed {DAYS[4]}: asset 'glucose', partition {DAYS[4]}: HTTP 500" in first.stderr
    assert len(ids_in(tmp_path, ns_env)) == 9 * 288
    nightscout.heal()
    second = cascade_cli(
        "backfill", "glucose", "--start", DAYS[0], "--end", DAYS[-1], "--json", cwd=tmp_path, env=ns_env
    )
    assert second.returncode == 0, second.stderr
    report = json.loads(second.stdout)
    assert (report["succeeded"], report["skipped"]) == ([DAYS[4]], [d for d in DAYS if d != DAYS[4]])
    assert len(ids_in(tmp_path, ns_env)) == 10 * 288
    forced = cascade_cli(
        "backfill", "glucose", "--start", DAYS[0], "--end", DAYS[1], "--force", "--json", cwd=tmp_path, env=ns_env
    )
    assert json.loads(forced.stdout)["succeeded"] == DAYS[:2]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        pytest.param(["--start", "2024-06-05", "--end", "2024-06-01"], "is before --start", id="end-before-start"),
        pytest.param(["--start", "2024-06-31", "--end", "2024-07-01"], "is not a date", id="bad-date"),
    ],
)
def test_backfill_usage_errors(tmp_path: Path, args: list[str], message: str) -> None:
    done = cascade_cli("backfill", "glucose", *args, cwd=tmp_path)
    assert done.returncode == 2
    assert message in done.stderr


def test_inspecting_tables(tmp_path: Path, ns_env: dict[str, str]) -> None:
    for day in DAYS[:2]:
        assert cascade_cli("run", "glucose", "--date", day, cwd=tmp_path, env=ns_env).returncode == 0
    tables = json.loads(cascade_cli("tables", "--json", cwd=tmp_path).stdout)
    assert [(t["identifier"], t["rows"], t["snapshots"]) for t in tables] == [("nightscout.glucose", 576, 2)]
    shown = cascade_cli("show", "nightscout.glucose", "--where", "sgv > 150", "--limit", "5", "--json", cwd=tmp_path)
    rows = [json.loads(line) for line in shown.stdout.splitlines()]
    assert len(rows) == 5 and all(r["sgv"] > 150 for r in rows)
    history = json.loads(cascade_cli("history", "nightscout.glucose", "--json", cwd=tmp_path).stdout)
    assert [(h["partition"], h["rows_added"], h["asset"]) for h in history] == [
        (DAYS[0], 288, "glucose"),
        (DAYS[1], 288, "glucose"),
    ]
    assert all(h["run_id"] for h in history)
    query = cascade_cli("query", "select count(*) as n from nightscout.glucose", "--json", cwd=tmp_path)
    assert json.loads(query.stdout) == {"n": 576}
    bad = cascade_cli("show", "nightscout.glucose", "--where", "nosuch > 1", cwd=tmp_path)
    assert bad.returncode == 2 and "Could not find field with name nosuch" in bad.stderr
    missing = cascade_cli("show", "nightscout.nope", cwd=tmp_path)
    assert missing.returncode == 2 and "no table 'nightscout.nope'" in missing.stderr


def test_branches_and_publish(tmp_path: Path, ns_env: dict[str, str]) -> None:
    assert cascade_cli("run", "glucose", "--date", DAYS[0], cwd=tmp_path, env=ns_env).returncode == 0
    assert cascade_cli("branch", "create", "nightscout.glucose", "review", cwd=tmp_path).returncode == 0
    assert (
        cascade_cli("run", "glucose", "--date", DAYS[1], "--branch", "review", cwd=tmp_path, env=ns_env).returncode == 0
    )
    listed = cascade_cli("branch", "list", "nightscout.glucose", cwd=tmp_path).stdout
    assert {line.split()[0] for line in listed.splitlines()} == {"main", "review"}
    published = cascade_cli("branch", "publish", "nightscout.glucose", "review", cwd=tmp_path)
    assert published.returncode == 0, published.stderr
    assert len(ids_in(tmp_path, ns_env)) == 576
    # diverge: main moves on while the branch stays behind
    assert cascade_cli("branch", "create", "nightscout.glucose", "stale", cwd=tmp_path).returncode == 0
    assert cascade_cli("run", "glucose", "--date", DAYS[2], cwd=tmp_path, env=ns_env).returncode == 0
    assert (
        cascade_cli("run", "glucose", "--date", DAYS[3], "--branch", "stale", cwd=tmp_path, env=ns_env).returncode == 0
    )
    refused = cascade_cli("branch", "publish", "nightscout.glucose", "stale", cwd=tmp_path)
    assert refused.returncode == 1
    assert "main has diverged from branch 'stale'" in refused.stderr
    assert len(ids_in(tmp_path, ns_env)) == 864
    assert cascade_cli("branch", "drop", "nightscout.glucose", "stale", cwd=tmp_path).returncode == 0
    assert cascade_cli("branch", "drop", "nightscout.glucose", "main", cwd=tmp_path).returncode == 1


def test_doctor(tmp_path: Path) -> None:
    (tmp_path / "cascade.toml").write_text('[catalog]\nuri = "sqlite:///catalog.db"\npassword = "hunter2-secret"\n')
    done = cascade_cli("doctor", "--json", cwd=tmp_path)
    report = json.loads(done.stdout)
    assert done.returncode == 0, done.stderr
    assert report["healthy"] is True
    assert report["catalog"].startswith("reachable")
    assert report["warehouse"].startswith("writable")
    assert report["plugins"]["cascade-nightscout"] == "loaded"
    assert report["versions"]["pyiceberg"] != "not installed"
    assert "hunter2-secret" not in done.stdout


def test_progress_bar_on_a_terminal(tmp_path: Path, ns_env: dict[str, str]) -> None:
    main, child = pty.openpty()
    env = {
        **os.environ,
        "CASCADE_BLOCKED_PLUGINS": "cascade-testplugin-broken,cascade-runlog",
        "TERM": "xterm",
        "COLUMNS": "140",
        **ns_env,
    }
    process = subprocess.Popen(
        [str(CASCADE), "backfill", "glucose", "--start", DAYS[0], "--end", DAYS[2]],
        cwd=tmp_path,
        env=env,
        stdin=child,
        stdout=child,
        stderr=child,
    )
    os.close(child)
    screen = b""
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        ready, _, _ = select.select([main], [], [], 1)
        if ready:
            try:
                chunk = os.read(main, 65536)
            except OSError:
                break
            if not chunk:
                break
            screen += chunk
        elif process.poll() is not None:
            break
    process.wait(timeout=30)
    os.close(main)
    text = screen.decode(errors="replace")
    assert process.returncode == 0, text[-2000:]
    assert "glucose @ main" in text and "3/3" in text and "rows 864" in text and "failures 0" in text
    assert "━" in text  # the bar itself


def test_ctrl_c_stops_cleanly(tmp_path: Path, nightscout, ns_env: dict[str, str]) -> None:
    nightscout.fail(delay=1.0)  # every request takes a second: the backfill is mid-way when interrupted
    env = {**os.environ, "CASCADE_BLOCKED_PLUGINS": "cascade-testplugin-broken,cascade-runlog", **ns_env}
    process = subprocess.Popen(
        [str(CASCADE), "backfill", "glucose", "--start", DAYS[0], "--end", DAYS[-1]],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 60
    while not list((tmp_path / ".cascade" / "pipelines").glob("*/*/*/run_*")) and time.monotonic() < deadline:
        time.sleep(0.2)
    time.sleep(2.5)  # a partition or two has committed, another is running
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=120)
    nightscout.heal()
    assert process.returncode == 130, stderr[-2000:]
    assert "interrupted: partitions that finished stay committed" in stderr
    query = "select cast(date_string as date) as day, count(*) as n from nightscout.glucose group by 1"
    done = cascade_cli("query", query, "--json", cwd=tmp_path)
    counts = [json.loads(line)["n"] for line in done.stdout.splitlines()]
    assert 0 < len(counts) < len(DAYS)
    assert set(counts) == {288}  # every committed day whole, none half-written
