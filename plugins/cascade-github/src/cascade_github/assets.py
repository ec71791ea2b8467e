"""GitHub -> ``github.events`` (public events by day) and ``github.repos`` (daily repository figures).

Settings, in ``[plugins.github]`` or the environment:

- ``users`` (``GITHUB_USERS``, comma-separated): whose public events to land;
- ``repositories`` (``GITHUB_REPOSITORIES``): ``owner/name`` of the repositories to measure;
- ``base_url`` (``GITHUB_API_URL``): ``https://api.github.com``, or a GitHub Enterprise API URL;
- ``token`` (``GITHUB_TOKEN``): sent as a bearer header, only ever to ``base_url``'s host;
- ``per_page``: events asked for per page (1-100, default 100).
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Callable, Sequence
from typing import Any

from cascade import ConfigurationError, RunContext, SourceError, cascade_ingestion, rest_api_source
from cascade_github.rows import day_start, event_row, on_day, repo_row
from cascade_github.schemas import (
    EVENTS_PARTITIONING,
    EVENTS_SCHEMA,
    REPOS_PARTITIONING,
    REPOS_SCHEMA,
)

PLUGIN = "github"
DEFAULT_BASE_URL = "https://api.github.com"
PER_PAGE = 100
USER = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9-]{0,38})$")
REPOSITORY = re.compile(r"^[A-Za-z0-9-]{1,39}/[A-Za-z0-9._-]{1,100}$")
HEADERS = {"Accept": "application/vnd.github+json", "X-GitHub-Api-Version": "2022-11-28"}


def one_argument(step: Callable[..., Any], *args: Any) -> Callable[[Any], Any]:
    """``step(item, *args)`` as a one-parameter function: dlt passes metadata to two-parameter steps."""
    return lambda item: step(item, *args)


def listed(context: RunContext, key: str, env: str, pattern: re.Pattern[str]) -> list[str]:
    """A list setting (a TOML array or a comma-separated string), each item checked."""
    value: Any = context.settings(PLUGIN).get(key) or context.setting(PLUGIN, key, env=env) or []
    items = [part.strip() for part in value.split(",")] if isinstance(value, str) else [str(v) for v in value]
    items = [item for item in items if item]
    if not items:
        raise ConfigurationError(
            f"asset {context.asset!r}: set [plugins.{PLUGIN}] {key} in cascade.toml or {env} (comma-separated)"
        )
    wrong = [item for item in items if not pattern.match(item)]
    if wrong:
        raise ConfigurationError(f"asset {context.asset!r}: [plugins.{PLUGIN}] {key}: not valid on GitHub: {wrong}")
    return items


def page_size(context: RunContext) -> int:
    value = context.setting(PLUGIN, "per_page", default=str(PER_PAGE))
    if not (value or "").isdigit() or not 1 <= int(value or 0) <= PER_PAGE:
        raise ConfigurationError(
            f"asset {context.asset!r}: [plugins.{PLUGIN}] per_page must be 1 to 100, got {value!r}"
        )
    return int(value or PER_PAGE)


def client_config(context: RunContext) -> dict[str, Any]:
    base_url = context.setting(PLUGIN, "base_url", env="GITHUB_API_URL", default=DEFAULT_BASE_URL) or DEFAULT_BASE_URL
    token = context.secret(PLUGIN, "token", env="GITHUB_TOKEN")
    client: dict[str, Any] = {"base_url": base_url.rstrip("/") + "/", "headers": dict(HEADERS)}
    if token:
        from dlt.sources.helpers.rest_client.auth import BearerTokenAuth  # loads dlt: only when the asset runs

        client["auth"] = BearerTokenAuth(token)
    return client


@cascade_ingestion(
    table_name="events",
    unique_key="id",
    iceberg_schema=EVENTS_SCHEMA,
    validation_schema="cascade_github.checks:RawEvent",
    partition_spec=EVENTS_PARTITIONING,
    stable_partitions=True,  # an event's time never changes
    group="github",
    cron="15 * * * *",
    freshness_hours=(2, 26),
)
def events(partition_date: str, context: RunContext) -> Any:
    """Public events of the configured GitHub users, one row per event, by the day it happened."""
    from cascade_github.paging import EventsPaginator  # loads dlt: only when the asset runs

    users = listed(context, "users", "GITHUB_USERS", USER)
    per_page = page_size(context)
    resources: list[Any] = [
        {
            "name": f"events_{index}",
            "table_name": "events",
            "endpoint": {
                "path": f"users/{user}/events",
                "params": {"per_page": per_page},
                "paginator": EventsPaginator(day_start(partition_date)),
            },
            "processing_steps": [
                {"filter": one_argument(on_day, partition_date)},
                {"map": one_argument(event_row, user)},
            ],
        }
        for index, user in enumerate(users)
    ]
    return rest_api_source({"client": client_config(context), "resources": resources}, context=context)  # type: ignore[typeddict-item]


def check_snapshot_date(context: RunContext, today: dt.date | None = None) -> dt.date:
    """GitHub serves only current figures: a partition before yesterday cannot be measured."""
    day = context.partition_day
    today = today or dt.datetime.now(dt.UTC).date()
    if not today - dt.timedelta(days=1) <= day <= today:
        raise SourceError(
            f"GitHub serves only current repository figures, so only today ({today}) or yesterday "
            "can be recorded; past days cannot be backfilled",
            asset=context.asset,
            partition=context.partition_date,
        )
    return day


@cascade_ingestion(
    table_name="repos",
    unique_key=("repository", "snapshot_date"),
    iceberg_schema=REPOS_SCHEMA,
    validation_schema="cascade_github.checks:RepoStats",
    partition_spec=REPOS_PARTITIONING,
    stable_partitions=True,
    group="github",
    cron="0 6 * * *",
    freshness_hours=(26, 50),
)
def repos(partition_date: str, context: RunContext) -> Any:
    """Daily figures of the configured repositories: stars, forks, watchers, open issues, size..."""
    snapshot_date = check_snapshot_date(context)
    repositories: Sequence[str] = listed(context, "repositories", "GITHUB_REPOSITORIES", REPOSITORY)
    fetched_at = dt.datetime.now(dt.UTC)
    resources: list[Any] = [
        {
            "name": f"repos_{index}",
            "table_name": "repos",
            "endpoint": {"path": f"repos/{repository}", "paginator": "single_page", "data_selector": "$"},
            "processing_steps": [{"map": one_argument(repo_row, repository, snapshot_date, fetched_at)}],
        }
        for index, repository in enumerate(repositories)
    ]
    return rest_api_source({"client": client_config(context), "resources": resources}, context=context)  # type: ignore[typeddict-item]
