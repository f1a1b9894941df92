"""One upstream HTTP API: its typed config, and its httpx client and machinery.

The embedder and the LLM client differ in their URL, key, limits and deadline; the
retry, breaker and per-phase timeout settings are shared, and mapped here once.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

import httpx
from pydantic import SecretStr

from agent_trio.upstream._http import edge_timeout
from agent_trio.upstream._upstream import Upstream, UpstreamTuning

__all__ = ["UpstreamConfig", "open_upstream"]


@dataclass(frozen=True)
class UpstreamConfig:
    """Where one upstream API is, with which key, and how hard and long we may use it.

    A small typed config, as httpx has ``Timeout`` and ``Limits``; the service builds
    it from the ``EMBEDDING_*``/``LLM_*`` and ``UPSTREAM_*`` settings.
    """

    base_url: str
    api_key: SecretStr | None = field(default=None, repr=False)
    #: requests in flight, at most (the adaptive limit moves below it)
    max_concurrency: int = 8
    #: requests started per rolling minute; 0 = unlimited
    rate_limit_per_minute: int = 0
    #: the deadline of one attempt, in seconds
    attempt_timeout: float = 60.0
    max_attempts: int = 5
    #: consecutive failures that open the circuit, and how long it stays open
    breaker_threshold: int = 5
    breaker_cooldown: float = 30.0
    extra_headers: Mapping[str, str] = field(default_factory=dict)


@asynccontextmanager
async def open_upstream(
    name: str,
    config: UpstreamConfig,
    *,
    transport: httpx.AsyncBaseTransport | None = None,
    tuning: UpstreamTuning | None = None,
) -> AsyncIterator[Upstream]:
    """An :class:`Upstream` over its own ``httpx.AsyncClient``, closed when the block ends."""
    headers = {"Accept": "application/json"}
    if config.api_key is not None:
        headers["Authorization"] = f"Bearer {config.api_key.get_secret_value()}"
    headers.update(config.extra_headers)
    async with httpx.AsyncClient(
        base_url=config.base_url,
        headers=headers,
        timeout=edge_timeout(config.attempt_timeout),
        # as many connections as requests may be in flight: our limiter is the limit,
        # never httpx's default pool of 100 below it
        limits=httpx.Limits(
            max_connections=config.max_concurrency,
            max_keepalive_connections=config.max_concurrency,
        ),
        transport=transport,
    ) as client:
        yield Upstream(
            name,
            client,
            max_concurrency=config.max_concurrency,
            rate_limit=config.rate_limit_per_minute,
            max_attempts=config.max_attempts,
            breaker_threshold=config.breaker_threshold,
            breaker_cooldown=config.breaker_cooldown,
            attempt_timeout=config.attempt_timeout,
            tuning=tuning or UpstreamTuning(),
        )
