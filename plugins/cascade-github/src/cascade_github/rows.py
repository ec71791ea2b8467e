"""GitHub's JSON to table rows: pure functions, one per table, nested fields mapped to columns."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from typing import Any


def parse_time(value: str) -> dt.datetime:
    """GitHub's ``2024-05-01T12:00:00Z`` (or any ISO 8601 time with an offset) as an aware datetime."""
    parsed = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=dt.UTC)


def day_start(partition_date: str) -> dt.datetime:
    return dt.datetime.combine(dt.date.fromisoformat(partition_date), dt.time(), dt.UTC)


def on_day(event: Mapping[str, Any], partition_date: str) -> bool:
    """Whether the event happened on the partition day (UTC)."""
    start = day_start(partition_date)
    return start <= parse_time(event["created_at"]) < start + dt.timedelta(days=1)


def _nested(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def event_row(event: Mapping[str, Any], feed_user: str) -> dict[str, Any]:
    """One row of ``events``; ``payload`` is reduced to the fields most event types share."""
    actor, repo, org = _nested(event.get("actor")), _nested(event.get("repo")), _nested(event.get("org"))
    payload = _nested(event.get("payload"))
    item = _nested(payload.get("pull_request")) or _nested(payload.get("issue"))
    return {
        "id": str(event["id"]),
        "type": event.get("type"),
        "created_at": parse_time(event["created_at"]),
        "feed_user": feed_user,
        "actor_id": actor.get("id"),
        "actor_login": actor.get("login"),
        "repo_id": repo.get("id"),
        "repo_name": repo.get("name"),
        "org_login": org.get("login"),
        "public": event.get("public"),
        "action": payload.get("action"),
        "ref": payload.get("ref"),
        "ref_type": payload.get("ref_type"),
        "push_size": payload.get("size"),
        "number": payload.get("number", item.get("number")),
    }


def repo_row(
    repo: Mapping[str, Any], repository: str, snapshot_date: dt.date, fetched_at: dt.datetime
) -> dict[str, Any]:
    """One row of ``repos``: the repository's figures, keyed by (repository, snapshot_date)."""
    pushed_at, updated_at = repo.get("pushed_at"), repo.get("updated_at")
    return {
        "repository": repository,
        "snapshot_date": snapshot_date,
        "repo_id": repo.get("id"),
        "full_name": repo.get("full_name"),
        "owner_login": _nested(repo.get("owner")).get("login"),
        "stars": repo.get("stargazers_count"),
        "forks": repo.get("forks_count"),
        "watchers": repo.get("subscribers_count"),
        "open_issues": repo.get("open_issues_count"),
        "size_kb": repo.get("size"),
        "default_branch": repo.get("default_branch"),
        "language": repo.get("language"),
        "license": _nested(repo.get("license")).get("spdx_id"),
        "archived": repo.get("archived"),
        "pushed_at": parse_time(pushed_at) if pushed_at else None,
        "updated_at": parse_time(updated_at) if updated_at else None,
        "fetched_at": fetched_at,
    }
