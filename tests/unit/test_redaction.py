"""``cascade.redaction``: secrets never reach a log line, error, trace or result."""

from __future__ import annotations

from cascade.redaction import MASK, masked, redact, remember_secrets


def test_known_secrets_userinfo_and_token_parameters_are_masked() -> None:
    remember_secrets(["s3cr3t-value-42", None, "ab"])  # too short to mask safely: ignored
    text = "got s3cr3t-value-42 from postgresql://cascade:pw@db:5432/x?token=abc&page=2&api_key=zz ab"
    assert redact(text) == f"got {MASK} from postgresql://{MASK}@db:5432/x?token={MASK}&page=2&api_key={MASK} ab"


def test_masked_mapping_hides_secret_keys_recursively() -> None:
    shown = masked({"uri": "sqlite:///x.db", "s3": {"secret-access-key": "k", "endpoint": "http://u:p@h"}, "n": 3})
    assert shown == {"uri": "sqlite:///x.db", "s3": {"secret-access-key": MASK, "endpoint": f"http://{MASK}@h"}, "n": 3}
