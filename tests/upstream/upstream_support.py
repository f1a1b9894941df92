"""Fake upstream APIs on ``httpx.MockTransport`` for the upstream tests (virtual time).

The handlers run in the calling task, so ``trio.sleep`` inside them is a request's
latency on the test's (autojump) clock, and a counter inside them sees exactly how
many requests are in flight at the upstream.
"""

from __future__ import annotations

import json
import math
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import httpx
import trio

from agent_trio import Settings, load_settings
from agent_trio.upstream import UpstreamTuning

DIMS = 8


def vector_for(text: str, dims: int = DIMS) -> list[float]:
    """A deterministic, never-zero vector that identifies its text."""
    seed = sum(ord(c) * (i + 1) for i, c in enumerate(text)) or 1
    return [math.sin(seed * (k + 1)) + 2.0 for k in range(dims)]


def embedding_settings(**overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "embedding_provider": "openai",
        "embedding_base_url": "http://embeddings.test/v1",
        "embedding_model": "test-embedder",
        "embedding_dimensions": DIMS,
        "embedding_max_concurrency": 3,
        "embedding_rate_limit_per_minute": 0,
        "embedding_batch_size": 10,
        "embedding_request_timeout_seconds": 10.0,
        "upstream_max_attempts": 4,
        "upstream_breaker_threshold": 5,
        "upstream_breaker_cooldown_seconds": 30.0,
    }
    values.update(overrides)
    return load_settings(_env_file=None, **values)


def llm_settings(**overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "llm_provider": "openai",
        "llm_base_url": "http://llm.test/v1",
        "llm_api_key": "sk-test",
        "llm_choice": "test-model",
        "llm_max_concurrency": 2,
        "llm_request_timeout_seconds": 10.0,
        "upstream_max_attempts": 3,
    }
    values.update(overrides)
    return load_settings(_env_file=None, **values)


def quick_tuning(**overrides: Any) -> UpstreamTuning:
    """Exact times in tests: no margin on the window, no jitter."""
    values: dict[str, Any] = {"rate_margin": 0.0, "backoff_jitter": 0.0, "backoff_initial": 1.0}
    values.update(overrides)
    return UpstreamTuning(**values)


@dataclass
class FakeEmbeddings:
    """An embeddings API with latency, a hidden concurrency/rate limit and scripted faults.

    ``script`` answers request number ``n`` (from 0) instead of the normal path when it
    returns a response; raising from it simulates a transport error.
    """

    latency: float = 0.0
    concurrency_limit: int | None = None
    rate_limit: int | None = None
    rate_period: float = 60.0
    retry_after_on_rate: bool = True
    script: Callable[[int, httpx.Request], Awaitable[httpx.Response | None]] | None = None
    in_flight: int = 0
    max_in_flight: int = 0
    requests: list[tuple[float, list[str]]] = field(default_factory=list)
    statuses: list[int] = field(default_factory=list)
    accepted: list[float] = field(default_factory=list)

    def transport(self) -> httpx.MockTransport:
        return httpx.MockTransport(self.handle)

    async def handle(self, request: httpx.Request) -> httpx.Response:
        number = len(self.requests)
        body = json.loads(request.content)
        self.requests.append((trio.current_time(), body.get("input", [])))
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            response = await self._answer(number, request, body)
        finally:
            self.in_flight -= 1
        self.statuses.append(response.status_code)
        return response

    async def _answer(self, number: int, request: httpx.Request, body: Any) -> httpx.Response:
        if self.script is not None:
            scripted = await self.script(number, request)
            if scripted is not None:
                return scripted
        if self.concurrency_limit is not None and self.in_flight > self.concurrency_limit:
            return httpx.Response(429, json={"error": {"message": "too many concurrent"}})
        now = trio.current_time()
        if self.rate_limit is not None:
            window = [t for t in self.accepted if t > now - self.rate_period]
            if len(window) >= self.rate_limit:
                wait = window[0] + self.rate_period - now
                headers = {"Retry-After": f"{wait:.3f}"} if self.retry_after_on_rate else {}
                return httpx.Response(429, headers=headers, json={"error": {"message": "rate"}})
            self.accepted.append(now)
        await trio.sleep(self.latency)
        texts = body["input"]
        data = [{"index": i, "embedding": vector_for(t)} for i, t in enumerate(texts)]
        return httpx.Response(200, json={"data": data, "model": body["model"]})


def live_tasks() -> set[trio.lowlevel.Task]:
    """Every task of this run (to check that nothing is left behind)."""
    found: set[trio.lowlevel.Task] = set()
    pending = [trio.lowlevel.current_root_task()]
    while pending:
        task = pending.pop()
        if task is None:
            continue
        found.add(task)
        for nursery in task.child_nurseries:
            pending.extend(nursery.child_tasks)
    return found
