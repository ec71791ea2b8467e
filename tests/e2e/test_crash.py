"""Crash safety: a run killed with SIGKILL at any phase leaves the table whole, and a re-run heals.

Each run is the ``cascade`` console script in a subprocess with ``CASCADE_CRASH_AT`` naming the
point where it kills itself (see ``cascade.faults``), exactly as ``kill -9`` or a power cut would.
"""

from __future__ import annotations

import signal
from pathlib import Path

import pyarrow.compute as pc
import pytest

import cascade
from cascade import load_config
from cascade.faults import CRASH_ENV, CRASH_POINTS
from cascade_cli.doctor import diagnose
from cascade_nightscout import glucose
from tests.conftest import cascade_cli, read_table, snapshot_id

GLUCOSE = "nightscout.glucose"
EARLIER, DAY = "2024-07-01", "2024-07-02"


def rows_on(cwd: Path, day: str) -> list[str]:
    rows = read_table(load_config(cwd), GLUCOSE)
    return [r["_id"] for r in rows.to_pylist() if r["date_string"].date().isoformat() == day]


# Of the kill -9 points only the two around the catalog commit meet the catalog (the earlier ones die
# before it): those run again on PostgreSQL + S3.
AROUND_THE_COMMIT = ("before-commit", "after-commit")


@pytest.mark.parametrize(
    "point",
    [pytest.param(p, marks=pytest.mark.catalog_sensitive) if p in AROUND_THE_COMMIT else p for p in CRASH_POINTS],
)
def test_sigkill_at_each_point_leaves_old_or_new_and_a_rerun_lands_one_clean_run(
    tmp_path: Path, ns_env: dict[str, str], point: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)  # in-process runs and the doctor read ./cascade.toml, as the CLI does
    for name, value in ns_env.items():
        monkeypatch.setenv(name, value)
    cascade.run(glucose, EARLIER, config=load_config(tmp_path))
    before = snapshot_id(load_config(tmp_path), GLUCOSE)

    killed = cascade_cli("run", "glucose", "--date", DAY, cwd=tmp_path, env={**ns_env, CRASH_ENV: point})
    assert killed.returncode == -signal.SIGKILL, killed.stderr

    after = snapshot_id(load_config(tmp_path), GLUCOSE)
    if point == "after-commit":
        assert after != before and len(rows_on(tmp_path, DAY)) == 288  # the new snapshot, whole
    else:
        assert after == before and rows_on(tmp_path, DAY) == []  # the previous snapshot, untouched
    assert len(diagnose()["leftover pipeline folders (runs that died)"]) == 1  # reported; ignored below

    rerun = cascade.run(glucose, DAY, config=load_config(tmp_path))
    table = read_table(load_config(tmp_path), GLUCOSE)
    assert table.num_rows == 2 * 288 and pc.count_distinct(table.column("_id")).as_py() == 2 * 288
    assert sorted(rows_on(tmp_path, DAY)) == sorted(set(rows_on(tmp_path, DAY)))
    assert rerun.rows_inserted == (0 if point == "after-commit" else 288)
