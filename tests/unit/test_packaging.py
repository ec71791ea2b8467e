"""The packages' metadata in the source tree: one version each, and requirements that agree."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = sorted(p.parent for p in [*ROOT.glob("cascade-*/pyproject.toml"), *ROOT.glob("plugins/*/pyproject.toml")])


def project(folder: Path) -> dict:
    return tomllib.loads((folder / "pyproject.toml").read_text())


def version(folder: Path) -> str:
    source = folder / project(folder)["tool"]["hatch"]["version"]["path"]
    match = re.search(r'^__version__ = "([^"]+)"$', source.read_text(), re.MULTILINE)
    assert match, f"{source} declares no __version__"
    return match.group(1)


VERSIONS = {project(folder)["project"]["name"]: version(folder) for folder in PACKAGES}


def test_every_package_is_found() -> None:
    assert set(VERSIONS) >= {"cascade-core", "cascade-cli", "cascade-dagster", "cascade-github", "cascade-nightscout"}


@pytest.mark.parametrize("folder", PACKAGES, ids=lambda p: p.name)
def test_metadata_is_complete_and_internal_requirements_agree(folder: Path) -> None:
    meta = project(folder)["project"]
    assert meta["dynamic"] == ["version"]  # the one version source is __version__
    assert meta["description"] and meta["license"] and meta["requires-python"] == ">=3.11"
    assert (folder / meta["readme"]).is_file()
    typed = "Typing :: Typed" in meta["classifiers"]
    assert not typed or list(folder.glob("src/*/py.typed")), "classified typed, but no py.typed"
    extras = [r for group in meta.get("optional-dependencies", {}).values() for r in group]
    for line in [*meta["dependencies"], *extras]:
        requirement = Requirement(line)
        assert any(s.operator == ">=" for s in requirement.specifier), f"{line}: no lower bound"
        if requirement.name in VERSIONS:
            assert requirement.specifier.contains(VERSIONS[requirement.name]), f"{line} excludes the local version"


def test_plugins_depend_only_on_core_and_adapters_never_the_other_way() -> None:
    for folder in PACKAGES:
        meta = project(folder)["project"]
        internal = {Requirement(r).name for r in meta["dependencies"] if Requirement(r).name in VERSIONS}
        if meta["name"] == "cascade-core":
            assert internal == set()
        elif folder.parent.name == "plugins" or meta["name"] in ("cascade-cli", "cascade-dagster"):
            assert internal <= {"cascade-core"}, f"{meta['name']} depends on {internal}"
