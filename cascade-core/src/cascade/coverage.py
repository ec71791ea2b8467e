"""Partition coverage and freshness: which days of an asset are committed, late, failed or missing.

Behind ``cascade status``, ``cascade backfill --missing/--failed`` and Dagster's ``freshness``
check. Two halves:

- *readers* take what is true on any machine that sees the catalog: the last committed run of
  each partition from the branch's snapshot summaries and from the coverage ledger that expiry
  writes (:mod:`cascade.tables`, extended here with the recent runs' time, run id and rows), and
  the failures the run-log plugin (``cascade-runlog``) appends to ``cascade.runs`` when installed;
- *judges* are pure functions of those records and an injected ``now``.

Freshness is judged by partition date, never by the last commit of any partition, so a backfill
of an old day cannot make a stale asset look fresh: the age of the newest committed partition up
to the newest that should exist (for a cron, the day of its last tick, since each tick refreshes
that day's partition; without a cron, yesterday). In the calendar, that partition and the one
before it (today's and yesterday's for a daily cron) show as late once older than the warn window.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass
from typing import Any, Literal

from croniter import croniter
from pyiceberg.catalog import Catalog
from pyiceberg.expressions import And, BooleanExpression, EqualTo, GreaterThanOrEqual
from pyiceberg.table import Table
from pyiceberg.table.refs import MAIN_BRANCH
from pyiceberg.table.snapshots import Snapshot

from cascade.errors import ConfigurationError
from cascade.spec import AssetSpec
from cascade.tables import recorded_coverage

State = Literal["committed", "late", "failed", "missing", "future"]
Level = Literal["fresh", "warn", "fail", "none"]
STATES: tuple[State, ...] = ("committed", "late", "failed", "missing", "future")

RUNS_TABLE = "cascade.runs"
"""The run-log plugin's table (``cascade-runlog``); read for failures when it exists."""

RUNS_PREFIX = "cascade.coverage-runs."
"""Table property beside ``cascade.coverage.<id>``: the expired ancestors' recent runs, per asset."""

LEDGER_RECENT_PARTITIONS = 35
"""Partitions per asset (the newest by date) whose last run the ledger keeps in full; older ones keep coverage only."""


@dataclass(frozen=True)
class CommittedRun:
    """The last committed run of one partition.

    ``committed_at`` and ``run_id`` are ``None`` when only the coverage ledger remembers the
    partition (its snapshot was expired). ``rows_added`` is the snapshot's ``added-records``:
    rows written, including the unchanged rows of data files a merge rewrote.
    """

    partition: str
    committed_at: dt.datetime | None
    run_id: str | None
    rows_added: int | None
    snapshot_id: int | None


@dataclass(frozen=True)
class FailedRun:
    """The last failed run of one partition, from the run log."""

    partition: str
    failed_at: dt.datetime
    run_id: str | None
    error: str  # "ErrorClass: first line of the message"


@dataclass(frozen=True)
class DayStatus:
    partition: str
    state: State
    committed: CommittedRun | None
    failure: FailedRun | None


@dataclass(frozen=True)
class Freshness:
    """How fresh the asset's newest data is at ``now``.

    ``level`` is ``fresh``, ``warn`` (past the warn window, or the newest partition that should
    exist is missing or failed), ``fail`` (past the fail window) or ``none`` (no ``freshness_hours``).
    """

    level: Level
    expected: str  # the newest partition that should exist
    due_at: dt.datetime  # when it became due (the cron tick; without a cron, midnight)
    newest_partition: str | None  # the newest committed partition up to ``expected``
    last_commit_at: dt.datetime | None  # that partition's last commit
    age_hours: float  # since last_commit_at (or since start_date when nothing is committed)
    warn_hours: float | None
    fail_hours: float | None
    reason: str


@dataclass(frozen=True)
class AssetStatus:
    """Every partition of one asset from ``first_day`` to ``today``, and its freshness."""

    asset: str
    table: str
    branch: str
    now: dt.datetime
    first_day: dt.date
    today: dt.date
    days: tuple[DayStatus, ...]
    freshness: Freshness
    last_run: CommittedRun | None  # the latest commit of any partition

    def partitions(self, *states: State) -> tuple[str, ...]:
        return tuple(d.partition for d in self.days if d.state in states)

    @property
    def missing(self) -> tuple[str, ...]:
        return self.partitions("missing")

    @property
    def failed(self) -> tuple[str, ...]:
        return self.partitions("failed")

    @property
    def committed(self) -> tuple[str, ...]:
        return self.partitions("committed", "late")

    def summary(self) -> str:
        """One line: ``312 of 330 days, 18 missing, last run 14 min ago, fresh``."""
        parts = [f"{len(self.committed)} of {len(self.days)} days", f"{len(self.missing)} missing"]
        if self.failed:
            parts.append(f"{len(self.failed)} failed")
        last = self.last_run.committed_at if self.last_run else None
        parts.append(f"last run {ago(self.now - last)}" if last else "never run")
        parts.append(self.freshness.reason)
        return ", ".join(parts)

    def as_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["days"] = [{k: v for k, v in day.items() if v is not None} for day in data["days"]]
        data["missing"] = list(self.missing)
        data["failed"] = list(self.failed)
        data["summary"] = self.summary()
        jsonable: dict[str, Any] = _jsonable(data)
        return jsonable


# --- judges (pure) ----------------------------------------------------------------------------


def expected_partition(cron: str | None, now: dt.datetime) -> tuple[dt.date, dt.datetime]:
    """The newest partition that should exist at ``now``, and when it became due.

    With a cron, the day of its last tick at or before ``now`` (every tick refreshes its day's
    partition, see ``cascade_dagster.days_to_refresh``); without one, yesterday, due at midnight.
    """
    now = now.astimezone(dt.UTC)
    if cron:
        tick = croniter(cron, now + dt.timedelta(microseconds=1)).get_prev(dt.datetime).astimezone(dt.UTC)
        return tick.date(), tick
    midnight = dt.datetime.combine(now.date(), dt.time(), dt.UTC)
    return now.date() - dt.timedelta(days=1), midnight


def day_state(day: dt.date, committed: CommittedRun | None, failure: FailedRun | None, *, today: dt.date) -> State:
    """A day's state before lateness: future, failed (a failure later than its last commit), committed or missing.

    A commit known only from the coverage ledger has no time; a recorded failure of that day
    counts as later, since the ledger holds only commits older than the oldest kept snapshot.
    """
    if day > today:
        return "future"
    if failure is not None and (
        committed is None or committed.committed_at is None or failure.failed_at > committed.committed_at
    ):
        return "failed"
    return "committed" if committed is not None else "missing"


def judge_freshness(
    spec: AssetSpec,
    committed: Mapping[str, CommittedRun],
    failures: Mapping[str, FailedRun],
    now: dt.datetime,
) -> Freshness:
    """How old the asset's newest data is, judged by partition date, never by the last commit of any day.

    The newest data is the last commit of the newest partition (by date, up to the newest that
    should exist) that a run committed; its age against ``freshness_hours`` gives ``warn`` or
    ``fail``. The newest partition that should exist being missing or failed is a ``warn`` too.
    A backfill of an old day changes neither.
    """
    expected, due_at = expected_partition(spec.cron, now)
    timed = sorted(
        (p, run) for p, run in committed.items() if p <= expected.isoformat() and run.committed_at is not None
    )
    newest = timed[-1][1] if timed else None
    last = newest.committed_at if newest is not None else None
    since = last or dt.datetime.combine(spec.start_date, dt.time(), dt.UTC)
    age = (now - since).total_seconds() / 3600
    state = day_state(expected, committed.get(expected.isoformat()), failures.get(expected.isoformat()), today=expected)
    if newest is None:
        newest_data = f"nothing committed since {spec.start_date.isoformat()}"
    else:
        newest_data = f"newest partition {newest.partition} committed {ago(now - since)}"
    warn, fail = spec.freshness_hours if spec.freshness_hours else (None, None)
    if warn is None or fail is None:
        level: Level = "none"
        reason = "no freshness policy"
    elif age > fail:
        level, reason = "fail", f"overdue: {newest_data} (fail after {fail:g} h)"
    elif age > warn:
        level, reason = "warn", f"late: {newest_data} (warn after {warn:g} h)"
    elif state != "committed":
        level, reason = "warn", f"late: {expected.isoformat()} is {state}"
    else:
        level, reason = "fresh", "fresh"
    return Freshness(
        level=level,
        expected=expected.isoformat(),
        due_at=due_at,
        newest_partition=newest.partition if newest is not None else None,
        last_commit_at=last,
        age_hours=round(age, 3),
        warn_hours=warn,
        fail_hours=fail,
        reason=reason,
    )


def asset_status(
    spec: AssetSpec,
    committed: Mapping[str, CommittedRun],
    failures: Mapping[str, FailedRun],
    *,
    now: dt.datetime,
    since: dt.date | None = None,
    table: str = "",
    branch: str = MAIN_BRANCH,
) -> AssetStatus:
    """Every day from ``since`` (else the asset's ``start_date``) to ``now``'s date, and the asset's freshness."""
    now = now.astimezone(dt.UTC)
    today = now.date()
    first = max(spec.start_date, since) if since is not None else spec.start_date
    freshness = judge_freshness(spec, committed, failures, now)
    matter = {freshness.expected, (dt.date.fromisoformat(freshness.expected) - dt.timedelta(days=1)).isoformat()}
    days = []
    for n in range(max(0, (today - first).days + 1)):
        day = first + dt.timedelta(days=n)
        key = day.isoformat()
        run, failure = committed.get(key), failures.get(key)
        state = day_state(day, run, failure, today=today)
        if state == "committed" and key in matter and _is_late(run, freshness, now):
            state = "late"
        days.append(DayStatus(key, state, run, failure if state == "failed" else None))
    timed = [r for r in committed.values() if r.committed_at is not None]
    last_run = max(timed, key=lambda r: r.committed_at or now) if timed else None
    return AssetStatus(spec.name, table, branch, now, first, today, tuple(days), freshness, last_run)


def _is_late(run: CommittedRun | None, freshness: Freshness, now: dt.datetime) -> bool:
    if run is None or run.committed_at is None or freshness.warn_hours is None:
        return False
    return (now - run.committed_at).total_seconds() / 3600 > freshness.warn_hours


def ago(delta: dt.timedelta) -> str:
    """``14 min ago``, ``3 h ago``, ``2 days ago``."""
    seconds = max(0, int(delta.total_seconds()))
    if seconds < 90:
        return f"{seconds} s ago"
    if seconds < 90 * 60:
        return f"{round(seconds / 60)} min ago"
    if seconds < 48 * 3600:
        return f"{round(seconds / 3600)} h ago"
    return f"{round(seconds / 86400)} days ago"


def parse_since(value: str, today: dt.date) -> dt.date:
    """``90d``, ``12w`` or a date ``YYYY-MM-DD`` as the first day to look at."""
    text = value.strip().lower()
    try:
        if text.endswith("d") and text[:-1].isdigit():
            return today - dt.timedelta(days=int(text[:-1]) - 1)
        if text.endswith("w") and text[:-1].isdigit():
            return today - dt.timedelta(weeks=int(text[:-1])) + dt.timedelta(days=1)
        return dt.date.fromisoformat(text)
    except ValueError:
        pass
    raise ConfigurationError(f"--since {value!r}: expected days (90d), weeks (12w) or a date (YYYY-MM-DD)")


# --- readers ----------------------------------------------------------------------------------


def committed_runs(table: Table, asset: str, branch: str = MAIN_BRANCH) -> dict[str, CommittedRun]:
    """The last committed run of every partition of ``asset`` on ``branch``.

    Walks the branch from its head through a dict of snapshots (one pass), then adds what the
    coverage ledger remembers of expired ancestors.
    """
    return lineage_runs(table, table.snapshot_by_name(branch)).get(asset, {})


def lineage_runs(
    table: Table, snapshot: Snapshot | None, by_id: Mapping[int, Snapshot] | None = None
) -> dict[str, dict[str, CommittedRun]]:
    """Per asset, the last committed run of each partition written by ``snapshot`` and its ancestors."""
    lookup = by_id if by_id is not None else {s.snapshot_id: s for s in table.metadata.snapshots}
    properties = table.metadata.properties
    found: dict[str, dict[str, CommittedRun]] = {}
    while snapshot is not None:
        summary = snapshot.summary.additional_properties if snapshot.summary is not None else {}
        asset, partition = summary.get("cascade.asset"), summary.get("cascade.partition")
        if asset and partition and partition not in found.get(asset, {}):
            found.setdefault(asset, {})[partition] = CommittedRun(
                partition=partition,
                committed_at=_time(snapshot.timestamp_ms),
                run_id=summary.get("cascade.run-id"),
                rows_added=int(summary.get("added-records", 0)),
                snapshot_id=snapshot.snapshot_id,
            )
        if (runs := properties.get(runs_property(snapshot.snapshot_id))) is not None:
            for name, partitions in decode_runs(runs).items():
                for key, run in partitions.items():
                    found.setdefault(name, {}).setdefault(key, run)
        for name, covered in recorded_coverage(table, snapshot.snapshot_id).items():
            mine = found.setdefault(name, {})
            for key in covered:
                mine.setdefault(key, CommittedRun(key, None, None, None, None))
        parent = snapshot.parent_snapshot_id
        snapshot = lookup.get(parent) if parent is not None else None
    return found


def runs_property(snapshot_id: int) -> str:
    return f"{RUNS_PREFIX}{snapshot_id}"


def encode_runs(runs: Mapping[str, Mapping[str, CommittedRun]], keep: int = LEDGER_RECENT_PARTITIONS) -> str:
    """Per asset, the newest ``keep`` partitions' runs and the latest commit, as compact JSON.

    Older partitions stay in ``cascade.coverage.<id>`` (coverage only): this keeps the property
    small however long the history.
    """
    encoded: dict[str, dict[str, list[Any]]] = {}
    for asset, partitions in sorted(runs.items()):
        timed = {p: r for p, r in partitions.items() if r.committed_at is not None}
        if not timed:
            continue
        chosen = set(sorted(timed, reverse=True)[:keep])
        chosen.add(max(timed.values(), key=lambda r: r.committed_at or dt.datetime.min).partition)
        encoded[asset] = {
            p: [int(r.committed_at.timestamp() * 1000), r.run_id, r.rows_added, r.snapshot_id]  # type: ignore[union-attr]
            for p, r in sorted(timed.items())
            if p in chosen
        }
    return json.dumps(encoded, separators=(",", ":"))


def decode_runs(value: str) -> dict[str, dict[str, CommittedRun]]:
    return {
        asset: {
            p: CommittedRun(p, _time(ms), run_id, rows, snapshot_id)
            for p, (ms, run_id, rows, snapshot_id) in partitions.items()
        }
        for asset, partitions in json.loads(value).items()
    }


def failed_runs(
    catalog: Catalog, asset: str, branch: str = MAIN_BRANCH, since: dt.date | None = None
) -> dict[str, FailedRun]:
    """Per partition of ``asset`` on ``branch``, its failure when that is the last run the log records
    without a commit; empty without a run log.

    Runs that committed are in the table's snapshots; only the rows of runs that did not commit
    are read (failures, and successes that changed nothing, which clear an earlier failure). The
    run log's data files carry per-column bounds, so files of committed runs are never opened.
    """
    if not catalog.table_exists(RUNS_TABLE):
        return {}
    runs = catalog.load_table(RUNS_TABLE)
    row_filter: BooleanExpression = And(
        _equal("asset", asset),
        _equal("branch", branch),
        EqualTo("committed", False),  # type: ignore[call-arg,arg-type]
    )
    if since is not None:
        row_filter = And(row_filter, _at_least("partition", since.isoformat()))
    columns = ("partition", "status", "finished_at", "run_id", "error_class", "error_message")
    rows = runs.scan(row_filter=row_filter, selected_fields=columns).to_arrow().to_pylist()
    return latest_failures(rows)


# pyiceberg's predicates take (term, literal) positionally; mypy reads their pydantic fields instead.
def _equal(column: str, value: str | bool) -> BooleanExpression:
    return EqualTo(column, value)  # type: ignore[call-arg,arg-type]


def _at_least(column: str, value: str) -> BooleanExpression:
    return GreaterThanOrEqual(column, value)  # type: ignore[call-arg,arg-type]


def latest_failures(rows: Iterable[Mapping[str, Any]]) -> dict[str, FailedRun]:
    """Per partition, its newest run-log row when that row is a failure (``status == "failed"``)."""
    newest: dict[str, tuple[dt.datetime, Mapping[str, Any]]] = {}
    for row in rows:
        at = row["finished_at"]
        if row["partition"] is None or at is None:
            continue
        at = at if at.tzinfo else at.replace(tzinfo=dt.UTC)
        if row["partition"] not in newest or at > newest[row["partition"]][0]:
            newest[row["partition"]] = (at, row)
    found: dict[str, FailedRun] = {}
    for partition, (at, row) in newest.items():
        if row.get("status", "failed") == "failed":
            message = (row.get("error_message") or "").splitlines()
            error = f"{row.get('error_class') or 'Error'}: {message[0] if message else ''}".rstrip(": ")
            found[partition] = FailedRun(partition, at, row.get("run_id"), error)
    return found


def table_status(
    catalog: Catalog,
    spec: AssetSpec,
    identifier: str,
    *,
    branch: str = MAIN_BRANCH,
    now: dt.datetime,
    since: dt.date | None = None,
) -> AssetStatus:
    """Read the asset's table (when it exists and has ``branch``) and the run log, and judge them."""
    committed: dict[str, CommittedRun] = {}
    if catalog.table_exists(identifier):
        table = catalog.load_table(identifier)
        if branch in table.metadata.refs:
            committed = committed_runs(table, spec.name, branch)
    first = max(spec.start_date, since) if since is not None else spec.start_date
    failures = failed_runs(catalog, spec.name, branch, since=first)
    return asset_status(spec, committed, failures, now=now, since=since, table=identifier, branch=branch)


def _time(ms: int) -> dt.datetime:
    return dt.datetime.fromtimestamp(ms / 1000, dt.UTC)


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, (dt.datetime, dt.date)):
        return value.isoformat()
    return value
