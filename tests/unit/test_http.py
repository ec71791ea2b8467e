"""``cascade.http``: the retry and rate-limit policy's pure parts, and its configuration."""

from __future__ import annotations

import email.utils
from pathlib import Path

import pytest
import requests

from cascade import HttpPolicy, load_config
from cascade.errors import ConfigurationError
from cascade.http import origin_of, rate_limit_wait

NOW = 1_700_000_000.0


def response(status: int, **headers: str) -> requests.Response:
    made = requests.Response()
    made.status_code = status
    made.headers.update({name.replace("_", "-"): value for name, value in headers.items()})
    return made


@pytest.mark.parametrize(
    ("status", "headers", "wait"),
    [
        pytest.param(200, {}, None, id="ok"),
        pytest.param(500, {"Retry_After": "5"}, None, id="5xx-is-not-a-rate-limit"),
        pytest.param(403, {}, None, id="plain-403-is-forbidden"),
        pytest.param(429, {"Retry_After": "7"}, 7.0, id="429-retry-after-seconds"),
        pytest.param(429, {"Retry_After": email.utils.formatdate(NOW + 12, usegmt=True)}, 12.0, id="429-http-date"),
        pytest.param(429, {"X_RateLimit_Reset": str(int(NOW) + 30)}, 30.0, id="429-reset"),
        pytest.param(429, {}, 0.0, id="429-no-hint"),
        pytest.param(403, {"X_RateLimit_Remaining": "0", "X_RateLimit_Reset": str(int(NOW) + 60)}, 60.0, id="403-gh"),
        pytest.param(403, {"Retry_After": "3"}, 3.0, id="403-secondary-limit"),
        pytest.param(429, {"X_RateLimit_Reset": str(int(NOW) - 60)}, 0.0, id="reset-in-the-past"),
        pytest.param(429, {"Retry_After": "soon", "X_RateLimit_Reset": str(int(NOW) + 9)}, 9.0, id="garbled-date"),
    ],
)
def test_rate_limit_wait(status: int, headers: dict[str, str], wait: float | None) -> None:
    assert rate_limit_wait(response(status, **headers), now=NOW) == wait


def test_origins_compare_scheme_host_and_port() -> None:
    assert origin_of("https://API.github.com/users/x?page=2") == origin_of("https://api.github.com:443/")
    assert origin_of("http://127.0.0.1:8000/a") != origin_of("http://127.0.0.1:8001/a")
    assert origin_of("http://api.github.com/") != origin_of("https://api.github.com/")


def test_backoff_doubles_and_is_capped() -> None:
    policy = HttpPolicy(backoff_seconds=1, backoff_max_seconds=5)
    assert 0.5 <= policy.backoff(1) <= 1 and 2 <= policy.backoff(3) <= 4 and 2.5 <= policy.backoff(10) <= 5


def test_http_policy_from_toml_and_environment(tmp_path: Path) -> None:
    (tmp_path / "cascade.toml").write_text("[http]\nmax_attempts = 7\ntimeout_seconds = 12.5\n")
    config = load_config(tmp_path, environ={"CASCADE_HTTP__BACKOFF_SECONDS": "0.25"})
    assert config.http == HttpPolicy(max_attempts=7, timeout_seconds=12.5, backoff_seconds=0.25)


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        pytest.param({"retries": "3"}, r"unknown \[http\] setting\(s\) \['retries'\]; valid: ", id="unknown"),
        pytest.param({"max_attempts": "many"}, r"\[http\] max_attempts must be a number, got 'many'", id="not-number"),
        pytest.param({"max_attempts": "0"}, r"\[http\] max_attempts must be positive", id="zero-attempts"),
    ],
)
def test_bad_http_settings_are_named(settings: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigurationError, match=message):
        HttpPolicy.from_settings(settings)
