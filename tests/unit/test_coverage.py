"""The pure judges of ``cascade.coverage``: day states, freshness, the summary line, the ledger's encoding."""

from __future__ import annotations

import dataclasses
import datetime as dt

import pytest
from pyiceberg.schema import Schema

from cascade.coverage import (
    CommittedRun,
    FailedRun,
    asset_status,
    decode_runs,
    encode_runs,
    expected_partition,
    judge_freshness,
    latest_failures,
    parse_since,
)
from cascade.errors import ConfigurationError
from cascade.spec import AssetSpec

UTC = dt.UTC
SPEC = AssetSpec(
    name="glucose",
    table_name="glucose",
    unique_key=("id",),
    iceberg_schema=Schema(),
    group="ns",
    namespace="ns",
    cron="0 6 * * *",
    freshness_hours=(24, 48),
    start_date=dt.date(2026, 11, 1),
)


def at(day: int, hour: int, minute: int = 0, month: int = 11) -> dt.datetime:
    return dt.datetime(2026, month, day, hour, minute, tzinfo=UTC)


def run(partition: str, when: dt.datetime, run_id: str = "r") -> CommittedRun:
    return CommittedRun(partition, when, run_id, 288, 1)


def daily(first: int, last: int, skip: tuple[int, ...] = ()) -> dict[str, CommittedRun]:
    """Each day committed by the first tick of the next day (06:05), as the schedule does."""
    return {
        f"2026-11-{d:02d}": run(f"2026-11-{d:02d}", at(d + 1, 6, 5) if d < 30 else at(1, 6, 5, month=12))
        for d in range(first, last + 1)
        if d not in skip
    }


@pytest.mark.parametrize(
    ("cron", "now", "expected", "due"),
    [
        ("0 6 * * *", at(26, 10), "2026-11-26", at(26, 6)),
        ("0 6 * * *", at(26, 6), "2026-11-26", at(26, 6)),
        ("0 6 * * *", at(26, 5, 59), "2026-11-25", at(25, 6)),
        ("0 * * * *", at(26, 0, 30), "2026-11-26", at(26, 0)),
        (None, at(26, 10), "2026-11-25", at(26, 0)),
    ],
    ids=["after-tick", "on-tick", "before-tick", "hourly", "no-cron"],
)
def test_expected_partition(cron: str | None, now: dt.datetime, expected: str, due: dt.datetime) -> None:
    day, due_at = expected_partition(cron, now)
    assert (day.isoformat(), due_at) == (expected, due)


def test_fresh_when_todays_partition_is_recent() -> None:
    committed = {**daily(1, 25), "2026-11-26": run("2026-11-26", at(26, 6, 5))}
    status = asset_status(SPEC, committed, {}, now=at(26, 6, 19))
    assert status.freshness.level == "fresh"
    assert (status.missing, status.failed) == ((), ())
    assert status.summary() == "26 of 26 days, 0 missing, last run 14 min ago, fresh"


def test_an_old_backfill_does_not_make_a_stale_asset_fresh() -> None:
    committed = {**daily(1, 24), "2026-11-25": run("2026-11-25", at(25, 6, 5))}
    committed["2026-11-03"] = run("2026-11-03", at(26, 9, 50), "backfill")
    status = asset_status(SPEC, committed, {}, now=at(26, 10))
    assert status.last_run == committed["2026-11-03"]
    assert status.freshness.level == "warn"
    assert status.freshness.last_commit_at == at(25, 6, 5)
    assert status.freshness.reason == "late: newest partition 2026-11-25 committed 28 h ago (warn after 24 h)"
    assert {d.partition: d.state for d in status.days[-3:]} == {
        "2026-11-24": "committed",
        "2026-11-25": "late",
        "2026-11-26": "missing",
    }
    assert status.summary() == (
        "25 of 26 days, 1 missing, last run 10 min ago, "
        "late: newest partition 2026-11-25 committed 28 h ago (warn after 24 h)"
    )


def test_past_the_fail_window_is_overdue() -> None:
    committed = daily(1, 24)  # the 24th committed on the 25th at 06:05; nothing since
    freshness = judge_freshness(SPEC, committed, {}, at(27, 7))
    assert (freshness.level, freshness.expected, freshness.newest_partition) == ("fail", "2026-11-27", "2026-11-24")
    assert (freshness.age_hours, freshness.due_at) == (48.917, at(27, 6))
    assert freshness.reason == "overdue: newest partition 2026-11-24 committed 2 days ago (fail after 48 h)"


def test_nothing_committed_counts_from_the_start_date() -> None:
    freshness = judge_freshness(SPEC, {}, {}, at(1, 7))
    assert (freshness.level, freshness.age_hours, freshness.last_commit_at) == ("warn", 7.0, None)
    assert freshness.reason == "late: 2026-11-01 is missing"
    overdue = judge_freshness(SPEC, {}, {}, at(26, 7))
    assert overdue.reason == "overdue: nothing committed since 2026-11-01 (fail after 48 h)"


def test_a_missing_newest_partition_warns_even_when_yesterday_is_recent() -> None:
    committed = daily(1, 25)  # the 25th committed today at 06:05, today's run not landed
    freshness = judge_freshness(SPEC, committed, {}, at(26, 7))
    assert (freshness.level, freshness.reason) == ("warn", "late: 2026-11-26 is missing")


def test_a_failure_after_the_last_commit_marks_the_day_failed() -> None:
    committed = {**daily(1, 25), "2026-11-26": run("2026-11-26", at(26, 6, 5))}
    failures = {
        "2026-11-10": FailedRun("2026-11-10", at(26, 6, 10), "f1", "SourceError: HTTP 500"),  # after its commit
        "2026-11-11": FailedRun("2026-11-11", at(11, 6, 0), "f0", "SourceError: HTTP 500"),  # before its commit
        "2026-11-26": FailedRun("2026-11-26", at(26, 7, 0), "f2", "SourceError: HTTP 500"),
    }
    status = asset_status(SPEC, committed, failures, now=at(26, 8))
    assert status.failed == ("2026-11-10", "2026-11-26")
    assert status.days[10].state == "committed" and status.days[10].failure is None
    assert status.freshness.reason == "late: 2026-11-26 is failed"
    assert status.summary().startswith("24 of 26 days, 0 missing, 2 failed, last run 2 h ago")


def test_no_freshness_policy() -> None:
    spec = dataclasses.replace(SPEC, freshness_hours=None)
    status = asset_status(spec, {}, {}, now=at(26, 8), since=dt.date(2026, 11, 20))
    assert status.freshness.level == "none"
    assert status.missing == tuple(f"2026-11-{d}" for d in range(20, 27))
    assert status.summary() == "0 of 7 days, 7 missing, never run, no freshness policy"


def test_json_lists_every_day_with_its_run() -> None:
    committed = {"2026-11-26": run("2026-11-26", at(26, 6, 5), "abc")}
    data = asset_status(SPEC, committed, {}, now=at(26, 7), since=dt.date(2026, 11, 25)).as_dict()
    assert data["days"] == [
        {"partition": "2026-11-25", "state": "missing"},
        {
            "partition": "2026-11-26",
            "state": "committed",
            "committed": {
                "partition": "2026-11-26",
                "committed_at": "2026-11-26T06:05:00+00:00",
                "run_id": "abc",
                "rows_added": 288,
                "snapshot_id": 1,
            },
        },
    ]
    assert (data["missing"], data["failed"], data["freshness"]["level"]) == (["2026-11-25"], [], "fresh")
    assert data["first_day"] == "2026-11-25" and data["now"] == "2026-11-26T07:00:00+00:00"


@pytest.mark.parametrize(
    ("text", "first"),
    [
        ("90d", dt.date(2026, 8, 29)),
        ("1d", dt.date(2026, 11, 26)),
        ("2w", dt.date(2026, 11, 13)),
        ("2026-10-01", dt.date(2026, 10, 1)),
    ],
)
def test_parse_since(text: str, first: dt.date) -> None:
    assert parse_since(text, dt.date(2026, 11, 26)) == first


def test_parse_since_names_the_forms() -> None:
    with pytest.raises(ConfigurationError, match=r"--since '3x': expected days \(90d\), weeks \(12w\) or a date"):
        parse_since("3x", dt.date(2026, 11, 26))


def test_ledger_keeps_the_newest_partitions_and_the_latest_commit() -> None:
    runs = daily(1, 25)
    runs["2026-11-02"] = run("2026-11-02", at(26, 9), "backfill")
    decoded = decode_runs(encode_runs({"glucose": runs}, keep=3))["glucose"]
    assert sorted(decoded) == ["2026-11-02", "2026-11-23", "2026-11-24", "2026-11-25"]
    assert decoded["2026-11-02"] == runs["2026-11-02"]
    assert decoded["2026-11-25"] == runs["2026-11-25"]


def test_a_later_run_that_changed_nothing_clears_a_failure() -> None:
    rows = [
        {"partition": "2026-11-10", "status": "failed", "finished_at": at(11, 6), "run_id": "a",
         "error_class": "SourceError", "error_message": "HTTP 500\nmore"},
        {"partition": "2026-11-10", "status": "succeeded", "finished_at": at(11, 7), "run_id": "b"},
        {"partition": "2026-11-12", "status": "succeeded", "finished_at": at(13, 6), "run_id": "c"},
        {"partition": "2026-11-12", "status": "failed", "finished_at": at(13, 7), "run_id": "d",
         "error_class": "SourceError", "error_message": "HTTP 502"},
    ]  # fmt: skip
    assert latest_failures(rows) == {"2026-11-12": FailedRun("2026-11-12", at(13, 7), "d", "SourceError: HTTP 502")}
