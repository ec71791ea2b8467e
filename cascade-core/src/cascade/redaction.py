"""Keep secrets out of everything Cascade prints, raises, traces or returns."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping

MASK = "***"
SECRET_KEY_PARTS = ("password", "secret", "token", "credential", "access-key", "access_key", "api-key", "api_key")

_URL_USERINFO = re.compile(r"(?P<scheme>[a-zA-Z][a-zA-Z0-9+.-]*://)(?P<userinfo>[^/@\s:]+(?::[^/@\s]*)?)@")
_SECRET_QUERY = re.compile(
    r"(?P<name>[?&](?:token|access_token|api[-_]?key|api[-_]?secret|secret|password|sig|signature)=)[^&#\s'\"]+",
    re.IGNORECASE,
)
_KNOWN_SECRETS: set[str] = set()


def is_secret_key(key: str) -> bool:
    """Whether a configuration key names a secret (its value must be masked)."""
    lowered = key.lower()
    return any(part in lowered for part in SECRET_KEY_PARTS)


def remember_secrets(values: Iterable[str | None]) -> None:
    """Register secret values so that ``redact`` masks them wherever they appear."""
    _KNOWN_SECRETS.update(v for v in values if v and len(v) >= 4)


def secrets_in(mapping: Mapping[str, object]) -> list[str]:
    """The string values of the keys that name secrets, recursively."""
    found: list[str] = []
    for key, value in mapping.items():
        if isinstance(value, Mapping):
            found.extend(secrets_in(value))
        elif isinstance(value, str) and is_secret_key(str(key)):
            found.append(value)
    return found


def redact(text: str) -> str:
    """Mask known secret values, URL userinfo and secret-looking query parameters in ``text``."""
    for secret in sorted(_KNOWN_SECRETS, key=len, reverse=True):
        text = text.replace(secret, MASK)
    text = _URL_USERINFO.sub(lambda m: f"{m.group('scheme')}{MASK}@", text)
    return _SECRET_QUERY.sub(lambda m: f"{m.group('name')}{MASK}", text)


def masked(mapping: Mapping[str, object]) -> dict[str, object]:
    """A copy of ``mapping`` fit for display: secret keys masked, URLs stripped of userinfo."""
    out: dict[str, object] = {}
    for key, value in mapping.items():
        if isinstance(value, Mapping):
            out[key] = masked(value)
        elif is_secret_key(str(key)) and value:
            out[key] = MASK
        elif isinstance(value, str):
            out[key] = redact(value)
        else:
            out[key] = value
    return out
