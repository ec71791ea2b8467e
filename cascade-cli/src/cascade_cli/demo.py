"""``cascade demo``: the one-command offline tour, on the embedded catalog."""

from __future__ import annotations

import datetime as dt
import os

from rich.console import Console
from rich.table import Table

from cascade import discover, load_config, open_catalog, run
from cascade_nightscout.server import NightscoutServer


def demo_days(days: int, today: dt.date | None = None) -> list[str]:
    today = today or dt.datetime.now(dt.UTC).date()
    return [(today - dt.timedelta(days=n)).isoformat() for n in range(days, 0, -1)]


def run_demo(out: Console, *, days: int = 7) -> None:
    config = load_config()
    discover()
    dates = demo_days(days)
    with NightscoutServer(token="demo-token") as server:
        os.environ["NIGHTSCOUT_URL"] = server.url
        os.environ["NIGHTSCOUT_TOKEN"] = "demo-token"
        out.print(f"Nightscout-compatible server on {server.url}; catalog under {config.home}")
        summary = Table(title="cascade demo: nightscout.glucose")
        for column in ("pass", "partition", "extracted", "inserted", "updated", "unchanged", "snapshot", "seconds"):
            summary.add_column(column)
        for attempt in ("first run", "re-run"):
            for date in dates:
                result = run("glucose", date, config=config)
                summary.add_row(
                    attempt,
                    date,
                    str(result.rows_extracted),
                    str(result.rows_inserted),
                    str(result.rows_updated),
                    str(result.rows_unchanged),
                    str(result.snapshot_id),
                    f"{result.duration_seconds:.2f}",
                )
    out.print(summary)
    table = open_catalog(config).load_table(("nightscout", "glucose"))
    rows = table.scan().to_arrow()
    distinct = len(set(rows.column("_id").to_pylist()))
    out.print(
        f"nightscout.glucose: {rows.num_rows} rows, {distinct} distinct _id, "
        f"{len(table.snapshots())} snapshots; re-runs added {rows.num_rows - distinct} duplicates."
    )
