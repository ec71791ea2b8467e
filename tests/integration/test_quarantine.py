"""``on_invalid="quarantine"``: invalid rows go to ``<table>__quarantine``, valid rows are merged.

Assets are written as an outsider would (a ``dlt.resource`` over plain records, a Pandera
model), run through ``cascade.run`` on a real SQLite catalog, and compared with dict models.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path
from typing import Any

import dlt
import pandera.pandas as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pyiceberg.schema import Schema
from pyiceberg.types import LongType, NestedField, StringType

import cascade
from cascade import INGESTED_AT, CascadeConfig, cascade_ingestion
from cascade.asset_registry import isolated_registry
from cascade.catalog import open_catalog
from cascade.errors import AssetDefinitionError
from cascade.faults import CRASH_ENV
from cascade.quarantine import TooManyInvalidRowsError, read_quarantine
from cascade.quarantine_replay import replay
from tests.conftest import examples, read_table, snapshot_id

SCHEMA = Schema(
    NestedField(1, "id", StringType(), required=True),
    NestedField(2, "n", LongType(), required=False),
)
TABLE, QUARANTINE = "q.things", "q.things__quarantine"


class NonNegative(pa.DataFrameModel):
    n: int = pa.Field(ge=0, nullable=True)


class AboveMinusThree(pa.DataFrameModel):
    n: int = pa.Field(ge=-2, nullable=True)


def things_asset(batches: dict[str, list[Any]], *, model: Any = NonNegative, fraction: float = 1.0) -> Any:
    @cascade_ingestion(
        table_name="things",
        unique_key="id",
        iceberg_schema=SCHEMA,
        group="q",
        validation_schema=model,
        on_invalid="quarantine",
        max_invalid_fraction=fraction,
    )
    def things(partition_date: str):
        return dlt.resource(batches.get(partition_date, []), name="things")

    return things


def stored(config: CascadeConfig) -> dict[str, int | None]:
    if snapshot_id(config, TABLE) is None:
        return {}
    return {r["id"]: r["n"] for r in read_table(config, TABLE).to_pylist()}


def quarantined(config: CascadeConfig) -> dict[tuple[str, str], dict[str, Any]]:
    """(partition, key id) -> the record kept, as the source sent it."""
    rows = read_quarantine(open_catalog(config), ("q", "things__quarantine")).to_pylist()
    keys = [(r["partition"], json.loads(r["row_key"])["id"]) for r in rows]
    assert len(keys) == len(set(keys)), f"duplicates in quarantine: {sorted(keys)}"
    return {k: json.loads(r["record"]) for k, r in zip(keys, rows, strict=True)}


# --- hypothesis: the table holds exactly the valid rows, quarantine the latest run's invalid ones ---

VALID, FAILS_CHECK, FAILS_TYPE = "valid", "check", "type"
kinds = st.sampled_from([VALID, VALID, VALID, FAILS_CHECK, FAILS_TYPE])


def record(key: str, kind: str, n: int) -> dict[str, Any]:
    if kind == VALID:
        return {"id": key, "n": n}
    if kind == FAILS_CHECK:
        return {"id": key, "n": -1 - n}
    return {"id": key, "n": ["x", True, 1.5, "12"][n % 4]}  # a value an integer column cannot hold


runs = st.lists(
    st.tuples(
        st.sampled_from(["2024-01-01", "2024-01-02"]),
        st.lists(st.tuples(st.integers(0, 7), kinds, st.integers(0, 99)), max_size=12, unique_by=lambda t: t[0]),
    ),
    min_size=1,
    max_size=3,
)


@settings(max_examples=examples(8), deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(runs=runs, fraction=st.sampled_from([0.0, 0.25, 0.5, 1.0]))
def test_random_invalid_fractions_land_valid_rows_and_quarantine_the_latest_invalid_ones(
    runs: list[tuple[str, list[tuple[int, str, int]]]], fraction: float
) -> None:
    with tempfile.TemporaryDirectory() as home, isolated_registry():
        config = CascadeConfig(home=Path(home))
        batches: dict[str, list[dict[str, Any]]] = {}
        asset = things_asset(batches, fraction=fraction)
        table_model: dict[str, int] = {}
        quarantine_model: dict[tuple[str, str], dict[str, Any]] = {}
        for partition, items in runs:
            day = [record(f"{partition}/{k}", kind, n) for k, kind, n in items]
            batches[partition] = day
            invalid = [r for r, (_, kind, _) in zip(day, items, strict=True) if kind != VALID]
            before = (snapshot_id(config, TABLE), snapshot_id(config, QUARANTINE))
            if invalid and len(invalid) / len(day) > fraction:
                with pytest.raises(TooManyInvalidRowsError, match=r"above max_invalid_fraction"):
                    cascade.run(asset, partition, config=config)
                assert (snapshot_id(config, TABLE), snapshot_id(config, QUARANTINE)) == before
                continue
            result = cascade.run(asset, partition, config=config)
            assert result.rows_quarantined == len(invalid)
            table_model.update({r["id"]: r["n"] for r in day if r not in invalid})
            quarantine_model = {k: v for k, v in quarantine_model.items() if k[0] != partition}
            quarantine_model.update({(partition, r["id"]): r for r in invalid})
            assert stored(config) == table_model
            assert quarantined(config) == quarantine_model


def test_result_names_the_failing_checks_and_the_rows_kept(config: CascadeConfig) -> None:
    day = [{"id": "a", "n": 1}, {"id": "b", "n": -4}, {"id": "c", "n": "x"}, {"id": "d", "n": 2}]
    with isolated_registry():
        result = cascade.run(things_asset({"2024-01-01": day}), "2024-01-01", config=config)
    assert result.quarantine is not None
    assert result.quarantine.as_dict() == {
        "table": QUARANTINE,
        "rows_quarantined": 2,
        "rows_seen": 4,
        "failed_checks": {"n: greater_than_or_equal_to(0)": 1, "n: type": 1},
    }
    assert (result.rows_extracted, result.rows_inserted, result.as_dict()["rows_quarantined"]) == (3, 2, 2)
    rows = {
        json.loads(r["row_key"])["id"]: r
        for r in read_quarantine(open_catalog(config), ("q", "things__quarantine")).to_pylist()
    }
    assert rows["c"]["record"] == '{"id": "c", "n": "x"}' and rows["c"]["detail"] == "n: str 'x' is not an integer"
    assert json.loads(rows["b"]["checks"]) == ["n: greater_than_or_equal_to(0)"] and json.loads(
        rows["b"]["columns"]
    ) == ["n"]
    assert {r["run_id"] for r in rows.values()} == {result.run_id}


def test_the_default_policy_still_fails_the_run(config: CascadeConfig) -> None:
    @cascade_ingestion(table_name="strict", unique_key="id", iceberg_schema=SCHEMA, group="q")
    def strict(partition_date: str):
        return dlt.resource([{"id": "a", "n": "x"}], name="strict")

    with isolated_registry(), pytest.raises(cascade.errors.SchemaMismatchError, match=r"column 'n'.*record 0"):
        cascade.run(strict, "2024-01-01", config=config)


# --- replay -----------------------------------------------------------------------------------------


def test_replay_after_relaxing_a_check_moves_exactly_the_rows_that_now_pass(config: CascadeConfig) -> None:
    day = [{"id": "a", "n": 3}, {"id": "b", "n": -1}, {"id": "c", "n": -2}, {"id": "d", "n": -5}, {"id": "e", "n": "x"}]
    with isolated_registry():
        cascade.run(things_asset({"2024-01-01": day}), "2024-01-01", config=config)
    assert stored(config) == {"a": 3}
    assert set(quarantined(config)) == {("2024-01-01", k) for k in "bcde"}

    with isolated_registry():
        result = replay(things_asset({}, model=AboveMinusThree), "2024-01-01", config=config)
    assert stored(config) == {"a": 3, "b": -1, "c": -2}
    assert quarantined(config) == {
        ("2024-01-01", "d"): {"id": "d", "n": -5},
        ("2024-01-01", "e"): {"id": "e", "n": "x"},
    }
    assert (result.rows_inserted, result.rows_quarantined) == (2, 2)


# --- kill -9 between the quarantine commit and the merge commit --------------------------------------

SCRIPT = """
import sys
from pathlib import Path
import dlt, pandera.pandas as pa
from pyiceberg.schema import Schema
from pyiceberg.types import LongType, NestedField, StringType
import cascade
from cascade import INGESTED_AT, CascadeConfig, cascade_ingestion

class NonNegative(pa.DataFrameModel):
    n: int = pa.Field(ge=0, nullable=True)

@cascade_ingestion(table_name="things", unique_key="id", group="q", validation_schema=NonNegative,
    iceberg_schema=Schema(NestedField(1, "id", StringType(), required=True), NestedField(2, "n", LongType())),
    on_invalid="quarantine", max_invalid_fraction=0.5)
def things(partition_date: str):
    return dlt.resource([{"id": f"k{i}", "n": i if i % 4 else -i - 1} for i in range(20)], name="things")

cascade.run(things, "2024-01-01", config=CascadeConfig(home=Path(sys.argv[1])))
"""


def run_script(home: Path, crash_at: str | None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != CRASH_ENV}
    if crash_at is not None:
        env[CRASH_ENV] = crash_at
    script = home.parent / "things_run.py"
    script.write_text(textwrap.dedent(SCRIPT))
    return subprocess.run(
        [sys.executable, str(script), str(home)], env=env, capture_output=True, text=True, timeout=300
    )


def test_kill_between_quarantine_and_merge_then_rerun_loses_and_duplicates_nothing(tmp_path: Path) -> None:
    home = tmp_path / "home"
    config = CascadeConfig(home=home)
    killed = run_script(home, "after-quarantine")
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    assert snapshot_id(config, TABLE) is None  # the merge never happened
    assert len(quarantined(config)) == 5  # the quarantine commit did

    rerun = run_script(home, None)
    assert rerun.returncode == 0, rerun.stderr
    assert stored(config) == {f"k{i}": i for i in range(20) if i % 4}
    assert quarantined(config) == {("2024-01-01", f"k{i}"): {"id": f"k{i}", "n": -i - 1} for i in range(0, 20, 4)}


# --- the decorator refuses a wrong policy at import ---------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"on_invalid": "drop"}, r"'on_invalid': must be one of \['fail', 'quarantine'\], got 'drop'"),
        ({"max_invalid_fraction": 1.5}, r"'max_invalid_fraction': must be a number from 0 to 1, got 1.5"),
        ({"max_invalid_fraction": float("nan")}, r"'max_invalid_fraction'"),
        ({"quarantine_suffix": "Bad"}, r"'quarantine_suffix': must start with '_'"),
        ({"publish": "later"}, r"'publish': must be one of \['direct', 'audit'\], got 'later'"),
        ({"audits": ["select true"]}, r"'audits': must be a mapping of audit name to SQL, got list"),
        ({"audits": {"No Gap": "select true"}}, r"'audits': audit name 'No Gap' must be lower-case"),
        ({"audits": {"no_gap": " "}}, r"'audits': audit 'no_gap' must be a non-empty SQL string"),
    ],
    ids=[
        "on-invalid",
        "fraction-above-one",
        "fraction-nan",
        "suffix",
        "publish",
        "audits-list",
        "audit-name",
        "audit-sql",
    ],
)
def test_a_wrong_policy_is_refused_at_import(kwargs: dict[str, Any], message: str) -> None:
    with isolated_registry(), pytest.raises(AssetDefinitionError, match=message):

        @cascade_ingestion(table_name="t", unique_key="id", iceberg_schema=SCHEMA, group="q", **kwargs)
        def t(partition_date: str):
            return []


@pytest.mark.parametrize("clean_pages", [0, 3], ids=["one-page", "among-clean-pages"])
def test_arrow_rows_that_cannot_be_cast_are_quarantined_with_their_values(
    config: CascadeConfig, clean_pages: int
) -> None:
    """Only some pages hold the bad value: each page is cast before staging, so all must stage alike."""
    import pyarrow
    from pyiceberg.types import IntegerType

    small = Schema(NestedField(1, "id", StringType(), required=True), NestedField(2, "n", IntegerType()))
    clean = [pyarrow.table({"id": [f"z{i}"], "n": pyarrow.array([i], pyarrow.int64())}) for i in range(clean_pages)]
    page = pyarrow.table({"id": ["a", "b", "c"], "n": pyarrow.array([1, 2**40, 3], pyarrow.int64())})

    @cascade_ingestion(
        table_name="small",
        unique_key="id",
        iceberg_schema=small,
        group="q",
        on_invalid="quarantine",
        max_invalid_fraction=0.5,
    )
    def small_things(partition_date: str):
        return dlt.resource([*clean, page, *clean], name="small")

    with isolated_registry():
        result = cascade.run(small_things, "2024-01-01", config=config)
    stored = {r["id"]: r["n"] for r in read_table(config, "q.small").to_pylist()}
    assert stored == {"a": 1, "c": 3, **{f"z{i}": i for i in range(clean_pages)}}
    (kept,) = read_quarantine(open_catalog(config), ("q", "small__quarantine")).to_pylist()
    assert json.loads(kept["record"]) == {"id": "b", "n": 2**40} and json.loads(kept["checks"]) == ["n: type"]
    assert kept["detail"] == f"n: {2**40} cannot be stored as int"
    assert result.rows_quarantined == 1


def test_a_rerun_replaces_the_partitions_rows_and_keeps_when_each_key_was_first_seen(config: CascadeConfig) -> None:
    batches = {"2024-01-01": [{"id": "a", "n": -1}, {"id": "b", "n": -2}, {"id": "c", "n": 1}]}
    with isolated_registry():
        asset = things_asset(batches)
        first = cascade.run(asset, "2024-01-01", config=config)
        batches["2024-01-01"] = [{"id": "a", "n": -1}, {"id": "b", "n": 2}, {"id": "d", "n": "x"}]
        second = cascade.run(asset, "2024-01-01", config=config)
    kept = {
        json.loads(r["row_key"])["id"]: r
        for r in read_quarantine(open_catalog(config), ("q", "things__quarantine")).to_pylist()
    }
    assert set(kept) == {"a", "d"} and {r["run_id"] for r in kept.values()} == {second.run_id}
    assert kept["a"]["first_seen"] < kept["a"][INGESTED_AT] == kept["d"]["first_seen"]
    assert first.rows_quarantined == 2 and stored(config) == {"b": 2, "c": 1}


def test_quarantine_and_audit_together(config: CascadeConfig) -> None:
    @cascade_ingestion(
        table_name="things",
        unique_key="id",
        iceberg_schema=SCHEMA,
        group="q",
        validation_schema=NonNegative,
        on_invalid="quarantine",
        max_invalid_fraction=0.5,
        publish="audit",
        audits={"all_valid": "select count(*) = 0 from batch where n < 0"},
    )
    def audited(partition_date: str):
        return dlt.resource([{"id": "a", "n": 1}, {"id": "b", "n": -1}], name="things")

    with isolated_registry():
        result = cascade.run(audited, "2024-01-01", config=config)
    assert result.audit is not None and result.audit.published and result.rows_quarantined == 1
    assert stored(config) == {"a": 1} and set(quarantined(config)) == {("2024-01-01", "b")}
