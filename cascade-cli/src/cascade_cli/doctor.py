"""``cascade doctor``: what Cascade sees, and whether it can work."""

from __future__ import annotations

import importlib.metadata
import uuid
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from cascade import (
    CascadeConfig,
    CascadeError,
    all_tables,
    discover,
    leftover_pipelines,
    load_config,
    open_catalog,
    redact,
    sqlite_file,
    storage_endpoint,
)
from cascade_cli.output import first_line

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
        config = load_config()
    except CascadeError as error:
        return {"configuration": f"error: {redact(str(error))}", "healthy": False}
    report["configuration"] = config.describe()
    empty = _empty_catalog_file(config)  # not opened: opening an empty file makes it a fresh, empty catalog
    if empty is not None:
        report["catalog"] = empty
        healthy = False
    else:
        try:
            catalog = open_catalog(config)
            report["catalog"] = f"reachable ({len(catalog.list_namespaces())} namespaces)"
            unknown = _tables_unknown_to_catalog(config, catalog)
            if unknown:
                report["tables the catalog does not know"] = (
                    f"{', '.join(unknown)} have metadata in the warehouse but are not in the catalog "
                    "(was the catalog file replaced or truncated?)"
                )
                healthy = False
        except Exception as error:  # doctor reports every failure instead of stopping at the first
            report["catalog"] = f"unreachable: {redact(str(error))}"
            healthy = False
    report["warehouse"] = _warehouse_status(config)
    healthy &= report["warehouse"].startswith(("writable", "not configured"))
    try:
        found = discover()
        plugins: dict[str, str] = {a.spec.plugin or "(in-process)": "loaded" for a in found.assets}
        plugins.update({f.plugin: redact(f"failed: {type(f.error).__name__}: {f.error}") for f in found.failures})
        report["plugins"] = plugins
    except CascadeError as error:
        report["plugins"] = f"error: {redact(str(error))}"
        healthy = False
    leftovers = leftover_pipelines(config.home)
    report["leftover pipeline folders (runs that died)"] = [str(p) for p in leftovers] or "none"
    report["versions"] = {package: _version(package) for package in KEY_PACKAGES}
    report["healthy"] = healthy
    return report


def _empty_catalog_file(config: CascadeConfig) -> str | None:
    """A 0-byte SQLite catalog file: SQLite would silently treat it as a new, empty catalog."""
    path = sqlite_file(config)
    if path is None or not path.is_file() or path.stat().st_size > 0:
        return None
    return f"EMPTY: {path} is a 0-byte file (truncated?); its tables are lost to the catalog: restore it from a backup"


def _tables_unknown_to_catalog(config: CascadeConfig, catalog: Any) -> list[str]:
    """Tables with metadata in a local warehouse (``<namespace>/<table>/metadata``) that the catalog does not list."""
    warehouse = urlparse(config.catalog.get("warehouse", ""))
    if warehouse.scheme not in ("file", "") or not warehouse.path:
        return []
    known = set(all_tables(catalog))
    found = {
        f"{folder.parent.parent.name}.{folder.parent.name}"
        for folder in Path(warehouse.path).glob("*/*/metadata")
        if any(folder.glob("*.metadata.json"))
    }
    return sorted(found - known)


def _warehouse_status(config: CascadeConfig) -> str:
    """Write and delete a probe file where tables go, through the catalog's own FileIO (local or S3)."""
    from pyiceberg.io import load_file_io

    properties = config.catalog
    warehouse = properties.get("warehouse", "")
    if not warehouse:
        return "not configured; the catalog chooses table locations"
    if urlparse(warehouse).scheme in ("file", ""):
        Path(urlparse(warehouse).path).mkdir(parents=True, exist_ok=True)
    probe = f"{warehouse.rstrip('/')}/.cascade-doctor-{uuid.uuid4().hex}"
    shown = storage_endpoint(config)
    try:
        io = load_file_io(properties, warehouse)
        with io.new_output(probe).create() as stream:
            stream.write(b"ok")
        io.delete(probe)
        return f"writable ({shown})"
    except Exception as error:  # doctor reports every failure instead of stopping at the first
        return f"not writable ({shown}): {type(error).__name__}: {first_line(error)}"
