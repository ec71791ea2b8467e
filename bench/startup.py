"""Startup benchmark: how long until the ``cascade`` command answers?

Runs each command ``--repeat`` times as a subprocess of the installed console script (after one
warm-up run that fills the file cache), from an empty folder, and prints the median, the fastest
and the slowest, beside ``python -c pass`` as the floor no command can beat:

  python -c pass        the interpreter alone
  cascade --help        Typer and the command tree: no Cascade module beyond its lazy ``__init__``
  cascade run --help    the same, through a subcommand
  cascade list          discovery: the bundled plugins' modules imported through their entry points

``cascade list`` runs with the test plugins blocked (``--all-plugins`` keeps them), so it lists the
bundled plugins as an installed Cascade would. With ``--importtime``, it also prints where each
command's import time goes (``python -X importtime``, self time summed per top-level package).
Nothing is asserted; the targets are 0.3 s for ``--help`` and 1.5 s for ``list``.

    python bench/startup.py
    python bench/startup.py --repeat 3 --importtime
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

TEST_PLUGINS = "cascade-testplugin,cascade-testplugin-broken"
COMMANDS = {
    "python -c pass": ["-c", "pass"],
    "cascade --help": ["--help"],
    "cascade run --help": ["run", "--help"],
    "cascade list": ["list"],
}
IMPORT_LINE = re.compile(r"^import time:\s+(\d+) \|\s+(\d+) \| (\s*)(\S+)$")


def console_script() -> str:
    beside = Path(sys.executable).parent / "cascade"
    found = str(beside) if beside.exists() else shutil.which("cascade")
    if not found:
        sys.exit("the cascade console script is not installed (pip install cascade-cli)")
    return found


def argv(name: str, script: str) -> list[str]:
    args = COMMANDS[name]
    return [sys.executable, *args] if name.startswith("python") else [script, *args]


def timed(command: list[str], cwd: Path, env: dict[str, str]) -> float:
    started = time.perf_counter()
    done = subprocess.run(command, cwd=cwd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    seconds = time.perf_counter() - started
    if done.returncode != 0:
        sys.exit(f"{' '.join(command)} failed:\n{done.stderr}")
    return seconds


def import_times(script: str, args: list[str], cwd: Path, env: dict[str, str], top: int) -> list[tuple[str, float]]:
    """Import self time (seconds) summed per top-level package, the ``top`` largest."""
    done = subprocess.run(
        [sys.executable, "-X", "importtime", script, *args], cwd=cwd, env=env, capture_output=True, text=True
    )
    per_package: Counter[str] = Counter()
    for line in done.stderr.splitlines():
        matched = IMPORT_LINE.match(line)
        if matched:
            per_package[matched.group(4).split(".")[0]] += int(matched.group(1)) / 1e6
    return per_package.most_common(top)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeat", type=int, default=10, help="runs per command (default 10)")
    parser.add_argument("--all-plugins", action="store_true", help="do not block the test plugins")
    parser.add_argument("--importtime", action="store_true", help="also print where import time goes")
    parser.add_argument("--top", type=int, default=12, help="packages shown per command with --importtime")
    args = parser.parse_args()

    script = console_script()
    env = {**os.environ, "RUNTIME__DLTHUB_TELEMETRY": "false"}
    if not args.all_plugins:
        blocked = [p for p in (env.get("CASCADE_BLOCKED_PLUGINS", ""), TEST_PLUGINS) if p]
        env["CASCADE_BLOCKED_PLUGINS"] = ",".join(blocked)
    with tempfile.TemporaryDirectory(prefix="cascade-startup-") as folder:
        cwd = Path(folder)
        rows = []
        for name in COMMANDS:
            timed(argv(name, script), cwd, env)  # warm-up: file cache, byte code
            runs = [timed(argv(name, script), cwd, env) for _ in range(args.repeat)]
            rows.append((name, statistics.median(runs), min(runs), max(runs)))
            print(f"{name}: {statistics.median(runs):.3f} s", file=sys.stderr, flush=True)
        floor = rows[0][1]
        print()
        header = "| command | median s | fastest s | slowest s | above the floor s |"
        print(f"{header}  ({args.repeat} runs, {os.cpu_count()} CPUs, load {os.getloadavg()[0]:.1f})")
        print("|---|---|---|---|---|")
        for name, median, fastest, slowest in rows:
            print(f"| `{name}` | {median:.3f} | {fastest:.3f} | {slowest:.3f} | {median - floor:.3f} |")
        if args.importtime:
            for name in list(COMMANDS)[1:]:
                print(f"\nimport self time of `{name}`, by top-level package (s):")
                for package, seconds in import_times(script, COMMANDS[name], cwd, env, args.top):
                    print(f"  {package:<28} {seconds:.3f}")


if __name__ == "__main__":
    main()
