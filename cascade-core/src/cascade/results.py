"""The frozen result of one run, which adapters turn into their own types."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from cascade.audit import AuditOutcome
from cascade.merge import MergeOutcome
from cascade.quarantine import QuarantineSummary
from cascade.redaction import redact_values
from cascade.validation import ValidationReport


@dataclass(frozen=True)
class IngestionResult:
    """What one ``cascade.run`` did to one partition of one table.

    ``staged_files`` names the parquet files dlt staged; they are removed with the run's
    pipeline folder once the run ends, unless the configuration sets ``keep_staging``.
    """

    asset: str
    run_id: str
    table: str
    branch: str
    partition: str
    rows_extracted: int
    rows_inserted: int
    rows_updated: int
    rows_unchanged: int
    rows_deduplicated: int
    snapshot_id: int | None
    committed: bool
    staged_files: tuple[str, ...]
    bytes_staged: int
    validation: ValidationReport
    merge: MergeOutcome
    phase_seconds: Mapping[str, float] = field(default_factory=lambda: MappingProxyType({}))
    rows_deleted: int = 0
    quarantine: QuarantineSummary | None = None  # under on_invalid="quarantine": what was kept aside
    audit: AuditOutcome | None = None  # under write-audit-publish: the audited snapshot and the audits

    @property
    def rows_quarantined(self) -> int:
        return self.quarantine.rows_quarantined if self.quarantine else 0

    @property
    def duration_seconds(self) -> float:
        return sum(self.phase_seconds.values())

    def as_dict(self) -> dict[str, object]:
        """Plain values, for JSON output and orchestrator metadata; secrets masked."""
        values: dict[str, object] = {
            "asset": self.asset,
            "run_id": self.run_id,
            "table": self.table,
            "branch": self.branch,
            "partition": self.partition,
            "rows_extracted": self.rows_extracted,
            "rows_inserted": self.rows_inserted,
            "rows_updated": self.rows_updated,
            "rows_unchanged": self.rows_unchanged,
            "rows_deduplicated": self.rows_deduplicated,
            "rows_deleted": self.rows_deleted,
            "snapshot_id": self.snapshot_id,
            "committed": self.committed,
            "bytes_staged": self.bytes_staged,
            "validation_passed": self.validation.passed,
            "commit_attempts": self.merge.commit_attempts,
            "files_added": self.merge.files_added,
            "files_rewritten": self.merge.files_rewritten,
            "phase_seconds": {k: round(v, 4) for k, v in self.phase_seconds.items()},
            "duration_seconds": round(self.duration_seconds, 4),
            "rows_quarantined": self.rows_quarantined,
            "quarantine": self.quarantine.as_dict() if self.quarantine else None,
            "audit": self.audit.as_dict() if self.audit else None,
        }
        return {key: redact_values(value) for key, value in values.items()}
