"""Cascade's configuration: embedded defaults, then ``cascade.toml``, then ``CASCADE_*`` variables.

The default needs nothing: a pyiceberg SQL catalog on SQLite and a warehouse folder, both under
``./.cascade/``. Any pyiceberg catalog property passes through ``[catalog]`` (or
``CASCADE_CATALOG__<PROPERTY>``), so a PostgreSQL or REST catalog is configuration, not code.

    [cascade]
    home = ".cascade"
    branch = "main"

    [catalog]
    type = "sql"
    uri = "postgresql+psycopg2://cascade:***@db:5432/cascade"
    warehouse = "s3://lake/warehouse"
    "s3.endpoint" = "http://minio:9000"

    [namespaces]        # group -> namespace
    nightscout = "raw_nightscout"

    [plugins.nightscout]    # settings a plugin reads with context.settings("nightscout")
    url = "https://my-nightscout.example"

    [http]              # how sources retry and wait (cascade.http_policy.HttpPolicy)
    max_attempts = 5
    timeout_seconds = 30
"""

from __future__ import annotations

import dataclasses
import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any

from cascade.errors import ConfigurationError
from cascade.http_policy import HttpPolicy
from cascade.maintenance_policy import MaintenancePolicy
from cascade.redaction import masked, remember_secrets, secrets_in

CONFIG_FILE = "cascade.toml"
ENV_PREFIX = "CASCADE_"
_CASCADE_KEYS = {
    "home",
    "branch",
    "catalog_name",
    "keep_staging",
    "log_format",
    "log_level",
    "commit_attempts",
    "max_batch_bytes",
}
DEFAULT_MAX_BATCH_BYTES = 128 * 2**20


def _freeze(mapping: Mapping[str, Any]) -> Mapping[str, Any]:
    return MappingProxyType({k: _freeze(v) if isinstance(v, Mapping) else v for k, v in mapping.items()})


@dataclass(frozen=True)
class CascadeConfig:
    """The configuration in effect for a run. Build with :func:`load_config`."""

    home: Path = Path(".cascade")
    branch: str | None = None
    catalog_name: str = "cascade"
    catalog_properties: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))
    namespaces: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))
    plugins: Mapping[str, Mapping[str, Any]] = field(default_factory=lambda: MappingProxyType({}))
    keep_staging: bool = False
    log_format: str = "auto"
    log_level: str = "INFO"
    commit_attempts: int = 20
    max_batch_bytes: int = DEFAULT_MAX_BATCH_BYTES  # a staged day larger than this is merged in chunks this size
    http: HttpPolicy = field(default_factory=HttpPolicy)
    maintenance: MaintenancePolicy = field(default_factory=MaintenancePolicy)

    def __post_init__(self) -> None:
        if not isinstance(self.home, Path):  # CascadeConfig(home="lake") is how most will write it
            object.__setattr__(self, "home", Path(self.home))

    @property
    def catalog(self) -> dict[str, str]:
        """The pyiceberg catalog properties, with the embedded SQLite defaults filled in."""
        home = self.home.resolve()
        props = {
            "type": "sql",
            "uri": f"sqlite:///{home / 'catalog.db'}",
            "warehouse": (home / "warehouse").as_uri(),
        }
        if self.catalog_properties.get("type", "sql") != "sql":
            props = {}
        props.update(self.catalog_properties)
        return props

    def namespace_for(self, group: str, default: str) -> str:
        return self.namespaces.get(group, default)

    def settings(self, plugin: str) -> Mapping[str, Any]:
        """The ``[plugins.<plugin>]`` table (and ``CASCADE_PLUGINS__<PLUGIN>__<KEY>`` variables)."""
        return self.plugins.get(plugin, MappingProxyType({}))

    def describe(self) -> dict[str, object]:
        """The configuration fit for display, secrets masked."""
        return masked(
            {
                "home": str(self.home),
                "branch": self.branch or "main",
                "catalog_name": self.catalog_name,
                "catalog": self.catalog,
                "namespaces": dict(self.namespaces),
                "plugins": {k: dict(v) for k, v in self.plugins.items()},
                "keep_staging": self.keep_staging,
                "max_batch_bytes": self.max_batch_bytes,
                "http": dataclasses.asdict(self.http),
            }
        )


def load_config(
    cwd: Path | None = None,
    environ: Mapping[str, str] | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> CascadeConfig:
    """Read ``cascade.toml`` from ``cwd`` (or ``CASCADE_CONFIG``) and ``CASCADE_*`` variables."""
    environ = os.environ if environ is None else environ
    cwd = Path.cwd() if cwd is None else cwd
    path = Path(environ.get("CASCADE_CONFIG", cwd / CONFIG_FILE))
    document: dict[str, Any] = {}
    if path.is_file():
        try:
            document = tomllib.loads(path.read_text())
        except tomllib.TOMLDecodeError as error:
            raise ConfigurationError(f"{path}: not valid TOML: {error}") from None
    elif "CASCADE_CONFIG" in environ:
        raise ConfigurationError(f"CASCADE_CONFIG names {path}, which does not exist")
    unknown = set(document) - {"cascade", "catalog", "namespaces", "plugins", "http", "maintenance"}
    if unknown:
        raise ConfigurationError(
            f"{path}: unknown table(s) {sorted(unknown)}; "
            "valid: cascade, catalog, http, maintenance, namespaces, plugins"
        )
    settings = dict(document.get("cascade", {}))
    catalog = {str(k): str(v) for k, v in document.get("catalog", {}).items()}
    namespaces = {str(k): str(v) for k, v in document.get("namespaces", {}).items()}
    plugins: dict[str, dict[str, Any]] = {k: dict(v) for k, v in document.get("plugins", {}).items()}
    http = dict(document.get("http", {}))
    maintenance = dict(document.get("maintenance", {}))
    _apply_environment(environ, settings, catalog, plugins, http)
    _apply_section_environment(environ, "MAINTENANCE__", maintenance)
    settings.update(overrides or {})
    unknown = set(settings) - _CASCADE_KEYS
    if unknown:
        raise ConfigurationError(f"unknown [cascade] setting(s) {sorted(unknown)}; valid: {sorted(_CASCADE_KEYS)}")
    remember_secrets(secrets_in(catalog))
    remember_secrets(secrets_in(plugins))
    home = Path(settings.get("home", ".cascade"))
    if not home.is_absolute():
        home = (path.parent if path.is_file() else cwd) / home
    try:
        attempts = int(settings.get("commit_attempts", 20))
    except ValueError:
        raise ConfigurationError(
            f"commit_attempts must be a whole number, got {settings['commit_attempts']!r}"
        ) from None
    try:
        max_batch_bytes = int(settings.get("max_batch_bytes", DEFAULT_MAX_BATCH_BYTES))
    except ValueError:
        max_batch_bytes = 0
    if max_batch_bytes < 1:
        raise ConfigurationError(
            f"max_batch_bytes must be a positive whole number of bytes, got {settings['max_batch_bytes']!r}"
        )
    log_format = str(settings.get("log_format", "auto"))
    if log_format not in ("auto", "console", "json"):
        raise ConfigurationError(f"log_format must be one of auto, console, json; got {log_format!r}")
    return CascadeConfig(
        home=home,
        branch=settings.get("branch") or None,
        catalog_name=str(settings.get("catalog_name", "cascade")),
        catalog_properties=_freeze(catalog),
        namespaces=_freeze(namespaces),
        plugins=_freeze(plugins),
        keep_staging=_as_bool(settings.get("keep_staging", False)),
        log_format=log_format,
        log_level=str(settings.get("log_level", "INFO")).upper(),
        commit_attempts=attempts,
        max_batch_bytes=max_batch_bytes,
        http=HttpPolicy.from_settings(http),
        maintenance=MaintenancePolicy.from_settings(maintenance),
    )


def _as_bool(value: object) -> bool:
    if isinstance(value, str):
        return value.lower() in ("1", "true", "yes", "on")
    return bool(value)


def _property_name(env_suffix: str) -> str:
    """``S3__ACCESS_KEY_ID`` -> ``s3.access-key-id``, pyiceberg's own convention."""
    return ".".join(part.lower().replace("_", "-") for part in env_suffix.split("__"))


def _apply_environment(
    environ: Mapping[str, str],
    settings: dict[str, Any],
    catalog: dict[str, str],
    plugins: dict[str, dict[str, Any]],
    http: dict[str, Any],
) -> None:
    for name, value in environ.items():
        if not name.startswith(ENV_PREFIX) or name == "CASCADE_CONFIG":
            continue
        rest = name[len(ENV_PREFIX) :]
        if rest.startswith("CATALOG__"):
            catalog[_property_name(rest[len("CATALOG__") :])] = value
        elif rest.startswith("HTTP__"):
            http[rest[len("HTTP__") :].lower()] = value
        elif rest.startswith("PLUGINS__") and rest.count("__") >= 2:
            _, plugin, key = rest.split("__", 2)
            plugins.setdefault(plugin.lower(), {})[key.lower()] = value
        elif rest.lower() in _CASCADE_KEYS:
            settings[rest.lower()] = value


def _apply_section_environment(environ: Mapping[str, str], prefix: str, section: dict[str, Any]) -> None:
    """``CASCADE_<SECTION>__<KEY>=value`` sets ``key`` of ``[section]``."""
    for name, value in environ.items():
        if name.startswith(ENV_PREFIX + prefix):
            section[name[len(ENV_PREFIX + prefix) :].lower()] = value
