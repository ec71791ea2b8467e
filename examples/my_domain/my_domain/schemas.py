"""The example table's Iceberg schema and Pandera model, as the design notes write them."""

from datetime import datetime

from pandera.pandas import DataFrameModel, Field
from pyiceberg.schema import Schema
from pyiceberg.types import LongType, NestedField, StringType, TimestamptzType

MY_TABLE_SCHEMA = Schema(
    NestedField(1, "id", StringType(), required=False, doc="Unique ID"),
    NestedField(2, "created_at", TimestamptzType(), required=False),
    NestedField(3, "amount", LongType(), required=False),
)


class RawMyData(DataFrameModel):
    id: str = Field(nullable=False, unique=True)
    created_at: datetime = Field(nullable=False)
    amount: int = Field(ge=0, nullable=False)
