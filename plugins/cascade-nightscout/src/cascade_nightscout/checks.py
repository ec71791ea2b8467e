"""The Pandera model glucose rows are validated against (imported only when a run validates)."""

from __future__ import annotations

import pandas as pd
import pandera.pandas as pa
from pandera.typing import Series

DIRECTIONS = [
    "NONE",
    "DoubleUp",
    "SingleUp",
    "FortyFiveUp",
    "Flat",
    "FortyFiveDown",
    "SingleDown",
    "DoubleDown",
    "NOT COMPUTABLE",
    "RATE OUT OF RANGE",
]


class RawGlucose(pa.DataFrameModel):
    """A CGM reading as Nightscout serves it."""

    id: Series[str] = pa.Field(alias="_id", nullable=False, unique=True)
    date: Series[int] = pa.Field(gt=0, nullable=False)
    date_string: Series[pd.DatetimeTZDtype] = pa.Field(dtype_kwargs={"unit": "us", "tz": "UTC"}, nullable=False)
    sgv: Series[int] = pa.Field(ge=20, le=600, nullable=False)
    direction: Series[str] = pa.Field(isin=DIRECTIONS, nullable=True)

    class Config:
        strict = False
        coerce = True
