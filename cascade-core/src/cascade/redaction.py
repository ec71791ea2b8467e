"""Keep secrets out of everything Cascade prints, raises, traces or returns.

This module is the one redaction path: log lines (``cascade.logs``), span attributes, status and
exception events (``cascade.telemetry``), error messages, results, and every byte the ``cascade``
command writes go through :func:`redact`. A secret is

- a value registered with :func:`remember_secrets` (``RunContext.secret`` and every configuration
  value whose key names a secret do so),
- the value of a configuration key that names a password, token, secret, credential, api key,
  access key, private key or authorization header (``header.Authorization`` included),
- the userinfo of a URL (``scheme://user:password@host``),
- the value of a token-like query parameter (``?token=``, ``&api_key=``, ``&sig=``, ...).
"""

from __future__ import annotations

import os
import re
import threading
import traceback
from collections.abc import Iterable, Mapping
from typing import Any

MASK = "***"
SECRET_KEY_PARTS = (
    "password",
    "passwd",
    "secret",
    "token",
    "credential",
    "authorization",
    "access-key",
    "access_key",
    "accesskey",
    "api-key",
    "api_key",
    "apikey",
    "private-key",
    "private_key",
    "privatekey",
)
_SECRET_NAME = (
    r"(?:[\w.\-]*(?:token|secret|passw(?:or)?d|api[-_]?key|access[-_]?key|private[-_]?key|credential|signature)[\w.\-]*"
    r"|pwd|auth|authorization|key|sig|signature)"
)
_URL_USERINFO = re.compile(r"(?P<scheme>[a-zA-Z][a-zA-Z0-9+.-]*://)(?P<userinfo>[^/@\s:]+(?::[^/@\s]*)?)@")
_SECRET_QUERY = re.compile(rf"(?P<name>[?&;]{_SECRET_NAME}=)[^&#\s'\"<>]+", re.IGNORECASE)
_SHORTEST_SECRET = 4
_KNOWN_SECRETS: set[str] = set()
_lock = threading.Lock()
_pattern: re.Pattern[str] | None = None


def _unlock_in_child() -> None:
    """A forked child (a backfill worker) gets a lock of its own: another thread of the parent (a
    progress bar writing through a redacting stream) may have held this one at the fork, and
    nothing in the child would ever release it."""
    global _lock
    _lock = threading.Lock()


if hasattr(os, "register_at_fork"):  # POSIX; elsewhere nothing forks
    os.register_at_fork(after_in_child=_unlock_in_child)


def is_secret_key(key: str) -> bool:
    """Whether a configuration key names a secret (its value must be masked)."""
    lowered = key.lower().replace(" ", "-")
    return any(part in lowered for part in SECRET_KEY_PARTS)


def remember_secrets(values: Iterable[str | None]) -> None:
    """Register secret values so that ``redact`` masks them wherever they appear."""
    global _pattern
    fresh = {v for v in values if isinstance(v, str) and len(v) >= _SHORTEST_SECRET} - _KNOWN_SECRETS
    if not fresh:
        return
    with _lock:
        _KNOWN_SECRETS.update(fresh)
        _pattern = None


def secrets_in(mapping: Mapping[str, object]) -> list[str]:
    """The string values of the keys that name secrets, recursively."""
    found: list[str] = []
    for key, value in mapping.items():
        if isinstance(value, Mapping):
            found.extend(secrets_in(value))
        elif isinstance(value, str) and is_secret_key(str(key)):
            found.append(value)
    return found


def _known_secrets() -> re.Pattern[str] | None:
    global _pattern
    with _lock:
        if _pattern is None and _KNOWN_SECRETS:
            ordered = sorted(_KNOWN_SECRETS, key=len, reverse=True)  # a longer secret holding a shorter one
            _pattern = re.compile("|".join(re.escape(s) for s in ordered))
        return _pattern


def redact(text: str) -> str:
    """Mask known secret values, URL userinfo and secret-looking query parameters in ``text``."""
    known = _known_secrets()
    if known is not None:
        text = known.sub(MASK, text)
    text = _URL_USERINFO.sub(lambda m: f"{m.group('scheme')}{MASK}@", text)
    return _SECRET_QUERY.sub(lambda m: f"{m.group('name')}{MASK}", text)


def redact_values(value: Any) -> Any:
    """``value`` with every string inside (dict values, list items) redacted."""
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, Mapping):
        return {k: redact_values(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(redact_values(v) for v in value)
    return value


def redacted_traceback(error: BaseException) -> str:
    """The formatted traceback of ``error`` (causes included), secrets masked."""
    return redact("".join(traceback.format_exception(error)))


def masked(mapping: Mapping[str, object]) -> dict[str, object]:
    """A copy of ``mapping`` fit for display: secret keys masked, strings redacted."""
    out: dict[str, object] = {}
    for key, value in mapping.items():
        if isinstance(value, Mapping):
            out[key] = masked(value)
        elif is_secret_key(str(key)) and value:
            out[key] = MASK
        else:
            out[key] = redact_values(value)
    return out
