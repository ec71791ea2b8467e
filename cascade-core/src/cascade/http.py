"""HTTP for sources: retries, rate limits, the runtime budget, and credentials that stay home.

Every Cascade source that speaks HTTP goes through a session built here, so the policy is set
once, in core, and no plugin re-writes it:

- 429, and 403 with ``X-RateLimit-Remaining: 0`` or ``Retry-After``, wait as long as the server
  asks (``Retry-After`` or ``X-RateLimit-Reset``), unless that is past the run's budget: then the
  run fails at once, transient, instead of sleeping into a timeout;
- 5xx, 408, connection errors and timeouts are retried with exponential backoff and jitter;
- other 4xx (401, 404, ...) are returned at once for the caller to raise: retrying cannot help;
- no attempt, wait or read outlives the run's ``max_runtime_seconds``: a whole attempt (connect,
  headers and the full body) has a deadline, the sooner of ``timeout_seconds`` and the time left,
  enforced by a watchdog that shuts the connection's socket, so a server trickling its body one
  byte at a time cannot keep a run alive;
- a request to any origin but the configured base URL's (a pagination ``next`` link or a
  redirect elsewhere) is refused before it is sent, so credentials never leave home;
- a 2xx body that is not JSON fails with the status and the URL, secrets masked.

The policy is ``[http]`` in ``cascade.toml`` (or ``CASCADE_HTTP__<SETTING>``).
"""

from __future__ import annotations

import contextlib
import email.utils
import socket
import threading
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import requests
from requests.adapters import HTTPAdapter
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool

from cascade.errors import RunTimeoutError, SourceError, TransientSourceError
from cascade.faults import crash_point
from cascade.http_policy import HttpPolicy
from cascade.redaction import redact

if TYPE_CHECKING:
    from cascade.context import RunContext

RETRYABLE_STATUSES = frozenset({408, 500, 502, 503, 504})


@dataclass(frozen=True)
class Budget:
    """Whose requests these are, and until when they may run (``time.monotonic`` deadline)."""

    asset: str = "(outside a run)"
    partition: str = "-"
    deadline: float = float("inf")
    max_runtime_seconds: float | None = None

    @classmethod
    def of(cls, context: RunContext | None) -> Budget:
        if context is None:
            return cls()
        return cls(context.asset, context.partition_date, context.deadline, context.max_runtime_seconds)

    def remaining(self) -> float:
        return self.deadline - time.monotonic()

    def timeout(self, waiting_for: str) -> RunTimeoutError:
        limit = f"max_runtime_seconds={self.max_runtime_seconds:g}" if self.max_runtime_seconds else "the run's budget"
        return RunTimeoutError(
            f"exceeded {limit} while {waiting_for}; nothing was committed",
            asset=self.asset,
            partition=self.partition,
        )


Origin = tuple[str, str, int]


def origin_of(url: str) -> Origin:
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    return scheme, (parts.hostname or "").lower(), parts.port or (443 if scheme == "https" else 80)


def rate_limit_wait(response: requests.Response, now: float | None = None) -> float | None:
    """Seconds the server asks us to wait, or None when the response is not a rate limit."""
    headers = response.headers
    limited = response.status_code == 429 or (
        response.status_code == 403 and (headers.get("X-RateLimit-Remaining") == "0" or "Retry-After" in headers)
    )
    if not limited:
        return None
    now = time.time() if now is None else now
    retry_after = headers.get("Retry-After")
    if retry_after:
        if retry_after.strip().isdigit():
            return float(retry_after)
        try:
            return max(0.0, email.utils.parsedate_to_datetime(retry_after).timestamp() - now)
        except (TypeError, ValueError):
            pass  # not a date either: fall back to the reset header
    reset = headers.get("X-RateLimit-Reset")
    if reset and reset.strip().isdigit():
        return max(0.0, float(reset) - now)
    return 0.0


class _Attempt:
    """One request attempt's deadline: a watchdog shuts the attempt's socket when it passes.

    Per-read timeouts are not a deadline (each byte of a trickle arrives in time), so the
    watchdog cuts the connection under the blocked read instead; the read then fails or ends.
    """

    def __init__(self, seconds: float) -> None:
        self.sock: socket.socket | None = None
        self.expired = False
        self._lock = threading.Lock()
        self._timer = threading.Timer(seconds, self._expire)
        self._timer.daemon = True

    def __enter__(self) -> _Attempt:
        _in_flight.attempt = self
        self._timer.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._timer.cancel()
        _in_flight.attempt = None

    def _expire(self) -> None:
        with self._lock:
            self.expired = True
            sock = self.sock
        if sock is not None:
            with contextlib.suppress(OSError):  # already closed: nothing left to cut
                sock.shutdown(socket.SHUT_RDWR)


_in_flight = threading.local()


class _TrackedPool:
    """Records the connection an attempt checks out, so its watchdog can cut it.

    ``_get_conn`` is urllib3's (private, stable since 1.x; checked on urllib3 2.x) single point
    where a pool hands a connection to a request, before connecting, sending and reading.
    """

    def _get_conn(self, timeout: float | None = None) -> Any:
        connection = super()._get_conn(timeout)  # type: ignore[misc]
        _track(connection.sock)  # a kept-alive connection is not connected again
        return connection


class _TrackedConnection:
    """Records the socket a connection opens (http.client drops its own reference to it once a
    response that ends with the connection takes it over)."""

    def connect(self) -> None:
        super().connect()  # type: ignore[misc]
        _track(self.sock)  # type: ignore[attr-defined]


def _track(sock: socket.socket | None) -> None:
    attempt: _Attempt | None = getattr(_in_flight, "attempt", None)
    if attempt is not None and sock is not None:
        attempt.sock = sock


class _TrackedHTTPConnection(_TrackedConnection, HTTPConnection):
    pass


class _TrackedHTTPSConnection(_TrackedConnection, HTTPSConnection):
    pass


class _TrackedHTTPPool(_TrackedPool, HTTPConnectionPool):
    ConnectionCls = _TrackedHTTPConnection


class _TrackedHTTPSPool(_TrackedPool, HTTPSConnectionPool):
    ConnectionCls = _TrackedHTTPSConnection


class ForeignHostError(SourceError):
    """A request (a pagination link or a redirect) pointed away from the configured base URL."""


class CascadeHTTPAdapter(HTTPAdapter):
    """Sends each request under the policy; below requests' redirects and response hooks."""

    def __init__(self, home: str, policy: HttpPolicy, budget: Budget) -> None:
        super().__init__()
        self.home = home
        self.home_origin = origin_of(home)
        self.policy = policy
        self.budget = budget

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = {"http": _TrackedHTTPPool, "https": _TrackedHTTPSPool}

    def send(
        self,
        request: requests.PreparedRequest,
        stream: bool = False,
        timeout: Any = None,
        verify: Any = True,
        cert: Any = None,
        proxies: Any = None,
    ) -> requests.Response:
        """Send under the policy; ``timeout`` is replaced: per attempt, never past the budget."""
        url = request.url or ""
        shown = redact(url)
        if origin_of(url) != self.home_origin:
            raise ForeignHostError(
                f"refused a request to {shown}: it is not on the configured base URL {redact(self.home)} "
                "(a pagination link or redirect pointed to another host); no request or credential was sent",
                asset=self.budget.asset,
                partition=self.budget.partition,
            )
        attempt = 0
        while True:
            attempt += 1
            remaining = self.budget.remaining()
            if remaining <= 0:
                raise self.budget.timeout(f"requesting {shown}")
            try:
                response = self._attempt(request, min(self.policy.timeout_seconds, remaining), verify, cert, proxies)
            except (requests.ConnectionError, requests.Timeout, requests.exceptions.ChunkedEncodingError) as error:
                if self.budget.remaining() <= 0:
                    raise self.budget.timeout(f"waiting for {shown}") from None
                if attempt >= self.policy.max_attempts:
                    raise TransientSourceError(
                        f"could not reach {shown} after {attempt} attempts: {type(error).__name__}",
                        asset=self.budget.asset,
                        partition=self.budget.partition,
                    ) from None
                self._sleep(self.policy.backoff(attempt), f"retrying {shown}")
                continue
            wait = rate_limit_wait(response)
            if wait is not None:
                self._wait_for_rate_limit(response, wait, attempt, shown)
                continue
            if response.status_code in RETRYABLE_STATUSES:
                if attempt >= self.policy.max_attempts:
                    raise TransientSourceError(
                        f"HTTP {response.status_code} from {shown} after {attempt} attempts: server error",
                        asset=self.budget.asset,
                        partition=self.budget.partition,
                    )
                response.close()
                self._sleep(self.policy.backoff(attempt), f"retrying {shown}")
                continue
            if 200 <= response.status_code < 300:
                _fail_on_malformed_json(response, shown, self.budget)
                crash_point("mid-extract")
            return response

    def _attempt(
        self, request: requests.PreparedRequest, seconds: float, verify: Any, cert: Any, proxies: Any
    ) -> requests.Response:
        """One attempt, the body read in full, all of it within ``seconds`` (raises ``requests.Timeout``)."""
        with _Attempt(seconds) as attempt:
            try:
                response = super().send(request, True, seconds, verify, cert, proxies)
                response.content  # noqa: B018 - read the whole body now, under the watchdog
            except requests.RequestException:
                if not attempt.expired:
                    raise
            if attempt.expired:
                raise requests.Timeout(f"no complete response within {seconds:.1f} s")
        return response

    def _wait_for_rate_limit(self, response: requests.Response, wait: float, attempt: int, shown: str) -> None:
        response.close()
        where = {"asset": self.budget.asset, "partition": self.budget.partition}
        if attempt >= self.policy.max_attempts:
            raise TransientSourceError(f"rate limited by {shown} {attempt} times in a row", **where)
        remaining = self.budget.remaining()
        if wait > self.policy.max_wait_seconds or wait >= remaining:
            bound = "the run's remaining budget" if wait >= remaining else "[http] max_wait_seconds"
            limit = remaining if wait >= remaining else self.policy.max_wait_seconds
            raise TransientSourceError(
                f"rate limited by {shown} (HTTP {response.status_code}): the limit resets in {wait:.0f} s, "
                f"past {bound} of {limit:.0f} s; nothing was committed, try again later",
                **where,
            )
        self._sleep(wait, f"waiting out the rate limit of {shown}")

    def _sleep(self, seconds: float, doing: str) -> None:
        if seconds >= self.budget.remaining():
            raise self.budget.timeout(doing)
        time.sleep(seconds)


def _fail_on_malformed_json(response: requests.Response, shown: str, budget: Budget) -> None:
    decode = response.json

    def json(**kwargs: Any) -> Any:
        try:
            return decode(**kwargs)
        except ValueError as error:
            raise SourceError(
                f"malformed JSON from {shown} (HTTP {response.status_code}): {error}",
                asset=budget.asset,
                partition=budget.partition,
            ) from None

    response.json = json  # type: ignore[method-assign]
