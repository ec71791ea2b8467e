"""GitHub's event paging: ``Link: rel="next"`` headers, newest events first."""

from __future__ import annotations

import datetime as dt
from typing import Any

from dlt.sources.helpers.rest_client.paginators import HeaderLinkPaginator

from cascade_github.rows import parse_time


class EventsPaginator(HeaderLinkPaginator):
    """Follow ``Link: rel="next"`` until a page holds only events from before the partition day.

    GitHub lists events newest first, so every later page is older still.
    """

    def __init__(self, not_before: dt.datetime) -> None:
        super().__init__()
        self.not_before = not_before

    def update_state(self, response: Any, data: list[Any] | None = None) -> None:
        super().update_state(response, data)
        if data and all(parse_time(event["created_at"]) < self.not_before for event in data):
            self._next_reference = None
