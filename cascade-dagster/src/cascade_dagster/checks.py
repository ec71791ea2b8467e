"""The asset checks of a Cascade asset, declared from its spec and judged from what ``cascade.run`` did.

- ``validation``: the Pandera model (blocking when a model is validated);
- ``quarantine`` (``on_invalid="quarantine"``): passes when no row was kept aside, a WARN
  failure naming the count when some were, an ERROR when too many were and the run failed;
- ``audit_<name>`` per SQL audit and ``cascade_audit`` for the hook's plugins (``publish="audit"``,
  or an asset with ``audits`` that a run may audit): blocking, an ERROR failure when the audit
  failed, naming the audit branch kept for inspection.

Nothing here reads a table or runs anything: results and errors in, Dagster check results out.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import dagster as dg

from cascade import AssetSpec, AuditFailedError, HookError, IngestionResult, TooManyInvalidRowsError, ValidationError
from cascade_dagster import _compat

VALIDATION_CHECK = "validation"
QUARANTINE_CHECK = "quarantine"
HOOK_AUDIT_CHECK = "cascade_audit"  # named for the hook; SQL audit checks all start with "audit_"
AUDIT_CHECK_PREFIX = "audit_"


@dataclass(frozen=True)
class AssetChecks:
    """The checks one asset declares, decided once from its spec (namespace resolved)."""

    key: dg.AssetKey
    spec: AssetSpec

    @property
    def validated(self) -> bool:
        return self.spec.validate and self.spec.validation_schema is not None

    @property
    def quarantines(self) -> bool:
        return self.spec.on_invalid == "quarantine"

    @property
    def declares_audits(self) -> bool:
        """Declares audit checks: the asset publishes through an audit, or has audits a run may ask for."""
        return self.spec.publish == "audit" or bool(self.spec.audits)

    def blocking(self, name: str) -> bool:
        """A failed validation or audit fails the run: nothing downstream may run on it."""
        return name != QUARANTINE_CHECK and (name != VALIDATION_CHECK or self.validated)

    def specs(self, partitions: dg.PartitionsDefinition) -> list[dg.AssetCheckSpec]:
        described = [
            (
                VALIDATION_CHECK,
                "Pandera validation of the batch" if self.validated else "No validation schema: nothing is validated",
            )
        ]
        if self.quarantines:
            described.append(
                (
                    QUARANTINE_CHECK,
                    f"Rows kept aside in {self.spec.quarantine_identifier} "
                    f"(the run fails above max_invalid_fraction={self.spec.max_invalid_fraction:g})",
                )
            )
        if self.declares_audits:
            described += [
                (audit_check(name), f"Write-audit-publish SQL audit {name!r}: {sql}")
                for name, sql in self.spec.audits.items()
            ]
            described.append((HOOK_AUDIT_CHECK, "Write-audit-publish: the cascade_audit hook's plugins"))
        return [
            _compat.check_spec(
                name, asset=self.key, partitions=partitions, blocking=self.blocking(name), description=description
            )
            for name, description in described
        ]

    def passed(self, result: IngestionResult, *, audited: bool) -> list[dg.AssetCheckResult]:
        """The results of a committed run; ``audited``: the run was asked to write-audit-publish."""
        results = [validation_result(result, self.validated)]
        if self.quarantines:
            results.append(quarantine_result(result, self.spec))
        if self.declares_audits and audited:
            results += audit_results(result, self.spec)
        return results

    def failed(self, error: Exception, partition: str) -> list[dg.AssetCheckResult]:
        """The results a failed run can tell: the check that failed it, and the audits that ran."""
        if isinstance(error, ValidationError):
            return [failed_validation(self.key, error, partition)]
        if isinstance(error, TooManyInvalidRowsError) and self.quarantines:
            return [too_many_invalid(self.key, error, self.spec, partition)]
        if isinstance(error, AuditFailedError) and self.declares_audits:
            return failed_audits(self.key, error, self.spec, partition)
        if isinstance(error, HookError) and error.hook == HOOK_AUDIT_CHECK and self.declares_audits:
            return [broken_audit_hook(self.key, error, partition)]
        return []

    def evaluation(self, check: dg.AssetCheckResult, partition: str) -> dg.AssetCheckEvaluation:
        """``check`` as one partition's result in a run of several partitions."""
        name = check.check_name or ""
        return _compat.check_evaluation(
            asset=self.key,
            name=name,
            partition=partition,
            passed=check.passed,
            severity=check.severity,
            blocking=self.blocking(name),
            description=check.description or "",
            metadata=dict(check.metadata),
        )


def audit_check(audit: str) -> str:
    """The check of one SQL audit (audit names are identifiers, so valid check names)."""
    return f"{AUDIT_CHECK_PREFIX}{audit}"


# --- validation ------------------------------------------------------------------------------------


def validation_result(result: IngestionResult, validated: bool) -> dg.AssetCheckResult:
    metadata: dict[str, Any] = {
        "validated": validated,
        "model": result.validation.model or "none",
        "rows": result.validation.rows,
    }
    if not validated:
        return dg.AssetCheckResult(
            check_name=VALIDATION_CHECK,
            passed=False,
            severity=dg.AssetCheckSeverity.WARN,
            description="Nothing was validated: the asset has no validation schema or validate=False",
            metadata=metadata,
        )
    return dg.AssetCheckResult(
        check_name=VALIDATION_CHECK,
        passed=result.validation.passed,
        description="Pandera validation of the batch",
        metadata=metadata,
    )


def error_result(key: dg.AssetKey, name: str, error: Exception, metadata: dict[str, Any]) -> dg.AssetCheckResult:
    """The check that failed a run: an ERROR described by the run's error."""
    return dg.AssetCheckResult(
        check_name=name,
        asset_key=key,
        passed=False,
        severity=dg.AssetCheckSeverity.ERROR,
        description=str(error),
        metadata=metadata,
    )


def failed_validation(key: dg.AssetKey, error: ValidationError, partition: str) -> dg.AssetCheckResult:
    failed = [f"{c.column}: {c.check} ({c.failure_count} rows)" for c in error.failed_checks]
    rows = dg.MetadataValue.md(f"```\n{error.failing_rows}\n```")
    return error_result(
        key, VALIDATION_CHECK, error, {"partition": partition, "failed_checks": failed, "failing_rows": rows}
    )


# --- quarantine ------------------------------------------------------------------------------------


def quarantine_metadata(
    spec: AssetSpec, partition: str, rows: int, seen: int, checks: Sequence[tuple[str, int]]
) -> dict[str, Any]:
    return {
        "partition": partition,
        "rows_quarantined": rows,
        "rows_seen": seen,
        "invalid_fraction": dg.MetadataValue.float(round(rows / seen, 6) if seen else 0.0),
        "max_invalid_fraction": dg.MetadataValue.float(spec.max_invalid_fraction),
        "failed_checks": dg.MetadataValue.json(dict(checks)),
        "quarantine_table": spec.quarantine_identifier,
    }


def quarantine_result(result: IngestionResult, spec: AssetSpec) -> dg.AssetCheckResult:
    """Passed when nothing was kept aside; else a WARN failure: the run succeeded, some rows wait."""
    held = result.quarantine  # always set under on_invalid="quarantine"; read defensively
    rows = result.rows_quarantined
    failed = held.failed_checks if held else ()
    metadata = quarantine_metadata(spec, result.partition, rows, held.rows_seen if held else rows, failed)
    if not rows:
        return dg.AssetCheckResult(
            check_name=QUARANTINE_CHECK, passed=True, description="No row was quarantined", metadata=metadata
        )
    return dg.AssetCheckResult(
        check_name=QUARANTINE_CHECK,
        passed=False,
        severity=dg.AssetCheckSeverity.WARN,
        description=(
            f"{rows} of {metadata['rows_seen']} row(s) quarantined in {spec.quarantine_identifier}, within "
            f"max_invalid_fraction={spec.max_invalid_fraction:g}; the valid rows were merged "
            f"(failed checks: {', '.join(f'{check} ({count})' for check, count in failed)})"
        ),
        metadata=metadata,
    )


def too_many_invalid(
    key: dg.AssetKey, error: TooManyInvalidRowsError, spec: AssetSpec, partition: str
) -> dg.AssetCheckResult:
    metadata = quarantine_metadata(spec, partition, error.rows_invalid, error.rows_seen, error.failed_checks)
    return error_result(key, QUARANTINE_CHECK, error, {**metadata, "committed": False})


# --- write-audit-publish ---------------------------------------------------------------------------


def audit_results(result: IngestionResult, spec: AssetSpec) -> list[dg.AssetCheckResult]:
    """Every audit passed (else the run raised): on which snapshot, and where it was published."""
    audited = result.audit
    if audited is None or audited.snapshot_id is None:  # nothing committed, so nothing published or audited
        description = (
            f"The run changed nothing: branch {result.branch!r} was not changed and there was nothing to audit"
        )
        metadata: dict[str, Any] = {"partition": result.partition, "audited": False, "target_branch": result.branch}
    else:
        description = (
            f"Passed on snapshot {audited.snapshot_id} (audit round {audited.rounds}); "
            f"branch {audited.target!r} was fast-forwarded to it"
        )
        metadata = {
            "partition": result.partition,
            "audited": True,
            "audit_branch": audited.branch,
            "target_branch": audited.target,
            "snapshot_id": str(audited.snapshot_id),
            "rounds": audited.rounds,
            "published": audited.published,
        }
    return [
        *(
            dg.AssetCheckResult(
                check_name=audit_check(name), passed=True, description=description, metadata={**metadata, "sql": sql}
            )
            for name, sql in spec.audits.items()
        ),
        dg.AssetCheckResult(check_name=HOOK_AUDIT_CHECK, passed=True, description=description, metadata=metadata),
    ]


def failed_audits(
    key: dg.AssetKey, error: AuditFailedError, spec: AssetSpec, partition: str
) -> list[dg.AssetCheckResult]:
    """Each audit's verdict on the kept audit branch: ERROR for a failing one, naming the branch and reason."""
    outcome = error.outcome
    reasons = {failure.audit: failure.reason for failure in outcome.failures}
    where = (
        f"snapshot {outcome.snapshot_id} on audit branch {outcome.branch!r}; branch {outcome.target!r} was not changed"
    )
    metadata: dict[str, Any] = {
        "partition": partition,
        "audit_branch": outcome.branch,
        "target_branch": outcome.target,
        "snapshot_id": str(outcome.snapshot_id),
        "rounds": outcome.rounds,
        "published": False,
    }

    def verdict(name: str, reason: str | None, extra: dict[str, Any]) -> dg.AssetCheckResult:
        if reason is None:
            return dg.AssetCheckResult(
                check_name=name,
                asset_key=key,
                passed=True,
                description=f"Passed on {where} (another audit failed)",
                metadata={**metadata, **extra},
            )
        return dg.AssetCheckResult(
            check_name=name,
            asset_key=key,
            passed=False,
            severity=dg.AssetCheckSeverity.ERROR,
            description=(
                f"{reason} ({where}; inspect the audit branch, then drop it: "
                f"cascade branch drop {spec.identifier} {outcome.branch})"
            ),
            metadata={**metadata, **extra, "reason": reason},
        )

    plugins = {
        audit.removeprefix("plugin:"): reason for audit, reason in reasons.items() if audit.startswith("plugin:")
    }
    hook_reason = "; ".join(f"{plugin}: {reason}" for plugin, reason in plugins.items()) or None
    return [
        *(verdict(audit_check(name), reasons.get(name), {"sql": sql}) for name, sql in spec.audits.items()),
        verdict(HOOK_AUDIT_CHECK, hook_reason, {"failed_plugins": dg.MetadataValue.json(plugins)}),
    ]


def broken_audit_hook(key: dg.AssetKey, error: HookError, partition: str) -> dg.AssetCheckResult:
    """A ``cascade_audit`` implementation raised: the audit could not be judged, so nothing was published."""
    metadata = {"partition": partition, "plugin": error.plugin, "published": False}
    return error_result(key, HOOK_AUDIT_CHECK, error, metadata)
