"""``cascade doctor``: what Cascade sees, and whether it can work."""

from __future__ import annotations

import importlib.metadata
import uuid
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import cascade
from cascade.catalog import open_catalog
from cascade.redaction import redact
from cascade.staging import leftover_pipelines

KEY_PACKAGES = ("cascade-core", "dlt", "pyiceberg", "pandera", "pyarrow", "dagster", "duckdb")


def _version(package: str) -> str:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def diagnose() -> dict[str, Any]:
    report: dict[str, Any] = {}
    healthy = True
    try:
        config = cascade.load_config()
    except cascade.CascadeError as error:
        return {"configuration": f"error: {error}", "healthy": False}
    report["configuration"] = config.describe()
    try:
        catalog = open_catalog(config)
        report["catalog"] = f"reachable ({len(catalog.list_namespaces())} namespaces)"
    except Exception as error:  # doctor reports every failure instead of stopping at the first
        report["catalog"] = f"unreachable: {redact(str(error))}"
        healthy = False
    report["warehouse"] = _warehouse_status(config.catalog.get("warehouse", ""))
    healthy &= report["warehouse"].startswith(("writable", "not a local"))
    try:
        found = cascade.discover()
        plugins: dict[str, str] = {a.spec.plugin or "(in-process)": "loaded" for a in found.assets}
        plugins.update({f.plugin: f"failed: {type(f.error).__name__}: {f.error}" for f in found.failures})
        report["plugins"] = plugins
    except cascade.CascadeError as error:
        report["plugins"] = f"error: {error}"
        healthy = False
    leftovers = leftover_pipelines(config.home)
    report["leftover pipeline folders (runs that died)"] = [str(p) for p in leftovers] or "none"
    report["versions"] = {package: _version(package) for package in KEY_PACKAGES}
    report["healthy"] = healthy
    return report


def _warehouse_status(warehouse: str) -> str:
    parsed = urlparse(warehouse)
    if parsed.scheme not in ("file", ""):
        return f"not a local folder ({parsed.scheme}://); checked by the catalog"
    folder = Path(parsed.path)
    probe = folder / f".cascade-doctor-{uuid.uuid4().hex}"
    try:
        folder.mkdir(parents=True, exist_ok=True)
        probe.write_text("ok")
        probe.unlink()
        return f"writable ({folder})"
    except OSError as error:
        return f"not writable ({folder}): {error}"
