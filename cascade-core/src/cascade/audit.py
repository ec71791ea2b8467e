"""Write-audit-publish: a run commits to a private audit branch, audits that snapshot, then publishes.

``publish="audit"`` on the asset (or the run tag ``cascade/publish=audit``, which ``cascade run
--audit`` sets) makes a run:

1. fork ``cascade-audit-<run id>`` from the target branch's head and merge the batch onto it;
2. audit the committed snapshot: the asset's ``audits`` (DuckDB SQL, each returning one boolean,
   with ``batch``, the run's rows, and ``"table"``, the whole table at the audited snapshot, in
   scope; ``table`` is an SQL keyword, so quote it) and the ``cascade_audit`` hook;
3. fast-forward the target to exactly the audited snapshot in one ref update that asserts the
   target has not moved since the fork. If it moved, the audit branch is forked again from the
   new head, the batch merged and audited again (up to ``max_rounds``), so readers of the
   target never see a snapshot that was not audited;
4. drop the audit branch.

A failing audit raises :class:`AuditFailedError`: the target is untouched and the audit branch
is kept for inspection (``cascade branch list``, ``cascade show --branch``) until dropped.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

import pyarrow as pa
from pyiceberg.exceptions import CommitFailedException
from pyiceberg.table import Table

from cascade.catalog import ensure_branch, initialize_main
from cascade.errors import MergeConflictError, RunError, TerminalError
from cascade.merge import MergeOutcome
from cascade.pyiceberg_compat import move_branch
from cascade.telemetry import traced

AUDIT_BRANCH_PREFIX = "cascade-audit-"
PUBLISH_TAG = "cascade/publish"
DEFAULT_ROUNDS = 3


@dataclass(frozen=True)
class AuditFailure:
    """One failing audit: its name (an SQL audit's, or ``plugin:<name>`` for the hook) and why."""

    audit: str
    reason: str


@dataclass(frozen=True)
class AuditOutcome:
    """What the audit phase did: the audited snapshot, the audits run, the rounds, and the verdict."""

    branch: str
    target: str
    snapshot_id: int | None
    audits: tuple[str, ...]
    rounds: int
    published: bool
    failures: tuple[AuditFailure, ...] = ()

    def as_dict(self) -> dict[str, object]:
        return {
            "branch": self.branch,
            "target": self.target,
            "snapshot_id": self.snapshot_id,
            "audits": list(self.audits),
            "rounds": self.rounds,
            "published": self.published,
            "failures": {f.audit: f.reason for f in self.failures},
        }


class AuditFailedError(RunError, TerminalError):
    """An audit failed: the target branch is untouched, the audit branch kept for inspection."""

    def __init__(self, outcome: AuditOutcome, *, table: str, asset: str, partition: str) -> None:
        self.outcome = outcome
        lines = [
            f"{len(outcome.failures)} audit(s) failed on snapshot {outcome.snapshot_id} of table {table}; "
            f"branch {outcome.target!r} was not changed; inspect branch {outcome.branch!r}, then drop it "
            f"(cascade branch drop {table} {outcome.branch}):",
            *(f"  - {f.audit}: {f.reason}" for f in outcome.failures),
        ]
        super().__init__("\n".join(lines), asset=asset, partition=partition)


def audit_branch_name(run_id: str) -> str:
    return f"{AUDIT_BRANCH_PREFIX}{run_id}"


def wants_audit(publish: str, tags: Mapping[str, str]) -> bool:
    """The asset's ``publish``, unless the run tag ``cascade/publish`` asks for ``audit``."""
    return tags.get(PUBLISH_TAG, publish) == "audit"


def run_sql_audits(audits: Mapping[str, str], batch: pa.Table, table: pa.Table) -> list[AuditFailure]:
    """Run each audit in DuckDB; it passes when it returns exactly one row holding ``true``."""
    import duckdb

    failures = []
    connection = duckdb.connect()
    try:
        connection.register("batch", batch)
        connection.register("table", table)
        for name, sql in audits.items():
            try:
                found = connection.execute(sql).fetchall()
            except duckdb.Error as error:
                failures.append(AuditFailure(name, f"the query failed: {type(error).__name__}: {error}"))
                continue
            if found != [(True,)]:
                failures.append(AuditFailure(name, f"returned {found[:3]!r}, not one row holding true"))
    finally:
        connection.close()
    return failures


Audit = Callable[[Table, int], list[AuditFailure]]
MergeOnto = Callable[[Table, str], MergeOutcome]


def write_audit_publish(
    table: Table,
    target: str,
    branch: str,
    merge_onto: MergeOnto,
    audit: Audit,
    *,
    audits: tuple[str, ...],
    asset: str,
    partition: str,
    max_rounds: int = DEFAULT_ROUNDS,
) -> tuple[MergeOutcome, AuditOutcome]:
    """Merge onto a private ``branch`` forked from ``target``, audit it, and fast-forward ``target``.

    ``merge_onto(table, branch)`` merges the run's batch onto ``branch`` (the runner's merge,
    plain or chunked); ``audit(table, snapshot_id)`` returns the failures. Raises
    :class:`AuditFailedError` (audit branch kept) or, when ``target`` kept moving for
    ``max_rounds`` rounds, :class:`MergeConflictError` (audit branch dropped; retry the run).
    """
    name = ".".join(table.name())
    for round_number in range(1, max_rounds + 1):
        table = ensure_branch(initialize_main(table.refresh()), target)
        base = table.snapshot_by_name(target)
        assert base is not None
        _fork(table, branch, base.snapshot_id)
        outcome = merge_onto(table.refresh(), branch)
        table = table.refresh()
        head = table.snapshot_by_name(branch)
        assert head is not None
        if head.snapshot_id == base.snapshot_id:  # the batch changed nothing: nothing to audit or publish
            _drop(table, branch)
            return outcome, AuditOutcome(branch, target, None, audits, round_number, published=False)
        with traced("audit", table=name, branch=branch, snapshot_id=head.snapshot_id, round=round_number) as span:
            failures = audit(table, head.snapshot_id)
            span.set_attributes({"cascade.audits": list(audits), "cascade.audits_failed": len(failures)})
        audited = AuditOutcome(
            branch, target, head.snapshot_id, audits, round_number, published=False, failures=tuple(failures)
        )
        if failures:
            raise AuditFailedError(audited, table=name, asset=asset, partition=partition)
        try:
            move_branch(table, target, head.snapshot_id, expected=base.snapshot_id)
        except CommitFailedException:
            continue  # the target moved during the audit: fork again from its new head, re-merge, re-audit
        _drop(table.refresh(), branch)
        return outcome, AuditOutcome(branch, target, head.snapshot_id, audits, round_number, published=True)
    _drop(table.refresh(), branch)
    raise MergeConflictError(
        f"table {name}, branch {target!r} moved during each of {max_rounds} audit rounds; nothing was published"
    )


def _fork(table: Table, branch: str, snapshot_id: int) -> None:
    """Point the private audit branch at ``snapshot_id``, replacing a previous round's branch."""
    if branch in table.metadata.refs:
        table.manage_snapshots().remove_branch(branch).commit()
        table = table.refresh()
    table.manage_snapshots().create_branch(snapshot_id, branch).commit()


def _drop(table: Table, branch: str) -> None:
    if branch in table.metadata.refs:
        table.manage_snapshots().remove_branch(branch).commit()


def read_snapshot(table: Table, snapshot_id: int) -> pa.Table:
    return table.scan(snapshot_id=snapshot_id).to_arrow()


def audit_with(
    sql_audits: Mapping[str, str],
    batch: pa.Table,
    hook: Callable[[Table, int], list[tuple[str, str]]],
) -> Audit:
    """The audit of one run: the SQL audits, then every ``cascade_audit`` implementation."""

    def audit(table: Table, snapshot_id: int) -> list[AuditFailure]:
        failures = run_sql_audits(sql_audits, batch, read_snapshot(table, snapshot_id)) if sql_audits else []
        failures += [AuditFailure(f"plugin:{plugin}", reason) for plugin, reason in hook(table, snapshot_id)]
        return failures

    return audit
