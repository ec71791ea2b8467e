"""The Pandera models events and repository rows are validated against (imported only when a run
validates)."""

from __future__ import annotations

import pandas as pd
import pandera.pandas as pa
from pandera.typing import Series

TIMESTAMP = {"unit": "us", "tz": "UTC"}


class RawEvent(pa.DataFrameModel):
    """A public event as the events table holds it."""

    # no uniqueness check: GitHub repeats an event across pages as new ones arrive; the merge
    # keeps one row per id
    id: Series[str] = pa.Field(nullable=False, str_length={"min_value": 1})
    type: Series[str] = pa.Field(nullable=False, str_endswith="Event")
    created_at: Series[pd.DatetimeTZDtype] = pa.Field(dtype_kwargs=TIMESTAMP, nullable=False)
    feed_user: Series[str] = pa.Field(nullable=False)
    push_size: Series[float] = pa.Field(ge=0, nullable=True)

    class Config:
        strict = False
        coerce = True


class RepoStats(pa.DataFrameModel):
    """One repository's figures on one day."""

    repository: Series[str] = pa.Field(nullable=False, str_contains="/")
    stars: Series[int] = pa.Field(ge=0, nullable=False)
    forks: Series[int] = pa.Field(ge=0, nullable=False)
    watchers: Series[float] = pa.Field(ge=0, nullable=True)
    open_issues: Series[int] = pa.Field(ge=0, nullable=False)

    class Config:
        strict = False
        coerce = True
