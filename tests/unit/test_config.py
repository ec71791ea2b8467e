"""Configuration: embedded defaults, cascade.toml, CASCADE_* variables, secrets masked."""

from __future__ import annotations

from pathlib import Path

import pytest

from cascade.config import CascadeConfig, load_config
from cascade.errors import ConfigurationError
from cascade.redaction import MASK, redact, remember_secrets


def test_embedded_default_needs_nothing(tmp_path: Path) -> None:
    config = load_config(cwd=tmp_path, environ={})
    assert config.home == tmp_path / ".cascade"
    assert config.catalog == {
        "type": "sql",
        "uri": f"sqlite:///{tmp_path / '.cascade' / 'catalog.db'}",
        "warehouse": (tmp_path / ".cascade" / "warehouse").as_uri(),
    }
    assert config.branch is None


def test_a_home_given_as_text_is_a_path(tmp_path: Path) -> None:
    config = CascadeConfig(home=str(tmp_path / "lake"))  # type: ignore[arg-type]
    assert config.home == tmp_path / "lake"
    assert config.catalog["uri"] == f"sqlite:///{tmp_path / 'lake' / 'catalog.db'}"


def test_toml_then_environment(tmp_path: Path) -> None:
    (tmp_path / "cascade.toml").write_text(
        """
[cascade]
home = "state"
branch = "dev"

[catalog]
type = "rest"
uri = "https://catalog.example/api"
token = "toml-secret-123"

[namespaces]
nightscout = "raw_nightscout"

[plugins.nightscout]
url = "https://ns.example"
"""
    )
    env = {
        "CASCADE_BRANCH": "ci",
        "CASCADE_CATALOG__S3__ACCESS_KEY_ID": "AKIAEXAMPLE",
        "CASCADE_PLUGINS__NIGHTSCOUT__TOKEN": "tok-9876",
    }
    config = load_config(cwd=tmp_path, environ=env)
    assert config.home == tmp_path / "state"
    assert config.branch == "ci"
    assert config.catalog == {
        "type": "rest",
        "uri": "https://catalog.example/api",
        "token": "toml-secret-123",
        "s3.access-key-id": "AKIAEXAMPLE",
    }
    assert config.namespace_for("nightscout", "nightscout") == "raw_nightscout"
    assert config.settings("nightscout") == {"url": "https://ns.example", "token": "tok-9876"}
    shown = str(config.describe())
    for secret in ("toml-secret-123", "AKIAEXAMPLE", "tok-9876"):
        assert secret not in shown
    assert redact("failed with toml-secret-123 and tok-9876") == f"failed with {MASK} and {MASK}"


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        pytest.param("[cascade]\nhome = \n", "not valid TOML", id="bad-toml"),
        pytest.param("[wat]\nx = 1\n", "unknown table(s) ['wat']", id="unknown-table"),
        pytest.param("[cascade]\ncolour = 'red'\n", "unknown [cascade] setting(s) ['colour']", id="unknown-key"),
        pytest.param("[cascade]\nlog_format = 'xml'\n", "log_format must be one of", id="log-format"),
    ],
)
def test_bad_configuration_is_named(tmp_path: Path, text: str, fragment: str) -> None:
    (tmp_path / "cascade.toml").write_text(text)
    with pytest.raises(ConfigurationError) as caught:
        load_config(cwd=tmp_path, environ={})
    assert fragment in str(caught.value)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("postgresql://cascade:hunter22@db:5432/x", f"postgresql://{MASK}@db:5432/x"),
        ("GET https://h/api?token=abc123&count=5", f"GET https://h/api?token={MASK}&count=5"),
        ("https://h/x?api_key=zzz", f"https://h/x?api_key={MASK}"),
        ("nothing secret here", "nothing secret here"),
    ],
)
def test_redaction(text: str, expected: str) -> None:
    assert redact(text) == expected


def test_remembered_secret_is_masked_anywhere() -> None:
    remember_secrets(["sekr1t-value"])
    assert redact("header api-secret: sekr1t-value!") == f"header api-secret: {MASK}!"
