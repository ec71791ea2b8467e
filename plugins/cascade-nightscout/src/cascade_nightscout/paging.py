"""Nightscout's paging: newest first, each page asking for readings older than the last one seen."""

from __future__ import annotations

from typing import Any

from dlt.sources.helpers.rest_client.paginators import BasePaginator

PAGE_SIZE = 1000


class OlderThanPaginator(BasePaginator):
    """Nightscout pages newest-first: ask again for readings older than the oldest one seen."""

    def update_state(self, response: Any, data: list[Any] | None = None) -> None:
        self._oldest = min((row["date"] for row in data or []), default=None)
        self._has_next_page = len(data or []) >= PAGE_SIZE

    def update_request(self, request: Any) -> None:
        request.params["find[date][$lt]"] = self._oldest
