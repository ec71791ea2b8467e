"""Use Cascade as installed from wheels, from a folder outside the checkout.

Run by ``nox -s wheels`` with the fresh virtual environment's Python, in an empty folder:
the packages must come from that environment's site-packages (not the source tree), the
plugins' assets must be found through their entry points, the Dagster definitions must load,
and ``cascade run`` must land partitions from the simulators the plugin wheels ship.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import sys
from pathlib import Path

BIN = Path(sys.executable).parent
ENV = {**os.environ, "CASCADE_LOG_FORMAT": "json"}


def cascade(*args: str, env: dict[str, str] | None = None) -> dict:
    done = subprocess.run([BIN / "cascade", *args], capture_output=True, text=True, env={**ENV, **(env or {})})
    assert done.returncode == 0, f"cascade {' '.join(args)} failed:\n{done.stderr}"
    return json.loads(done.stdout)


def served(script: str, *args: str) -> tuple[subprocess.Popen[str], str]:
    server = subprocess.Popen([BIN / script, *args], stdout=subprocess.PIPE, text=True)
    assert server.stdout is not None
    return server, server.stdout.readline().strip()


def main() -> None:
    import cascade as core
    import cascade_dagster.definitions as definitions

    here = Path.cwd().resolve()
    for module in (core, definitions):
        origin = Path(module.__file__ or "").resolve()
        assert origin.is_relative_to(Path(sys.prefix).resolve()), f"{module.__name__} imported from {origin}"
        assert not origin.is_relative_to(Path(__file__).resolve().parents[2]), "imported from the checkout"
    print(f"cascade {core.__version__} from {Path(core.__file__ or '').parent}")

    listing = cascade("list", "--json")
    assets = {a["asset"]: a["plugin"] for a in listing["assets"]}
    assert assets == {"events": "cascade-github", "repos": "cascade-github", "glucose": "cascade-nightscout"}, assets
    assert listing["failed_plugins"] == [], listing["failed_plugins"]
    print("cascade list:", ", ".join(f"{a} ({p})" for a, p in sorted(assets.items())))

    keys = {"/".join(key.path) for key in definitions.defs.resolve_asset_graph().get_all_asset_keys()}
    assert {"github/events", "github/repos", "nightscout/glucose"} <= keys, keys
    print("cascade_dagster.definitions:", ", ".join(sorted(keys)))

    yesterday = (dt.datetime.now(dt.UTC).date() - dt.timedelta(days=1)).isoformat()
    github, url = served("github-simulator", "--token", "ghp_wheelcheck0000", "--user", "octocat")
    nightscout, ns_url = served("nightscout-simulator")
    try:
        github_env = {"GITHUB_API_URL": url, "GITHUB_TOKEN": "ghp_wheelcheck0000", "GITHUB_USERS": "octocat"}
        events = cascade("run", "events", "--date", yesterday, "--json", env=github_env)
        assert events["rows_inserted"] == 24 and events["table"] == "github.events", events
        glucose = cascade("run", "glucose", "--date", "2024-05-01", "--json", env={"NIGHTSCOUT_URL": ns_url})
        assert glucose["rows_inserted"] == 288, glucose
    finally:
        github.terminate()
        nightscout.terminate()
    print(
        f"cascade run: events {yesterday} -> {events['rows_inserted']} rows, glucose -> {glucose['rows_inserted']} rows"
    )
    assert (here / ".cascade" / "catalog.db").exists()
    print("installed from wheels: OK")


if __name__ == "__main__":
    main()
