"""Using a custom dlt resource. ``write_disposition="replace"`` means: each run replaces its day.

Cascade reads which rows belong to a day from ``partition_column`` (or a day partition of
``partition_spec``); the design notes' version had neither, and such an asset is refused with a
message that says so.
"""

import os

import dlt

from cascade import cascade_ingestion, http_session
from my_domain.schemas import MY_TABLE_SCHEMA, RawMyData

API_URL = os.environ.get("MY_API_URL", "https://api.example.com")


def fetch_from_somewhere(partition_date: str) -> list[dict]:
    response = http_session(API_URL).get(f"{API_URL}/data", params={"date": partition_date})
    response.raise_for_status()
    return response.json()


@dlt.resource(name="my_resource", write_disposition="replace")
def fetch_my_data(partition_date: str):
    # Custom fetch logic
    data = fetch_from_somewhere(partition_date)
    yield from data


@cascade_ingestion(
    table_name="my_table_custom",
    unique_key="id",
    iceberg_schema=MY_TABLE_SCHEMA,
    validation_schema=RawMyData,
    group="my_domain",
    cron="0 */1 * * *",
    freshness_hours=(1, 24),
    partition_column="created_at",
)
def my_custom_asset(partition_date: str):
    return fetch_my_data(partition_date)
