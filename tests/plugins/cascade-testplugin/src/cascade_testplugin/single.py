"""An object entry point: the entry point names the asset itself."""

import dlt
from pyiceberg.schema import Schema
from pyiceberg.types import NestedField, StringType

from cascade import cascade_ingestion

GADGETS = Schema(NestedField(1, "id", StringType(), required=False))


@cascade_ingestion(table_name="gadgets", unique_key="id", iceberg_schema=GADGETS, group="testing")
def gadgets(partition_date: str):
    return dlt.resource([{"id": f"g-{partition_date}"}], name="gadgets")
