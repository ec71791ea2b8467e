"""Catalog and storage faults on PostgreSQL+S3: clear errors, nothing partial, and a retry heals.

The faults are real network faults: a TCP proxy in front of PostgreSQL and one in front of the
S3-compatible server are cut (every connection dropped, new ones refused) at chosen moments.
Only "the catalog applied a commit but the answer was lost" is injected in process, by wrapping
the catalog's ``commit_table``: no real server can be made to lose exactly that answer on cue.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pyarrow.compute as pc
import pytest
import sqlalchemy.exc

import cascade
from cascade import CascadeConfig, hookimpl, merge_into, register_hooks, unregister_hooks
from cascade.catalog import open_catalog
from cascade.errors import CatalogError, StorageError
from cascade_nightscout import glucose
from tests.conftest import FAST_HTTP, NIGHTSCOUT_TOKEN, read_table, snapshot_id
from tests.servers import PG_PASSWORD, S3_SECRET, FaultyProxy, shared_catalog_properties

GLUCOSE = "nightscout.glucose"


@dataclasses.dataclass
class Faulty:
    config: CascadeConfig
    catalog_link: FaultyProxy
    storage_link: FaultyProxy


@pytest.fixture
def faulty(shared_servers: Any, catalog_name: str, tmp_path: Path, nightscout: Any) -> Iterator[Faulty]:
    postgres, s3 = shared_servers
    with FaultyProxy(postgres.port) as catalog_link, FaultyProxy(s3.port) as storage_link:
        properties = shared_catalog_properties(postgres, s3, database="cascade", prefix=catalog_name)
        properties["uri"] = postgres.url("cascade", port=catalog_link.port)
        properties["s3.endpoint"] = f"http://127.0.0.1:{storage_link.port}"
        properties["s3.connect-timeout"] = "2"
        properties["s3.request-timeout"] = "5"
        config = CascadeConfig(
            home=tmp_path / "cascade",
            catalog_name=catalog_name,
            catalog_properties=properties,
            plugins={"nightscout": {"url": nightscout.url, "token": NIGHTSCOUT_TOKEN}},
            http=cascade.HttpPolicy.from_settings(FAST_HTTP),
        )
        yield Faulty(config, catalog_link, storage_link)


class CutBeforeCommit:
    """A hook plugin that cuts a link just before the commit (after the plan, before data files)."""

    def __init__(self, link: FaultyProxy) -> None:
        self.link = link

    @hookimpl
    def cascade_before_commit(self, context: Any, plan: Any) -> None:
        self.link.cut()


def run_with_hook(plugin: object, config: CascadeConfig, day: str) -> Any:
    register_hooks(plugin, name="cut-link")
    try:
        return cascade.run(glucose, day, config=config)
    finally:
        unregister_hooks("cut-link")


def assert_one_clean_copy(config: CascadeConfig, days: int) -> None:
    rows = read_table(config, GLUCOSE)
    assert rows.num_rows == 288 * days and pc.count_distinct(rows.column("_id")).as_py() == 288 * days


def test_catalog_unreachable_names_it_and_a_retry_after_it_returns_succeeds(faulty: Faulty) -> None:
    faulty.catalog_link.cut()
    with pytest.raises(
        CatalogError, match=r"asset 'glucose', partition 2024-08-01: catalog 't_\w+' \(postgresql"
    ) as caught:
        cascade.run(glucose, "2024-08-01", config=faulty.config)
    assert caught.value.transient and PG_PASSWORD not in str(caught.value) and "***" in str(caught.value)
    faulty.catalog_link.heal()
    assert cascade.run(glucose, "2024-08-01", config=faulty.config).rows_inserted == 288
    assert_one_clean_copy(faulty.config, 1)


def test_wrong_catalog_password_is_clear_and_masked(faulty: Faulty) -> None:
    wrong = "not-the-Password-1234"
    properties = {**faulty.config.catalog_properties, "uri": faulty.config.catalog["uri"].replace(PG_PASSWORD, wrong)}
    cascade.redaction.remember_secrets([wrong])  # as load_config does for every configured URI
    with pytest.raises(CatalogError, match=r"could not be opened .*password authentication failed") as caught:
        cascade.run(glucose, "2024-08-01", config=dataclasses.replace(faulty.config, catalog_properties=properties))
    assert wrong not in str(caught.value)


@pytest.mark.parametrize(
    ("link", "error", "names"),
    [
        pytest.param("catalog_link", CatalogError, r"catalog 't_\w+' \(postgresql\+psycopg2://\*\*\*@", id="catalog"),
        pytest.param("storage_link", StorageError, r"the warehouse storage s3://\S+ at http://127", id="storage"),
    ],
)
def test_link_lost_just_before_commit_leaves_the_table_and_heals(
    faulty: Faulty, link: str, error: type[Exception], names: str
) -> None:
    cascade.run(glucose, "2024-08-01", config=faulty.config)
    before = snapshot_id(faulty.config, GLUCOSE)
    with pytest.raises(error, match=rf"asset 'glucose', partition 2024-08-02: {names}") as caught:
        run_with_hook(CutBeforeCommit(getattr(faulty, link)), faulty.config, "2024-08-02")
    assert PG_PASSWORD not in str(caught.value) and S3_SECRET not in str(caught.value)
    getattr(faulty, link).heal()
    assert snapshot_id(faulty.config, GLUCOSE) == before
    assert cascade.run(glucose, "2024-08-02", config=faulty.config).rows_inserted == 288
    assert_one_clean_copy(faulty.config, 2)


def test_storage_unreachable_from_the_start(faulty: Faulty) -> None:
    cascade.run(glucose, "2024-08-01", config=faulty.config)
    faulty.storage_link.cut()
    with pytest.raises(StorageError, match="the warehouse storage"):
        cascade.run(glucose, "2024-08-02", config=faulty.config)
    faulty.storage_link.heal()
    cascade.run(glucose, "2024-08-02", config=faulty.config)
    assert_one_clean_copy(faulty.config, 2)


# -- commit outcome unknown: the catalog applied it, or not, and the answer was lost --------------


def lose_the_answer(table: Any, *, after_applying: bool) -> Callable[[], int]:
    """Make the catalog's next commit fail with a lost connection, after or before applying it."""
    catalog = table.catalog
    real = catalog.commit_table
    calls = {"n": 0}

    def commit_table(*args: Any, **kwargs: Any) -> Any:
        calls["n"] += 1
        if calls["n"] == 1:
            if after_applying:
                real(*args, **kwargs)
            raise sqlalchemy.exc.OperationalError(
                "UPDATE iceberg_tables", {}, Exception("server closed the connection")
            )
        return real(*args, **kwargs)

    catalog.commit_table = commit_table
    return lambda: calls["n"]


@pytest.mark.parametrize("after_applying", [True, False], ids=["applied", "not-applied"])
def test_unknown_commit_outcome_is_resolved_from_history_never_applied_twice(
    config: CascadeConfig, after_applying: bool
) -> None:
    from tests.integration.test_merge import SCHEMA, batch

    catalog = open_catalog(config)
    catalog.create_namespace_if_not_exists("n")
    table = catalog.create_table("n.unknown", schema=SCHEMA)
    merge_into(table, batch([("a", 0, 1)], 0), "k")
    commits = lose_the_answer(table, after_applying=after_applying)
    outcome = merge_into(table, batch([("b", 0, 2)], 1), "k", snapshot_properties={"cascade.run-id": "run-1"})
    rows = table.refresh().scan().to_arrow()
    assert sorted(rows.column("k").to_pylist()) == ["a", "b"]  # applied exactly once, files intact
    assert outcome.committed and outcome.snapshot_id == table.current_snapshot().snapshot_id
    assert table.current_snapshot().summary["cascade.run-id"] == "run-1"
    assert (outcome.commit_attempts, commits()) == ((1, 1) if after_applying else (2, 2))
    assert len(table.history()) == 2  # a, then b: no second commit of b


@pytest.mark.parametrize("after_applying", [True, False], ids=["applied", "not-applied"])
def test_a_streamed_day_whose_publish_answer_is_lost_keeps_its_files(
    config: CascadeConfig, after_applying: bool
) -> None:
    """The one commit that publishes a streamed day onto its branch: resolved from history when it
    landed; when it did not, the run fails and the branch is as it was (its files stay, as orphans)."""
    from tests.integration.test_merge import SCHEMA, batch

    catalog = open_catalog(config)
    catalog.create_namespace_if_not_exists("n")
    table = catalog.create_table("n.streamed", schema=SCHEMA)
    merge_into(table, batch([("a", 0, 1)], 0), "k")
    before = table.refresh().current_snapshot().snapshot_id
    real, calls = table.catalog.commit_table, {"n": 0}

    def commit_table(*args: Any, **kwargs: Any) -> Any:
        calls["n"] += 1
        if calls["n"] == 2:  # after forking the staging branch: the publish
            if after_applying:
                real(*args, **kwargs)
            raise sqlalchemy.exc.OperationalError(
                "UPDATE iceberg_tables", {}, Exception("server closed the connection")
            )
        return real(*args, **kwargs)

    table.catalog.commit_table = commit_table
    day = batch([(f"b{i}", 0, 2) for i in range(6)], 1)
    if after_applying:
        outcome = merge_into(table, day, "k", chunk_rows=2, keys_distinct=True)
        assert outcome.snapshot_id == table.refresh().current_snapshot().snapshot_id != before
        assert sorted(table.scan().to_arrow().column("k").to_pylist()) == ["a", *(f"b{i}" for i in range(6))]
    else:
        with pytest.raises(sqlalchemy.exc.OperationalError):
            merge_into(table, day, "k", chunk_rows=2, keys_distinct=True)
        assert table.refresh().current_snapshot().snapshot_id == before
        assert table.scan().to_arrow().column("k").to_pylist() == ["a"]
    assert list(table.refresh().metadata.refs) == ["main"]
