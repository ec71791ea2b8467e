"""The glucose table's Iceberg schema, partitioned by day (its Pandera model is in ``checks``)."""

from __future__ import annotations

from pyiceberg.partitioning import PartitionField, PartitionSpec
from pyiceberg.schema import Schema
from pyiceberg.transforms import DayTransform
from pyiceberg.types import DoubleType, LongType, NestedField, StringType, TimestamptzType

GLUCOSE_SCHEMA = Schema(
    NestedField(1, "_id", StringType(), required=False, doc="Nightscout entry id"),
    NestedField(2, "date", LongType(), required=False, doc="Reading time, epoch milliseconds"),
    NestedField(3, "date_string", TimestamptzType(), required=False, doc="Reading time (UTC)"),
    NestedField(4, "sgv", LongType(), required=False, doc="Sensor glucose value, mg/dL"),
    NestedField(5, "delta", DoubleType(), required=False, doc="Change since the previous reading"),
    NestedField(6, "direction", StringType(), required=False, doc="Trend arrow"),
    NestedField(7, "device", StringType(), required=False),
    NestedField(8, "type", StringType(), required=False),
)

GLUCOSE_PARTITIONING = PartitionSpec(
    PartitionField(source_id=3, field_id=1000, transform=DayTransform(), name="date_string_day")
)
