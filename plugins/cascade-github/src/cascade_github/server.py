"""A GitHub-compatible API server on 127.0.0.1, for tests and trying the plugin offline.

It speaks the slice of the REST API the plugin uses, the way GitHub does:

- ``GET /users/{user}/events?per_page=&page=``: newest first, ``Link`` header with
  ``rel="next"``/``rel="last"`` (absolute URLs), 404 for unknown users;
- ``GET /repos/{owner}/{repo}``: a repository's figures, 404 for unknown repositories;
- with a token set, ``Authorization: Bearer <token>`` (or ``token <token>``) is required and a
  wrong one gets 401 ``Bad credentials``; responses carry ``X-RateLimit-*`` headers.

Faults come from :mod:`cascade.testing` (rate limits with ``retry_after``/``reset_in``, 500s,
``delay``, ``malformed`` bodies), scoped by user login or repository name. ``link_base`` makes
``next`` links point at another server, as a hostile or broken upstream might.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import re
import time
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, urlparse

from cascade.testing import JsonHandler, LocalApiServer

EVENT_TYPES = ("PushEvent", "PullRequestEvent", "IssuesEvent", "CreateEvent", "WatchEvent", "IssueCommentEvent")
EVENTS_PATH = re.compile(r"^/users/(?P<user>[^/]+)/events/?$")
REPO_PATH = re.compile(r"^/repos/(?P<owner>[^/]+)/(?P<name>[^/]+)/?$")
NOT_FOUND = {"message": "Not Found", "documentation_url": "https://docs.github.com/rest", "status": "404"}


def timestamp(moment: dt.datetime) -> str:
    return moment.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def sample_event(user: str, moment: dt.datetime, number: int) -> dict[str, Any]:
    """A deterministic event by ``user`` at ``moment``; ids grow with time, as GitHub's do."""
    kind = EVENT_TYPES[number % len(EVENT_TYPES)]
    repo = f"{user}/project-{number % 3}"
    payload: dict[str, Any] = {}
    if kind == "PushEvent":
        payload = {"ref": "refs/heads/main", "size": number % 4 + 1, "head": hashlib.sha1(repo.encode()).hexdigest()}
    elif kind in ("PullRequestEvent", "IssuesEvent"):
        payload = {"action": "opened", "number": number % 50 + 1}
    elif kind == "CreateEvent":
        payload = {"ref": f"feature-{number}", "ref_type": "branch"}
    elif kind == "WatchEvent":
        payload = {"action": "started"}
    else:
        payload = {"action": "created", "issue": {"number": number % 50 + 1}}
    return {
        "id": str(int(moment.timestamp()) * 100 + number % 100),
        "type": kind,
        "actor": {"id": int(hashlib.sha1(user.encode()).hexdigest()[:6], 16), "login": user, "display_login": user},
        "repo": {"id": 1000 + number % 3, "name": repo, "url": f"https://api.github.com/repos/{repo}"},
        "payload": payload,
        "public": True,
        "created_at": timestamp(moment),
    }


def sample_events(user: str, first_day: dt.date, days: int, per_day: int) -> list[dict[str, Any]]:
    """``per_day`` events a day for ``days`` days from ``first_day``, newest first."""
    step = dt.timedelta(days=1) / per_day
    start = dt.datetime.combine(first_day, dt.time(), dt.UTC)
    events = [sample_event(user, start + step * i + step / 2, i) for i in range(days * per_day)]
    return events[::-1]


def sample_repo(full_name: str, stars: int = 42) -> dict[str, Any]:
    owner, name = full_name.split("/")
    return {
        "id": int(hashlib.sha1(full_name.encode()).hexdigest()[:6], 16),
        "name": name,
        "full_name": full_name,
        "owner": {"login": owner, "id": 1},
        "stargazers_count": stars,
        "watchers_count": stars,
        "subscribers_count": stars // 4,
        "forks_count": stars // 3,
        "open_issues_count": 5,
        "size": 1024,
        "default_branch": "main",
        "language": "Python",
        "license": {"key": "apache-2.0", "spdx_id": "Apache-2.0", "name": "Apache License 2.0"},
        "archived": False,
        "topics": ["iceberg", "dlt"],
        "pushed_at": "2024-05-01T10:00:00Z",
        "updated_at": "2024-05-02T11:00:00Z",
    }


@dataclass
class GitHubState:
    token: str | None = None
    events: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    repos: dict[str, dict[str, Any]] = field(default_factory=dict)
    pages: dict[str, list[list[dict[str, Any]]]] = field(default_factory=dict)
    link_base: str | None = None


class GitHubHandler(JsonHandler):
    server: GitHubServer
    malformed_body = b'[{"id": "1", "type": "PushEvent", "created_at": '

    def _authorized(self) -> bool:
        token = self.server.state.token
        if token is None:
            return True
        scheme, _, given = (self.headers.get("Authorization") or "").partition(" ")
        return scheme.lower() in ("bearer", "token") and given == token

    def do_GET(self) -> None:  # noqa: N802 (http.server names it)
        url = urlparse(self.path)
        self.record_request()
        if not self._authorized():
            self.send_json(401, {"message": "Bad credentials", "documentation_url": "https://docs.github.com/rest"})
            return
        if match := EVENTS_PATH.match(url.path):
            self._events(match["user"], parse_qs(url.query))
        elif match := REPO_PATH.match(url.path):
            self._repo(f"{match['owner']}/{match['name']}")
        else:
            self.send_json(404, NOT_FOUND)

    def _rate_headers(self) -> dict[str, str]:
        return {
            "X-RateLimit-Limit": "5000",
            "X-RateLimit-Remaining": "4999",
            "X-RateLimit-Reset": str(int(time.time()) + 3600),
            "X-RateLimit-Resource": "core",
        }

    def _events(self, user: str, query: dict[str, list[str]]) -> None:
        state = self.server.state
        if user not in state.events and user not in state.pages:
            self.send_json(404, NOT_FOUND)
            return
        if self.apply_faults(user):
            return
        per_page = min(100, int(query.get("per_page", ["30"])[-1]))
        page = int(query.get("page", ["1"])[-1])
        if user in state.pages:
            pages = state.pages[user]
        else:
            listed = state.events[user]
            pages = [listed[i : i + per_page] for i in range(0, len(listed), per_page)] or [[]]
        headers = self._rate_headers()
        base = state.link_base or self.server.url
        links = []
        if page < len(pages):
            links.append(f'<{base}/users/{user}/events?per_page={per_page}&page={page + 1}>; rel="next"')
            links.append(f'<{base}/users/{user}/events?per_page={per_page}&page={len(pages)}>; rel="last"')
        if links:
            headers["Link"] = ", ".join(links)
        self.send_json(200, pages[page - 1] if page <= len(pages) else [], headers)

    def _repo(self, full_name: str) -> None:
        repo = self.server.state.repos.get(full_name)
        if repo is None:
            self.send_json(404, NOT_FOUND)
            return
        if self.apply_faults(full_name):
            return
        self.send_json(200, repo, self._rate_headers())


class GitHubServer(LocalApiServer):
    """``with GitHubServer(token=...) as server: server.url``; fill ``server.state`` with data."""

    thread_name = "github-simulator"

    def __init__(self, port: int = 0, *, token: str | None = None) -> None:
        super().__init__(GitHubHandler, port)
        self.state = GitHubState(token=token)

    def reset(self) -> None:
        """Forget data, pages, faults, link overrides and the request log (keeps the token)."""
        self.state = GitHubState(token=self.state.token)
        self.heal()
        self.forget_requests()


def main() -> None:
    """``github-simulator [PORT] [--token T] [--user U ...] [--repo O/R ...] [--days N]``: serve until Ctrl-C."""
    import argparse

    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("port", type=int, nargs="?", default=0)
    parser.add_argument("--token")
    parser.add_argument("--user", action="append", default=[])
    parser.add_argument("--repo", action="append", default=[])
    parser.add_argument("--days", type=int, default=7)
    parser.add_argument("--per-day", type=int, default=24)
    args = parser.parse_args()
    server = GitHubServer(args.port, token=args.token)
    first_day = dt.datetime.now(dt.UTC).date() - dt.timedelta(days=args.days - 1)
    for user in args.user or ["octocat"]:
        server.state.events[user] = sample_events(user, first_day, args.days, args.per_day)
    for repo in args.repo or ["octocat/hello-world"]:
        server.state.repos[repo] = sample_repo(repo)
    server.serve_until_interrupted()


if __name__ == "__main__":
    main()
