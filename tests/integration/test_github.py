"""The GitHub plugin and source resilience, against a GitHub-compatible server on 127.0.0.1.

Real dlt pipelines, a real SQLite catalog, and real HTTP: pagination by ``Link`` headers, a
token check, rate limits, server errors, slow and malformed responses, and a second local
server standing in for a foreign host that must never be contacted.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import tempfile
import time
import traceback
from pathlib import Path
from typing import Any

import pyarrow.compute as pc
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import cascade
from cascade import CascadeConfig, HttpPolicy
from cascade.catalog import open_catalog
from cascade.errors import CascadeError, RunTimeoutError, SourceError, TransientSourceError
from cascade.http import ForeignHostError
from cascade.ingestion import CascadeAsset
from cascade_github import events, repos
from cascade_github.server import GitHubServer, sample_event, sample_events, sample_repo
from tests.conftest import GITHUB_TOKEN, examples, read_table, snapshot_id

EVENTS, REPOS = "github.events", "github.repos"
DAY = "2024-05-02"
PER_DAY = 24


def with_settings(config: CascadeConfig, **settings: Any) -> CascadeConfig:
    return dataclasses.replace(config, plugins={"github": {**config.settings("github"), **settings}})


def with_budget(asset: CascadeAsset[Any, Any], seconds: float) -> CascadeAsset[Any, Any]:
    return CascadeAsset(asset.fn, dataclasses.replace(asset.spec, max_runtime_seconds=seconds))


def day_ids(github: GitHubServer, day: str, user: str = "octocat") -> set[str]:
    return {e["id"] for e in github.state.events[user] if e["created_at"].startswith(day)}


@pytest.fixture
def five_days(github: GitHubServer) -> GitHubServer:
    """octocat: 24 events a day, 2024-04-30 to 2024-05-04, newest first."""
    github.state.events["octocat"] = sample_events("octocat", dt.date(2024, 4, 30), 5, PER_DAY)
    return github


def test_events_across_three_pages_land_once_each(gh_config: CascadeConfig, github: GitHubServer) -> None:
    github.state.events["octocat"] = sample_events("octocat", dt.date.fromisoformat(DAY), 1, PER_DAY)
    result = cascade.run(events, DAY, config=with_settings(gh_config, per_page=10))
    rows = read_table(gh_config, EVENTS)
    assert [path.split("?")[1] for path in github.requests] == [
        "per_page=10",
        "per_page=10&page=2",
        "per_page=10&page=3",
    ]
    assert (result.rows_extracted, result.rows_inserted) == (PER_DAY, PER_DAY)
    assert sorted(rows.column("id").to_pylist()) == sorted(day_ids(github, DAY))
    assert all(headers.get("Authorization") == f"Bearer {GITHUB_TOKEN}" for headers in github.request_headers)
    assert not any(GITHUB_TOKEN in path for path in github.requests)


def test_partition_keeps_only_its_day_and_paging_stops_past_it(
    gh_config: CascadeConfig, five_days: GitHubServer
) -> None:
    result = cascade.run(events, DAY, config=with_settings(gh_config, per_page=20))
    rows = read_table(gh_config, EVENTS)
    assert set(rows.column("id").to_pylist()) == day_ids(five_days, DAY)
    days = {moment.date().isoformat() for moment in rows.column("created_at").to_pylist()}
    assert days == {DAY} and result.rows_inserted == PER_DAY
    # newest first: 2 days after DAY, then DAY, fill pages 1-4 of 20; page 5 is all older: stop there
    assert len(five_days.requests) == 5 < 120 / 20


def test_event_columns_map_nested_fields(gh_config: CascadeConfig, github: GitHubServer) -> None:
    moment = dt.datetime(2024, 5, 2, 12, tzinfo=dt.UTC)
    push = sample_event("octocat", moment, 0)
    pull = sample_event("octocat", moment + dt.timedelta(minutes=1), 1)
    pull["org"] = {"id": 9, "login": "octo-org"}
    github.state.events["octocat"] = [pull, push]
    cascade.run(events, DAY, config=gh_config)
    rows = {row["id"]: row for row in read_table(gh_config, EVENTS).to_pylist()}
    assert rows[push["id"]]["type"] == "PushEvent"
    assert (rows[push["id"]]["ref"], rows[push["id"]]["push_size"], rows[push["id"]]["org_login"]) == (
        "refs/heads/main",
        1,
        None,
    )
    assert (rows[pull["id"]]["action"], rows[pull["id"]]["number"], rows[pull["id"]]["org_login"]) == (
        "opened",
        2,
        "octo-org",
    )
    assert rows[pull["id"]]["actor_login"] == "octocat" and rows[pull["id"]]["repo_name"] == "octocat/project-1"
    assert rows[pull["id"]]["created_at"] == moment + dt.timedelta(minutes=1)


def test_repeated_runs_are_idempotent(gh_config: CascadeConfig, five_days: GitHubServer) -> None:
    first = cascade.run(events, DAY, config=gh_config)
    again = cascade.run(events, DAY, config=gh_config)
    assert (again.rows_inserted, again.rows_updated, again.rows_unchanged) == (0, 0, PER_DAY)
    assert not again.committed and snapshot_id(gh_config, EVENTS) == first.snapshot_id
    assert read_table(gh_config, EVENTS).num_rows == PER_DAY


def test_several_users_land_in_one_table(gh_config: CascadeConfig, five_days: GitHubServer) -> None:
    five_days.state.events["hubot"] = sample_events("hubot", dt.date(2024, 5, 1), 2, 10)
    cascade.run(events, DAY, config=with_settings(gh_config, users="octocat, hubot"))
    rows = read_table(gh_config, EVENTS)
    assert set(rows.column("id").to_pylist()) == day_ids(five_days, DAY) | day_ids(five_days, DAY, "hubot")
    assert set(rows.column("feed_user").to_pylist()) == {"octocat", "hubot"}


@pytest.mark.parametrize(
    ("fault", "least_wait"),
    [
        pytest.param({"status": 429, "retry_after": 1}, 0.9, id="429-retry-after"),
        pytest.param({"status": 403, "reset_in": 2}, 0.9, id="403-ratelimit-reset"),
    ],
)
def test_rate_limited_first_page_waits_then_lands_everything(
    gh_config: CascadeConfig, five_days: GitHubServer, fault: dict[str, Any], least_wait: float
) -> None:
    five_days.fail(times=1, **fault)
    started = time.monotonic()
    result = cascade.run(events, DAY, config=gh_config)
    waited = time.monotonic() - started
    assert result.rows_inserted == PER_DAY
    assert least_wait <= waited < 10  # waited as asked, and no longer than the reset
    assert five_days.requests[0] == five_days.requests[1]  # the same first page, asked again


def test_rate_limit_past_the_budget_fails_at_once(gh_config: CascadeConfig, five_days: GitHubServer) -> None:
    five_days.fail(status=429, retry_after=3600)
    started = time.monotonic()
    with pytest.raises(TransientSourceError, match=r"rate limited by .* resets in 3600 s, past the run's remaining"):
        cascade.run(events, DAY, config=gh_config)
    assert time.monotonic() - started < 5
    assert snapshot_id(gh_config, EVENTS) is None


def test_permanent_500_fails_after_the_configured_retries(gh_config: CascadeConfig, five_days: GitHubServer) -> None:
    cascade.run(events, "2024-05-01", config=gh_config)
    before = snapshot_id(gh_config, EVENTS)
    five_days.forget_requests()
    five_days.fail(status=500)
    config = dataclasses.replace(gh_config, http=HttpPolicy(max_attempts=3, backoff_seconds=0.01))
    with pytest.raises(TransientSourceError, match=r"HTTP 500 from http://127\.0\.0\.1:\d+/users/octocat/.* after 3 "):
        cascade.run(events, DAY, config=config)
    assert len(five_days.requests) == 3
    assert snapshot_id(gh_config, EVENTS) == before


def test_server_errors_that_pass_are_retried(gh_config: CascadeConfig, five_days: GitHubServer) -> None:
    five_days.fail(status=502, times=1)
    assert cascade.run(events, DAY, config=gh_config).rows_inserted == PER_DAY


def test_bad_token_fails_at_once(gh_config: CascadeConfig, five_days: GitHubServer) -> None:
    config = with_settings(gh_config, token="ghp_wrongWrongWrong0000")
    with pytest.raises(SourceError, match=r"HTTP 401 from .*unauthorized") as caught:
        cascade.run(events, DAY, config=config)
    assert not caught.value.transient
    assert len(five_days.requests) == 1
    assert snapshot_id(gh_config, EVENTS) is None


def test_unknown_user_fails_at_once_naming_the_url(gh_config: CascadeConfig, five_days: GitHubServer) -> None:
    with pytest.raises(SourceError, match=r"HTTP 404 from http://127\.0\.0\.1:\d+/users/nobody/events"):
        cascade.run(events, DAY, config=with_settings(gh_config, users=["nobody"]))
    assert len(five_days.requests) == 1


def test_slow_source_past_the_runtime_budget_fails_cleanly(gh_config: CascadeConfig, five_days: GitHubServer) -> None:
    five_days.fail(delay=5)
    started = time.monotonic()
    with pytest.raises(RunTimeoutError, match=r"asset 'events', partition 2024-05-02: exceeded max_runtime_seconds=1 "):
        cascade.run(with_budget(events, 1), DAY, config=gh_config)
    assert time.monotonic() - started < 3
    assert snapshot_id(gh_config, EVENTS) is None


def test_malformed_json_names_the_url_and_status(gh_config: CascadeConfig, five_days: GitHubServer) -> None:
    five_days.fail(malformed=True)
    with pytest.raises(
        SourceError, match=r"malformed JSON from http://127\.0\.0\.1:\d+/users/octocat/events\S* \(HTTP 200\)"
    ):
        cascade.run(events, DAY, config=gh_config)
    assert snapshot_id(gh_config, EVENTS) is None


@pytest.fixture
def foreign() -> Any:
    with GitHubServer() as other:
        other.state.events["octocat"] = sample_events("octocat", dt.date(2024, 4, 30), 5, PER_DAY)
        yield other


def test_next_link_to_another_host_is_refused(
    gh_config: CascadeConfig, five_days: GitHubServer, foreign: GitHubServer
) -> None:
    five_days.state.link_base = foreign.url
    with pytest.raises(
        ForeignHostError, match=r"refused a request to http://127\.0\.0\.1:\d+/users/octocat/events"
    ) as caught:
        cascade.run(events, DAY, config=with_settings(gh_config, per_page=10))
    assert foreign.url in str(caught.value) and "no request or credential was sent" in str(caught.value)
    assert foreign.requests == []
    assert len(five_days.requests) == 1
    assert snapshot_id(gh_config, EVENTS) is None


def test_redirect_to_another_host_is_refused(
    gh_config: CascadeConfig, five_days: GitHubServer, foreign: GitHubServer
) -> None:
    five_days.fail(status=302, headers={"Location": f"{foreign.url}/users/octocat/events"})
    with pytest.raises(ForeignHostError):
        cascade.run(events, DAY, config=gh_config)
    assert foreign.requests == []


def test_the_token_appears_in_no_error_or_log(
    gh_config: CascadeConfig, five_days: GitHubServer, capfd: pytest.CaptureFixture[str]
) -> None:
    five_days.fail(status=500)
    with pytest.raises(CascadeError) as caught:
        cascade.run(events, DAY, config=dataclasses.replace(gh_config, log_level="DEBUG"))
    printed = "".join(traceback.format_exception(caught.value))
    out, err = capfd.readouterr()
    assert GITHUB_TOKEN not in printed + out + err
    assert not any(GITHUB_TOKEN in path for path in five_days.requests)


def test_repos_land_one_row_per_repository_and_day(gh_config: CascadeConfig, github: GitHubServer) -> None:
    today = dt.datetime.now(dt.UTC).date()
    for name, stars in (("octo/cat", 40), ("octo/dog", 7)):
        github.state.repos[name] = sample_repo(name, stars)
    config = with_settings(gh_config, repositories=["octo/cat", "octo/dog"])
    cascade.run(repos, (today - dt.timedelta(days=1)).isoformat(), config=config)
    github.state.repos["octo/cat"]["stargazers_count"] = 41
    cascade.run(repos, today.isoformat(), config=config)
    again = cascade.run(repos, today.isoformat(), config=config)
    rows = read_table(config, REPOS).sort_by([("repository", "ascending"), ("snapshot_date", "ascending")])
    assert again.rows_inserted == 0 and again.rows_updated == 2  # fetched_at moves; still one row each
    assert rows.num_rows == 4
    assert rows.column("stars").to_pylist() == [40, 41, 7, 7]
    assert rows.column("watchers").to_pylist() == [10, 10, 1, 1]
    assert set(rows.column("license").to_pylist()) == {"Apache-2.0"}
    assert pc.count_distinct(rows.column("snapshot_date")).as_py() == 2


def test_repos_refuse_a_past_day(gh_config: CascadeConfig, github: GitHubServer) -> None:
    github.state.repos["octo/cat"] = sample_repo("octo/cat")
    with pytest.raises(SourceError, match=r"asset 'repos', partition 2024-05-02: GitHub serves only current"):
        cascade.run(repos, DAY, config=gh_config)
    assert github.requests == []


# -- property: whatever the pages hold, the day's table holds exactly the day's unique ids ------

DAY_START = dt.datetime(2024, 5, 2, tzinfo=dt.UTC)
logins = st.text(st.characters(codec="utf-8", exclude_categories=("Cs", "Cc")), min_size=1, max_size=12)


@st.composite
def event_pages(draw: st.DrawFn) -> tuple[list[list[dict[str, Any]]], set[str]]:
    """Events around the day, newest first, paged; some repeated across pages; fields missing."""
    count = draw(st.integers(0, 40))
    ids = draw(st.lists(st.integers(1, 10**12), min_size=count, max_size=count, unique=True))
    offsets = sorted(draw(st.lists(st.integers(-86_400, 2 * 86_400 - 1), min_size=count, max_size=count)), reverse=True)
    events: list[dict[str, Any]] = []
    for event_id, offset in zip(ids, offsets, strict=True):
        event = sample_event("octocat", DAY_START + dt.timedelta(seconds=offset), event_id)
        event["id"] = str(event_id)
        event["actor"]["login"] = draw(logins)
        for optional in draw(st.sets(st.sampled_from(["actor", "repo", "payload", "public", "org"]))):
            event.pop(optional, None)
        events.append(event)
    size = draw(st.integers(1, 7))
    pages = [events[i : i + size] for i in range(0, len(events), size)] or [[]]
    for number in range(1, len(pages)):  # new events push the last of a page onto the next one
        if pages[number - 1] and draw(st.booleans()):
            pages[number].insert(0, pages[number - 1][-1])
    return pages, {str(event_id) for event_id, offset in zip(ids, offsets, strict=True) if 0 <= offset < 86_400}


@settings(max_examples=examples(12), deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(drawn=event_pages())
def test_any_event_pages_land_exactly_the_days_unique_ids(
    gh_config: CascadeConfig, github: GitHubServer, drawn: tuple[list[list[dict[str, Any]]], set[str]]
) -> None:
    pages, expected = drawn
    github.state.pages["octocat"] = pages
    with tempfile.TemporaryDirectory() as home:
        config = dataclasses.replace(gh_config, home=Path(home))
        catalog = open_catalog(config)
        if catalog.table_exists(EVENTS):  # a shared catalog outlives the example's folder
            catalog.purge_table(EVENTS)
        result = cascade.run(events, DAY, config=config)
        landed = read_table(config, EVENTS).column("id").to_pylist() if snapshot_id(config, EVENTS) else []
    assert sorted(landed) == sorted(expected)
    assert result.rows_inserted == len(expected)
