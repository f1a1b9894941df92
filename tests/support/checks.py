"""Cancellation in tests: where to cut (a statement hook), and the checks run after it:
every limiter free, no task left behind, the connection pools settled."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import trio
import trio.testing

if TYPE_CHECKING:
    from agent_trio.service import Service
    from tests.support.fake_llm import FakeLlm

__all__ = [
    "assert_limiters_free",
    "cut_at",
    "graph_pool_connections",
    "living_tasks",
    "llm_pool_connections",
    "pending_driver_tasks",
    "upstream_settled",
]


async def living_tasks() -> list[str]:
    """The names of the Trio tasks alive once all are blocked, but the asyncio loop's
    (it watches the driver's sockets: one comes and goes with each pooled connection)."""
    await trio.testing.wait_all_tasks_blocked()
    names: list[str] = []
    todo = [trio.lowlevel.current_root_task()]
    while todo:
        task = todo.pop()
        if not task.name.startswith("trio_asyncio."):
            names.append(task.name)
        todo += [child for nursery in task.child_nurseries for child in nursery.child_tasks]
    return sorted(names)


def pending_driver_tasks(loop: Any) -> list[asyncio.Task[Any]]:
    """The asyncio tasks not yet done on ``loop`` (the graph driver's calls)."""
    return [task for task in asyncio.all_tasks(loop) if not task.done()]


def llm_pool_connections(service: Service) -> list[Any]:
    """The LLM client's pooled connections that are not closed (httpcore's pool)."""
    assert service.llm is not None
    pool = service.llm._upstream._client._transport._pool  # type: ignore[attr-defined]
    return [c for c in pool.connections if not c.is_closed()]


def upstream_settled(service: Service, fake: FakeLlm) -> bool:
    """No request to the fake LLM in flight, and each connection it holds is one the
    server's pool keeps idle."""
    pooled = llm_pool_connections(service)
    return (
        fake.in_flight == 0 and all(c.is_idle() for c in pooled) and fake.connections == len(pooled)
    )


def graph_pool_connections(service: Service) -> int:
    """The connections the graph driver's pool holds (each one a socket that the
    asyncio loop watches with a task of its own)."""
    pool = service.graph._driver._pool
    return sum(len(held) for held in pool.connections.values())


def assert_limiters_free(*limiters: trio.CapacityLimiter) -> None:
    for limiter in (*limiters, trio.to_thread.current_default_thread_limiter()):
        stats = limiter.statistics()
        assert (stats.borrowed_tokens, stats.tasks_waiting) == (0, 0), stats


def cut_at(number: int, cancel: Callable[[], None]) -> Callable[[int, int], None]:
    """A statement hook that calls ``cancel`` at the ``number``-th boundary (from 1)."""
    seen = 0

    def hook(index: int, count: int) -> None:
        nonlocal seen
        seen += 1
        if seen == number:
            cancel()

    return hook
