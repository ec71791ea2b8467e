"""``cascade.redaction``: secrets never reach a log line, error, trace or result."""

from __future__ import annotations

import pytest

from cascade.redaction import MASK, masked, redact, redacted_traceback, remember_secrets


def test_known_secrets_userinfo_and_token_parameters_are_masked() -> None:
    remember_secrets(["s3cr3t-value-42", None, "ab"])  # too short to mask safely: ignored
    text = "got s3cr3t-value-42 from postgresql://cascade:pw@db:5432/x?token=abc&page=2&api_key=zz ab"
    assert redact(text) == f"got {MASK} from postgresql://{MASK}@db:5432/x?token={MASK}&page=2&api_key={MASK} ab"


def test_masked_mapping_hides_secret_keys_recursively() -> None:
    shown = masked({"uri": "sqlite:///x.db", "s3": {"secret-access-key": "k", "endpoint": "http://u:p@h"}, "n": 3})
    assert shown == {"uri": "sqlite:///x.db", "s3": {"secret-access-key": MASK, "endpoint": f"http://{MASK}@h"}, "n": 3}


@pytest.mark.parametrize(
    "key",
    ["header.Authorization", "apikey", "api-key", "private_key", "private-key", "s3.secret-access-key", "credential"],
)
def test_keys_naming_secrets(key: str) -> None:
    assert masked({key: "value"}) == {key: MASK}


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        pytest.param("http://h/x?access_token=abc&page=2", f"http://h/x?access_token={MASK}&page=2", id="access-token"),
        pytest.param("http://h/x?page=2&apiKey=abc", f"http://h/x?page=2&apiKey={MASK}", id="api-key"),
        pytest.param("http://h/x?X-Amz-Signature=abc&a=1", f"http://h/x?X-Amz-Signature={MASK}&a=1", id="signature"),
        pytest.param("http://h/x?client_secret=abc", f"http://h/x?client_secret={MASK}", id="client-secret"),
        pytest.param("http://h/x?author=octocat&sort=asc", "http://h/x?author=octocat&sort=asc", id="not-a-secret"),
    ],
)
def test_token_like_query_parameters(text: str, shown: str) -> None:
    assert redact(text) == shown


def test_traceback_is_redacted() -> None:
    remember_secrets(["tb-secret-0042"])
    try:
        raise RuntimeError("boom with tb-secret-0042")
    except RuntimeError as error:
        text = redacted_traceback(error)
    assert "tb-secret-0042" not in text and f"boom with {MASK}" in text
