"""Check the built sdists and wheels: ``python check_dists.py DIST_DIR PACKAGE_DIR...``.

Run by ``nox -s wheels`` after building. For every package: both artifacts exist for the
version its source declares; the wheel's metadata is complete (summary, license, Python
requirement, a lower bound on every dependency), its entry points are those of pyproject.toml,
typed packages ship ``py.typed``; the sdist holds the README, pyproject.toml and ``py.typed``;
and every requirement on another Cascade package admits that package's version.
"""

from __future__ import annotations

import re
import sys
import tarfile
import tomllib
import zipfile
from email.parser import Parser
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

VERSION = re.compile(r'^__version__ = "([^"]+)"$', re.MULTILINE)


def source_version(package: Path, project: dict) -> str:
    version_file = package / project["tool"]["hatch"]["version"]["path"]
    match = VERSION.search(version_file.read_text())
    assert match, f"{version_file}: no __version__"
    return match.group(1)


def check(dist: Path, package: Path, versions: dict[str, str], problems: list[str]) -> None:
    project = tomllib.loads((package / "pyproject.toml").read_text())
    meta = project["project"]
    name = canonicalize_name(meta["name"])
    version = versions[name]
    stem = f"{name.replace('-', '_')}-{version}"
    wheel, sdist = dist / f"{stem}-py3-none-any.whl", dist / f"{stem}.tar.gz"
    for artifact in (wheel, sdist):
        if not artifact.exists():
            problems.append(f"{name}: {artifact.name} was not built")
            return
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
        metadata = Parser().parsestr(archive.read(f"{stem}.dist-info/METADATA").decode())
        entry_points = (
            archive.read(f"{stem}.dist-info/entry_points.txt").decode()
            if any(n.endswith("entry_points.txt") for n in names)
            else ""
        )
    for field in ("Summary", "License-Expression", "Requires-Python"):
        if not metadata.get(field):
            problems.append(f"{name}: wheel metadata lacks {field}")
    if not metadata.get_payload().strip():
        problems.append(f"{name}: wheel has no long description (README)")
    for line in metadata.get_all("Requires-Dist") or []:
        requirement = Requirement(line)
        if not any(spec.operator in (">=", "==", "~=") for spec in requirement.specifier):
            problems.append(f"{name}: dependency {line!r} has no lower bound")
        other = canonicalize_name(requirement.name)
        if other in versions and not requirement.specifier.contains(versions[other]):
            problems.append(f"{name}: requires {line!r} but {other} is {versions[other]}")
    for group, points in project["project"].get("entry-points", {}).items():
        for point, target in points.items():
            if f"{point} = {target}" not in entry_points or f"[{group}]" not in entry_points:
                problems.append(f"{name}: entry point [{group}] {point} = {target} missing from the wheel")
    for script, target in project["project"].get("scripts", {}).items():
        if f"{script} = {target}" not in entry_points:
            problems.append(f"{name}: console script {script} missing from the wheel")
    typed = "Typing :: Typed" in meta.get("classifiers", [])
    if typed and not any(n.endswith("/py.typed") for n in names):
        problems.append(f"{name}: classified Typing :: Typed but the wheel has no py.typed")
    with tarfile.open(sdist) as archive:
        members = {m.split("/", 1)[1] for m in archive.getnames() if "/" in m}
    for needed in ("pyproject.toml", "README.md"):
        if needed not in members:
            problems.append(f"{name}: sdist lacks {needed}")
    if typed and not any(m.endswith("/py.typed") for m in members):
        problems.append(f"{name}: sdist lacks py.typed")


def main(dist: str, *packages: str) -> int:
    folders = [Path(p) for p in packages]
    versions = {}
    for folder in folders:
        project = tomllib.loads((folder / "pyproject.toml").read_text())
        versions[canonicalize_name(project["project"]["name"])] = source_version(folder, project)
    problems: list[str] = []
    for folder in folders:
        check(Path(dist), folder, versions, problems)
    for problem in problems:
        print(f"problem: {problem}", file=sys.stderr)
    print(f"checked {len(folders)} packages: " + ", ".join(f"{n} {v}" for n, v in sorted(versions.items())))
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:]))
