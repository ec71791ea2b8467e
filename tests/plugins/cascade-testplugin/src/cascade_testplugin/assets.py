"""A module entry point: importing it registers ``readings`` (composite key)."""

import dlt
from pyiceberg.schema import Schema
from pyiceberg.types import LongType, NestedField, StringType

from cascade import cascade_ingestion

READINGS = Schema(
    NestedField(1, "station", StringType(), required=False),
    NestedField(2, "day", StringType(), required=False),
    NestedField(3, "value", LongType(), required=False),
)


@cascade_ingestion(table_name="readings", unique_key=("station", "day"), iceberg_schema=READINGS, group="testing")
def readings(partition_date: str):
    """Two stations, one reading each per day."""
    return dlt.resource(
        [{"station": s, "day": partition_date, "value": i} for i, s in enumerate(("north", "south"))], name="readings"
    )
