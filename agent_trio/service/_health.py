"""The health report of GET /health: cheap, no search, no LLM call."""

from __future__ import annotations

import dataclasses
import logging
import time
from typing import Any

import trio

from agent_trio._errors import AgentTrioError, GraphQueryError
from agent_trio.service._service import Service
from agent_trio.upstream import BreakerStats

__all__ = ["GRAPH_CHECK_DEADLINE", "health_report"]

log = logging.getLogger("agent_trio.service")

#: the graph check is one trivial query under this deadline
GRAPH_CHECK_DEADLINE = 2.0


async def health_report(service: Service) -> dict[str, Any]:
    """Return the /health body; ``status`` is healthy, degraded or unhealthy."""
    graph = await _check_graph(service)
    embedding = service.embedder.statistics().upstream
    embedder = _check_upstream(
        embedding.breaker if embedding else None, service.settings.summary()["embedder"]
    )
    if service.llm is None:
        llm = {
            "status": "ok",
            "detail": "no LLM configured: extractive answers",
            "provider": "none",
        }
    else:
        llm = _check_upstream(service.llm.statistics().breaker, service.settings.summary()["llm"])
    leaks = _check_leaks(service)
    if graph["status"] != "ok":
        status = "unhealthy"
    elif embedder["status"] != "ok" or llm["status"] != "ok" or leaks["status"] != "ok":
        status = "degraded"
    else:
        status = "healthy"
    return {
        "status": status,
        "version": service.version,
        "uptime_seconds": round(service.uptime_seconds(), 3),
        "checks": {"graph": graph, "embedder": embedder, "llm": llm, "leaks": leaks},
        "limiters": {
            name: dataclasses.asdict(stats) for name, stats in service.limiter_statistics().items()
        },
    }


async def _check_graph(service: Service) -> dict[str, Any]:
    start = time.perf_counter()
    detail = "RETURN 1 answered"
    ok = False
    with trio.move_on_after(GRAPH_CHECK_DEADLINE) as scope:
        try:
            await service.graph.health_ping()
            ok = True
        except GraphQueryError as exc:
            # the driver's own words (addresses, ports) stay in the log: /health is open
            log.warning("health check: the graph database refused RETURN 1: %s", exc)
            detail = "the graph database refused a trivial query"
        except AgentTrioError as exc:
            log.warning("health check: the graph database is unavailable: %s", exc)
            detail = "the graph database cannot be reached"
    if scope.cancelled_caught:
        detail = f"no answer within {GRAPH_CHECK_DEADLINE:.0f} s"
    return {
        "status": "ok" if ok else "error",
        "latency_ms": round((time.perf_counter() - start) * 1000, 2),
        "detail": detail,
        **service.settings.summary()["graph"],
    }


def _check_leaks(service: Service) -> dict[str, Any]:
    suspects = service.leaks.suspects
    if suspects:
        detail = "limiter leak suspected: " + "; ".join(s.describe() for s in suspects)
        return {"status": "error", "detail": detail, "checks": service.leaks.checks}
    detail = "every limiter's tokens are held by operations in flight"
    return {"status": "ok", "detail": detail, "checks": service.leaks.checks}


def _check_upstream(breaker: BreakerStats | None, summary: dict[str, Any]) -> dict[str, Any]:
    """``breaker`` is ``None`` where there is none (a local model): always ok."""
    state = breaker.state if breaker else None
    ok = state in (None, "closed", "half_open")
    detail = "ready" if ok else f"circuit breaker {state}: failing fast"
    return {"status": "ok" if ok else "error", "detail": detail, **summary}
