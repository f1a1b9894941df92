"""One upstream HTTP API opened from the settings: its httpx client and its machinery.

The embedder and the LLM client differ in their URL, key, limits and deadline; the
retry, breaker and per-phase timeout settings are shared, and mapped here once.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager

import httpx
from pydantic import SecretStr

from agent_trio._settings import Settings
from agent_trio.upstream._http import edge_timeout
from agent_trio.upstream._upstream import Upstream, UpstreamTuning

__all__ = ["open_upstream"]


@asynccontextmanager
async def open_upstream(
    name: str,
    settings: Settings,
    *,
    base_url: str,
    api_key: SecretStr | None,
    max_concurrency: int,
    rate_limit: int,
    attempt_timeout: float,
    extra_headers: Mapping[str, str] | None = None,
    transport: httpx.AsyncBaseTransport | None = None,
    tuning: UpstreamTuning | None = None,
) -> AsyncIterator[Upstream]:
    """An :class:`Upstream` over its own ``httpx.AsyncClient``, closed when the block ends."""
    headers = {"Accept": "application/json"}
    if api_key is not None:
        headers["Authorization"] = f"Bearer {api_key.get_secret_value()}"
    headers.update(extra_headers or {})
    async with httpx.AsyncClient(
        base_url=base_url,
        headers=headers,
        timeout=edge_timeout(attempt_timeout),
        transport=transport,
    ) as client:
        yield Upstream(
            name,
            client,
            max_concurrency=max_concurrency,
            rate_limit=rate_limit,
            max_attempts=settings.upstream_max_attempts,
            breaker_threshold=settings.upstream_breaker_threshold,
            breaker_cooldown=settings.upstream_breaker_cooldown_seconds,
            attempt_timeout=attempt_timeout,
            tuning=tuning or UpstreamTuning(),
        )
