"""Nightscout CGM readings -> the ``nightscout.glucose`` Iceberg table, one day per partition."""

from __future__ import annotations

import datetime as dt
import hashlib
from typing import Any

from cascade import RunContext, cascade_ingestion, rest_api_source
from cascade_nightscout.schemas import GLUCOSE_PARTITIONING, GLUCOSE_SCHEMA

FIELDS = ("_id", "date", "dateString", "sgv", "delta", "direction", "device", "type")


def day_bounds_ms(partition_date: str) -> tuple[int, int]:
    start = dt.datetime.combine(dt.date.fromisoformat(partition_date), dt.time(), dt.UTC)
    return int(start.timestamp() * 1000), int((start + dt.timedelta(days=1)).timestamp() * 1000)


@cascade_ingestion(
    table_name="glucose",
    unique_key="_id",
    iceberg_schema=GLUCOSE_SCHEMA,
    validation_schema="cascade_nightscout.checks:RawGlucose",
    partition_spec=GLUCOSE_PARTITIONING,
    stable_partitions=True,  # a reading's time never changes
    group="nightscout",
    cron="0 */1 * * *",
    freshness_hours=(1, 24),
)
def glucose(partition_date: str, context: RunContext) -> Any:
    """Continuous glucose monitor readings from a Nightscout server, one row per reading."""
    url = context.setting("nightscout", "url", env="NIGHTSCOUT_URL")
    if not url:
        raise ValueError("set the Nightscout URL: NIGHTSCOUT_URL or [plugins.nightscout] url in cascade.toml")
    token = context.secret("nightscout", "token", env="NIGHTSCOUT_TOKEN")
    start, end = day_bounds_ms(partition_date)
    from cascade_nightscout.paging import PAGE_SIZE, OlderThanPaginator  # loads dlt: only when the asset runs

    source = rest_api_source(
        {
            "client": {
                "base_url": url.rstrip("/") + "/api/v1/",
                "headers": {"api-secret": hashlib.sha1(token.encode()).hexdigest()} if token else {},
                "paginator": OlderThanPaginator(),
            },
            "resources": [
                {
                    "name": "glucose",
                    "endpoint": {
                        "path": "entries.json",
                        "params": {"find[date][$gte]": start, "find[date][$lt]": end, "count": PAGE_SIZE},
                    },
                    "processing_steps": [{"map": lambda row: {k: row.get(k) for k in FIELDS}}],
                }
            ],
        },
        context=context,
    )
    return source
