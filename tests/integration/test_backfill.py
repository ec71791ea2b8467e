"""``cascade.backfill`` in process: worker processes, failures, resume, a killed worker, Ctrl-C.

The ``days`` asset writes the id of the process that ran it into every row, and does what
``ACTIONS`` says for a partition (fail, kill its own process, press Ctrl-C on the parent), so
each test can tell which process ran what, and what landed, from the table alone.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import threading
import time
from collections import Counter
from collections.abc import Iterator
from typing import Any

import dlt
import pyarrow.compute as pc
import pytest
from pyiceberg.schema import Schema
from pyiceberg.types import LongType, NestedField

import cascade
from cascade import (
    BackfillInterrupted,
    BackfillReport,
    CascadeConfig,
    IngestionResult,
    PartitionFailure,
    UnknownAssetError,
    cascade_ingestion,
)
from cascade.asset_registry import Registry
from cascade_nightscout import glucose
from tests.conftest import read_table

SCHEMA = Schema(NestedField(1, "id", LongType(), required=False), NestedField(2, "pid", LongType(), required=False))
ROWS = 5
DAYS = [f"2024-05-{d:02d}" for d in range(1, 7)]
ACTIONS: dict[str, str] = {}  # partition -> what the asset does; forked workers see the test's values
TEST_PROCESS: list[int] = []


def act(partition: str) -> None:
    action = ACTIONS.get(partition, "")
    if action == "fail":
        raise ValueError(f"no data for {partition}")
    if action == "kill":
        assert os.getpid() != TEST_PROCESS[0], "the asset would kill the test process"
        os.kill(os.getpid(), signal.SIGKILL)
    if action == "ctrl-c":  # as a terminal does: to the whole process group, the workers too
        os.kill(TEST_PROCESS[0], signal.SIGINT)
        if os.getpid() != TEST_PROCESS[0]:
            os.kill(os.getpid(), signal.SIGINT)
        time.sleep(0.5)  # the parent hears it while this partition still runs
    if action.startswith("ctrl-c-twice"):
        os.kill(TEST_PROCESS[0], signal.SIGINT)
        time.sleep(0.5)  # two signals at once would be heard as one
    try:
        if action.startswith("ctrl-c-twice"):
            os.kill(TEST_PROCESS[0], signal.SIGINT)
        if action.startswith(("ctrl-c-twice", "sleep")):
            time.sleep(60)  # aborted long before
    except KeyboardInterrupt as interrupt:
        if action.endswith("in-a-library"):  # as a driver or client library may: its own error
            raise RuntimeError("the library's call was interrupted") from interrupt
        raise


@pytest.fixture
def days(registry: Registry) -> Iterator[Any]:
    @cascade_ingestion(table_name="days", unique_key="id", iceberg_schema=SCHEMA, group="backfill")
    def days(partition_date: str):  # type: ignore[no-untyped-def]
        act(partition_date)
        day = int(partition_date.replace("-", ""))
        return dlt.resource([{"id": day * 100 + n, "pid": os.getpid()} for n in range(ROWS)], name="days")

    TEST_PROCESS[:] = [os.getpid()]
    yield days
    ACTIONS.clear()


def landed(config: CascadeConfig) -> dict[str, int]:
    """Rows per partition in the table (an id is the day's digits and a row number)."""
    days = (str(i // 100) for i in read_table(config, "backfill.days").column("id").to_pylist())
    return dict(Counter(f"{d[:4]}-{d[4:6]}-{d[6:]}" for d in days))


@pytest.mark.catalog_sensitive
def test_two_workers_run_every_partition_in_other_processes(days: Any, config: CascadeConfig) -> None:
    seen: list[str] = []
    started: list[list[str]] = []
    report = cascade.backfill(
        days, DAYS, workers=2, config=config, on_start=lambda todo: started.append(list(todo)),
        on_outcome=lambda outcome: seen.append(outcome.partition),
    )  # fmt: skip
    assert started == [DAYS] and sorted(seen) == DAYS
    assert (sorted(report.succeeded), dict(report.failures), report.skipped) == (DAYS, {}, ())
    assert (report.asset, report.branch, report.workers, report.interrupted) == ("days", "main", 2, False)
    assert report.rows == len(DAYS) * ROWS
    results = list(report.succeeded.values())
    assert all(isinstance(r, IngestionResult) and r.committed and r.rows_inserted == ROWS for r in results)
    assert dict(results[0].phase_seconds)  # mappings survive the trip from the worker
    assert len({r.snapshot_id for r in results}) == len(DAYS)  # one atomic commit each
    assert landed(config) == dict.fromkeys(DAYS, ROWS)
    pids = set(read_table(config, "backfill.days").column("pid").to_pylist())
    assert len(pids) == 2 and os.getpid() not in pids


@pytest.mark.catalog_sensitive
def test_one_worker_runs_in_process(days: Any, config: CascadeConfig) -> None:
    report = cascade.backfill("days", DAYS[:2], config=config)  # by name, as registered
    assert sorted(report.succeeded) == DAYS[:2]
    assert set(read_table(config, "backfill.days").column("pid").to_pylist()) == {os.getpid()}


@pytest.mark.catalog_sensitive
def test_a_failing_partition_is_reported_and_a_second_backfill_resumes(days: Any, config: CascadeConfig) -> None:
    ACTIONS[DAYS[2]] = "fail"
    first = cascade.backfill(days, DAYS, workers=2, config=config)
    assert sorted(first.succeeded) == [d for d in DAYS if d != DAYS[2]]
    message = f"asset 'days', partition {DAYS[2]}: the source failed: ValueError: no data for {DAYS[2]}"
    assert first.failures == {DAYS[2]: PartitionFailure(DAYS[2], "SourceError", message)}
    assert first.failed == {DAYS[2]: message}
    assert first.as_dict()["failed"] == {DAYS[2]: message}
    assert first.as_dict()["failure_kinds"] == {DAYS[2]: "SourceError"}
    ACTIONS.clear()
    second = cascade.backfill(days, DAYS, workers=2, config=config)
    assert (list(second.succeeded), second.skipped, dict(second.failures)) == ([DAYS[2]], tuple(first.succeeded), {})
    assert landed(config) == dict.fromkeys(DAYS, ROWS)
    forced = cascade.backfill(days, DAYS[:3], workers=2, force=True, config=config)
    assert (sorted(forced.succeeded), forced.skipped) == (DAYS[:3], ())


@pytest.mark.catalog_sensitive
def test_a_killed_worker_fails_its_partition_and_another_takes_over(days: Any, config: CascadeConfig) -> None:
    ACTIONS[DAYS[1]] = "kill"
    report = cascade.backfill(days, DAYS, workers=2, config=config)
    failure = report.failures[DAYS[1]]
    assert (list(report.failures), failure.kind, failure.transient) == ([DAYS[1]], "WorkerDied", False)
    assert "died (killed by SIGKILL)" in failure.message
    assert sorted(report.succeeded) == [d for d in DAYS if d != DAYS[1]]
    assert landed(config) == {d: ROWS for d in DAYS if d != DAYS[1]}
    assert len(set(read_table(config, "backfill.days").column("pid").to_pylist())) >= 2


@pytest.mark.catalog_sensitive
@pytest.mark.parametrize("workers", [1, 2], ids=["in-process", "two-workers"])
def test_ctrl_c_stops_handing_out_and_the_running_partition_finishes(
    days: Any, config: CascadeConfig, workers: int
) -> None:
    ACTIONS[DAYS[0]] = "ctrl-c"
    with pytest.raises(BackfillInterrupted) as raised:
        cascade.backfill(days, DAYS, workers=workers, config=config)
    report = raised.value.report
    assert report.interrupted and DAYS[0] in report.succeeded and not report.failures
    assert 0 < len(report.succeeded) < len(DAYS)
    assert landed(config) == dict.fromkeys(report.succeeded, ROWS)  # every partition whole
    ACTIONS.clear()
    resumed = cascade.backfill(days, DAYS, workers=workers, config=config)
    assert sorted(resumed.succeeded) == sorted(set(DAYS) - set(report.succeeded))
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # put back


@pytest.mark.catalog_sensitive
def test_a_second_ctrl_c_aborts_the_running_partition(days: Any, config: CascadeConfig) -> None:
    ACTIONS[DAYS[0]] = "ctrl-c-twice"
    started = time.monotonic()
    with pytest.raises(BackfillInterrupted) as raised:
        cascade.backfill(days, DAYS, workers=2, config=config)
    report = raised.value.report
    assert time.monotonic() - started < 50  # the partition sleeping a minute was cut short
    assert report.failures[DAYS[0]].kind == "Interrupted"
    assert {f.kind for f in report.failures.values()} == {"Interrupted"}
    assert DAYS[0] not in landed(config)


@pytest.mark.parametrize("workers", [1, 2])
def test_an_abort_a_library_turned_into_its_own_error_is_still_an_interruption(
    days: Any, config: CascadeConfig, workers: int
) -> None:
    """The second Ctrl-C interrupts whatever runs: a database driver or HTTP client may raise its
    own error for it, which the run reports as a failure. It is still the abort's doing."""
    if workers == 1:  # in process: the interrupt lands in the partition that pressed Ctrl-C
        ACTIONS[DAYS[0]] = "ctrl-c-twice-in-a-library"
    else:  # in workers: the other worker's partition is in the library call when aborted
        ACTIONS.update({DAYS[0]: "ctrl-c-twice", DAYS[1]: "sleep-in-a-library"})
    with pytest.raises(BackfillInterrupted) as raised:
        cascade.backfill(days, DAYS, workers=workers, config=config)
    failures = raised.value.report.failures
    assert {p: f.kind for p, f in failures.items()} == dict.fromkeys(DAYS[:workers], "Interrupted")


def test_spawned_workers_find_the_asset_by_name(ns_config: CascadeConfig) -> None:
    report = cascade.backfill(glucose, DAYS[:2], workers=2, config=ns_config, start_method="spawn")
    assert (sorted(report.succeeded), report.rows) == (DAYS[:2], 2 * 288)
    ids = read_table(ns_config, "nightscout.glucose").column("_id")
    assert len(ids) == 2 * 288 == len(pc.unique(ids))


def test_a_source_failure_keeps_its_kind_and_transient_mark(ns_config: CascadeConfig, nightscout: Any) -> None:
    nightscout.fail(status=500, scope=DAYS[0])
    report = cascade.backfill(glucose, DAYS[:2], workers=2, config=ns_config)
    failure = report.failures[DAYS[0]]
    assert (failure.kind, failure.transient) == ("TransientSourceError", True)
    assert failure.message.startswith(f"asset 'glucose', partition {DAYS[0]}: HTTP 500")
    assert list(report.succeeded) == [DAYS[1]]


def test_a_spawned_worker_that_cannot_find_the_asset_fails_each_partition_saying_why(config: CascadeConfig) -> None:
    from cascade.workers import Job, job_asset

    assert isinstance(job_asset(Job(glucose, "main", config)), type(glucose))
    missing = job_asset(Job("no_such_asset", "main", config))
    assert isinstance(missing, UnknownAssetError) and "no_such_asset" in str(missing)
    failure = PartitionFailure.from_error(DAYS[0], missing)
    assert (failure.kind, failure.message) == ("UnknownAssetError", str(missing).splitlines()[0])


def test_a_lock_another_thread_holds_at_the_fork_does_not_hang_a_worker(days: Any, config: CascadeConfig) -> None:
    """The progress bar's thread writes through a redacting stream, so it holds the redaction
    lock for a moment ten times a second; a worker forked in that moment must not inherit it held."""
    from cascade import redaction

    held, release = threading.Event(), threading.Event()

    def hold() -> None:
        with redaction._lock:
            held.set()
            release.wait(30)

    holder = threading.Thread(target=hold)
    holder.start()
    held.wait()
    reports: list[BackfillReport] = []
    runner = threading.Thread(target=lambda: reports.append(cascade.backfill(days, DAYS[:2], workers=2, config=config)))
    runner.start()
    deadline = time.monotonic() + 60
    while len(multiprocessing.active_children()) < 2 and runner.is_alive() and time.monotonic() < deadline:
        time.sleep(0.01)
    release.set()  # the workers are forked: the parent's lock is free again
    runner.join(60)
    if runner.is_alive():  # hung: stop the workers so that the test fails instead of hanging
        for child in multiprocessing.active_children():
            child.kill()
        runner.join()
    holder.join()
    assert sorted(reports[0].succeeded) == DAYS[:2], reports[0].failures
