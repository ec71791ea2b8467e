"""What plugins call to reach an API: a ``requests`` session and a dlt REST API source that
follow Cascade's HTTP policy (:mod:`cascade.http`). Light to import: ``requests`` and dlt load
when a source is built, not when an asset module is."""

from __future__ import annotations

from typing import TYPE_CHECKING

from cascade.errors import ConfigurationError
from cascade.http_policy import HttpPolicy

if TYPE_CHECKING:
    import requests
    from dlt.sources import DltSource
    from dlt.sources.rest_api.typing import RESTAPIConfig

    from cascade.context import RunContext


def http_session(base_url: str, *, context: RunContext | None = None) -> requests.Session:
    """A ``requests`` session for ``base_url`` under the run's policy and budget.

    ``context`` defaults to the run being executed (see :func:`cascade.context.current_run`).
    """
    import requests

    from cascade.context import current_run
    from cascade.http import Budget, CascadeHTTPAdapter

    context = context or current_run()
    policy = context.config.http if context is not None else HttpPolicy()
    session = requests.Session()
    adapter = CascadeHTTPAdapter(base_url, policy, Budget.of(context))
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    return session


def rest_api_source(config: RESTAPIConfig, *, context: RunContext | None = None, name: str | None = None) -> DltSource:
    """``dlt.sources.rest_api.rest_api_source`` with Cascade's session: the way plugins call APIs."""
    from dlt.sources.rest_api import rest_api_source as dlt_rest_api_source

    client = dict(config["client"])
    if client.get("session") is not None:
        raise ConfigurationError(
            "rest_api_source: do not pass a 'session'; Cascade supplies one that retries, "
            "honours rate limits and keeps credentials on the base URL's host"
        )
    client["session"] = http_session(str(client["base_url"]), context=context)
    source: DltSource = dlt_rest_api_source({**config, "client": client}, name)  # type: ignore[typeddict-item,arg-type]
    return source
