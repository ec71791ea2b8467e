"""``cascade maintain`` in process, on the glucose asset's real table.

After expiry, ``cascade history`` lists the snapshots kept and ``cascade backfill`` still
skips every partition that a committed run wrote (the coverage ledger carries them).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import cascade
from cascade import CascadeConfig
from cascade.catalog import open_catalog
from cascade_nightscout import glucose
from tests.conftest import Invocation, read_table

DAYS = ["2024-06-01", "2024-06-02", "2024-06-03"]
TABLE = "nightscout.glucose"
EVERYTHING = ["--compact", "--rewrite-manifests", "--remove-orphans", "--older-than", "0", "--expire-older-than", "0"]


@pytest.fixture
def invoke(cli, tmp_path: Path, ns_config: CascadeConfig, ns_env: dict[str, str]):  # type: ignore[no-untyped-def]
    """The command in a folder whose ``cascade.toml`` points at ``ns_config``'s catalog, three days ingested."""
    (tmp_path / "cascade.toml").write_text('[cascade]\nhome = "cascade"\n')
    for day in DAYS:
        cascade.run(glucose, day, config=ns_config)

    def invoke(*args: str) -> tuple[int, str, str]:
        done: Invocation = cli(*args, env=ns_env)
        return done.exit_code, done.stdout, done.stderr

    return invoke


def snapshots(config: CascadeConfig) -> int:
    return len(open_catalog(config).load_table(TABLE).snapshots())


def test_dry_run_changes_nothing_then_maintain_keeps_rows_history_and_resume(invoke, ns_config: CascadeConfig) -> None:  # type: ignore[no-untyped-def]
    rows = read_table(ns_config, TABLE).sort_by("_id")
    count = snapshots(ns_config)
    assert count >= 3

    code, stdout, stderr = invoke("maintain", *EVERYTHING, "--dry-run", "--json")
    assert code == 0, stderr
    (dry,) = json.loads(stdout)["reports"]
    assert dry["dry_run"] and dry["table"] == TABLE and len(dry["expiry"]["snapshots_expired"]) == count - 1
    assert snapshots(ns_config) == count

    code, stdout, stderr = invoke("maintain", TABLE, *EVERYTHING, "--json")
    assert code == 0, stderr
    (report,) = json.loads(stdout)["reports"]
    assert len(report["expiry"]["snapshots_expired"]) >= count - 1  # the rewrites' own snapshots too
    assert report["manifests"]["manifests_after"] <= 1 and report["orphans"] is not None
    assert snapshots(ns_config) == 1
    assert read_table(ns_config, TABLE).sort_by("_id").equals(rows)

    code, stdout, stderr = invoke("history", TABLE, "--json")
    assert code == 0, stderr
    assert len(json.loads(stdout)) == 1
    code, stdout, stderr = invoke("backfill", "glucose", "--start", DAYS[0], "--end", DAYS[-1], "--json")
    assert code == 0, stderr
    resumed = json.loads(stdout)
    assert sorted(resumed["skipped"]) == DAYS and resumed["succeeded"] == []


def test_table_output_and_defaults_from_cascade_toml(invoke, tmp_path: Path, ns_config: CascadeConfig) -> None:  # type: ignore[no-untyped-def]
    (tmp_path / "cascade.toml").write_text(
        '[cascade]\nhome = "cascade"\n\n[maintenance]\nexpire_older_than = "0"\nretain_last = 2\ncompact = true\n'
    )
    code, stdout, stderr = invoke("maintain")
    assert code == 0, stderr
    assert "Cascade maintenance" in stdout and "(kept 2)" in stdout
    assert snapshots(ns_config) == 2  # retain_last from the file


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["maintain", "nightscout.nothing"], "nightscout.nothing"),
        (["maintain", "--expire-older-than", "soon"], "--expire-older-than 'soon' is not a duration"),
        (["maintain", "not-a-table"], "'not-a-table' is not a table name"),
    ],
    ids=["unknown-table", "bad-duration", "bad-name"],
)
def test_usage_errors_exit_2(invoke, args: list[str], message: str) -> None:  # type: ignore[no-untyped-def]
    code, _, stderr = invoke(*args)
    assert code == 2 and message in stderr
