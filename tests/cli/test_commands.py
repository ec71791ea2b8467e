"""``cascade backfill``, ``tables``, ``show``, ``query``, ``history``, ``branch``, ``doctor``, in process.

The catalog is the working folder's (``.cascade``); the commands that read tables (``query`` over
S3 data files included) run again on this test's own catalog on PostgreSQL + S3
(``catalog_sensitive``).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import cascade
from cascade import CascadeConfig
from cascade_nightscout import glucose
from tests.conftest import NIGHTSCOUT_TOKEN, read_table

DAYS = [f"2024-06-{d:02d}" for d in range(1, 11)]


def ids_in(cli) -> list[str]:  # type: ignore[no-untyped-def]
    done = cli("query", "select _id from nightscout.glucose order by _id", "--json")
    assert done.exit_code == 0, done.output
    return [json.loads(line)["_id"] for line in done.stdout.splitlines()]


def test_backfill_with_two_workers_equals_single_runs(cli, tmp_path: Path, ns_env: dict[str, str]) -> None:  # type: ignore[no-untyped-def]
    args = ("backfill", "glucose", "--start", DAYS[0], "--end", DAYS[-1], "--workers", "2", "--json")
    report = cli(*args, env=ns_env).json()
    assert (sorted(report["succeeded"]), report["skipped"], report["failed"]) == (DAYS, [], {})
    assert report["rows_extracted"] == 2880
    reference = CascadeConfig(
        home=tmp_path / "single", plugins={"nightscout": {"url": ns_env["NIGHTSCOUT_URL"], "token": NIGHTSCOUT_TOKEN}}
    )
    for day in DAYS:
        cascade.run(glucose, day, config=reference)
    landed = ids_in(cli)
    assert len(landed) == 2880 == len(set(landed))
    assert landed == sorted(read_table(reference, "nightscout.glucose").column("_id").to_pylist())


def test_failed_partition_is_listed_and_resumed(cli, nightscout, ns_env: dict[str, str]) -> None:  # type: ignore[no-untyped-def]
    nightscout.fail(status=500, scope=DAYS[4])
    first = cli("backfill", "glucose", "--start", DAYS[0], "--end", DAYS[-1], "--workers", "2", env=ns_env)
    assert first.exit_code == 1
    assert "9 partition(s) ingested, 0 skipped (already ingested), 1 failed" in first.stdout
    assert f"failed {DAYS[4]}: asset 'glucose', partition {DAYS[4]}: HTTP 500" in first.stderr
    assert len(ids_in(cli)) == 9 * 288
    nightscout.heal()
    report = cli("backfill", "glucose", "--start", DAYS[0], "--end", DAYS[-1], "--json", env=ns_env).json()
    assert (report["succeeded"], report["skipped"]) == ([DAYS[4]], [d for d in DAYS if d != DAYS[4]])
    assert len(ids_in(cli)) == 10 * 288
    forced = cli("backfill", "glucose", "--start", DAYS[0], "--end", DAYS[1], "--force", "--json", env=ns_env)
    assert forced.json()["succeeded"] == DAYS[:2]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        pytest.param(["--start", "2024-06-05", "--end", "2024-06-01"], "is before --start", id="end-before-start"),
        pytest.param(["--start", "2024-06-31", "--end", "2024-07-01"], "is not a date", id="bad-date"),
        pytest.param(["--start", "2024-06-01"], "give --start and --end", id="no-end"),
        pytest.param(["--missing", "--start", "2024-06-01"], "take --since, not --start", id="missing-with-start"),
        pytest.param(
            ["--start", "2024-06-01", "--end", "2024-06-02", "--since", "3d"], "--since goes with", id="since"
        ),
    ],
)
def test_backfill_usage_errors(cli, args: list[str], message: str) -> None:  # type: ignore[no-untyped-def]
    done = cli("backfill", "glucose", *args)
    assert done.exit_code == 2
    assert message in done.stderr


@pytest.mark.catalog_sensitive
def test_inspecting_tables(cli, ns_env: dict[str, str]) -> None:  # type: ignore[no-untyped-def]
    for day in DAYS[:2]:
        assert cli("run", "glucose", "--date", day, env=ns_env).exit_code == 0
    tables = cli("tables", "--json").json()
    assert [(t["identifier"], t["rows"], t["snapshots"], t["branches"]) for t in tables] == [
        ("nightscout.glucose", 576, 2, ["main"])
    ]
    assert tables[0]["last_updated"].startswith("20")
    listed = cli("tables")
    assert listed.stdout.splitlines()[1].startswith("nightscout.glucose\t576\t2\tmain\t")  # a pipe: tab-separated
    shown = cli("show", "nightscout.glucose", "--where", "sgv > 150", "--limit", "5", "--json")
    rows = [json.loads(line) for line in shown.stdout.splitlines()]
    assert len(rows) == 5 and all(r["sgv"] > 150 for r in rows)
    history = cli("history", "nightscout.glucose", "--json").json()
    assert [(h["partition"], h["rows_added"], h["asset"]) for h in history] == [
        (DAYS[0], 288, "glucose"),
        (DAYS[1], 288, "glucose"),
    ]
    assert all(h["run_id"] for h in history)
    assert cli("query", "select count(*) as n from nightscout.glucose", "--json").json() == {"n": 576}
    bad = cli("show", "nightscout.glucose", "--where", "nosuch > 1")
    assert bad.exit_code == 2 and "Could not find field with name nosuch" in bad.stderr
    unparsable = cli("show", "nightscout.glucose", "--where", "sgv >")
    assert unparsable.exit_code == 2 and "--where 'sgv >' does not parse" in unparsable.stderr
    missing = cli("show", "nightscout.nope")
    assert missing.exit_code == 2 and "no table 'nightscout.nope'" in missing.stderr
    no_branch = cli("show", "nightscout.glucose", "--branch", "nope")
    assert no_branch.exit_code == 2 and "no branch 'nope' with data" in no_branch.stderr


@pytest.mark.catalog_sensitive
def test_branches_and_publish(cli, ns_env: dict[str, str]) -> None:  # type: ignore[no-untyped-def]
    def run(day: str, *branch: str) -> None:
        done = cli("run", "glucose", "--date", day, *branch, env=ns_env)
        assert done.exit_code == 0, done.output

    run(DAYS[0])
    assert cli("branch", "create", "nightscout.glucose", "review").exit_code == 0
    run(DAYS[1], "--branch", "review")
    listed = cli("branch", "list", "nightscout.glucose").stdout
    assert {line.split()[0] for line in listed.splitlines()} == {"main", "review"}
    published = cli("branch", "publish", "nightscout.glucose", "review")
    assert published.exit_code == 0, published.output
    assert len(ids_in(cli)) == 576
    # diverge: main moves on while the branch stays behind
    assert cli("branch", "create", "nightscout.glucose", "stale").exit_code == 0
    run(DAYS[2])
    run(DAYS[3], "--branch", "stale")
    refused = cli("branch", "publish", "nightscout.glucose", "stale")
    assert refused.exit_code == 1
    assert "main has diverged from branch 'stale'" in refused.stderr
    assert len(ids_in(cli)) == 864
    assert cli("branch", "drop", "nightscout.glucose", "stale").exit_code == 0
    assert cli("branch", "drop", "nightscout.glucose", "main").exit_code == 1


@pytest.mark.catalog_sensitive
def test_doctor(cli, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    (tmp_path / "cascade.toml").write_text('[catalog]\nuri = "sqlite:///catalog.db"\npassword = "hunter2-secret"\n')
    done = cli("doctor", "--json")
    report = done.json()
    assert report["healthy"] is True
    assert report["catalog"].startswith("reachable")
    assert report["warehouse"].startswith("writable")
    assert report["plugins"]["cascade-nightscout"] == "loaded"
    assert report["versions"]["pyiceberg"] != "not installed"
    assert "hunter2-secret" not in done.output
    text = cli("doctor")
    assert text.exit_code == 0 and "catalog\nreachable" in text.stdout and "hunter2-secret" not in text.output
