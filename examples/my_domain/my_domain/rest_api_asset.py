"""Using a REST API source (the design notes' recommended way).

The notes called ``dlt.sources.rest_api.rest_api({...})``, which takes keyword arguments, not one
dict; ``rest_api_source`` takes the dict. Cascade's ``rest_api_source`` is dlt's with Cascade's
HTTP session (retries, rate limits, the run's time budget, credentials kept on the base URL's host).
"""

import os

from cascade import cascade_ingestion, rest_api_source
from my_domain.schemas import MY_TABLE_SCHEMA, RawMyData

API_URL = os.environ.get("MY_API_URL", "https://api.example.com")


@cascade_ingestion(
    table_name="my_table",
    unique_key="id",
    iceberg_schema=MY_TABLE_SCHEMA,
    validation_schema=RawMyData,
    group="my_domain",
    cron="0 */1 * * *",
    freshness_hours=(1, 24),
)
def my_asset(partition_date: str):
    return rest_api_source(
        {
            "client": {
                "base_url": API_URL,
            },
            "resources": [
                {
                    "name": "my_resource",
                    "endpoint": {
                        "path": "data",
                        "params": {
                            "date": partition_date,
                        },
                    },
                }
            ],
        }
    )
