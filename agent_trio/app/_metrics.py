"""Prometheus metrics: one registry per app, never the process-global one."""

from __future__ import annotations

from collections.abc import Callable, Iterator

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from agent_trio.service import Service

__all__ = ["Metrics"]


class _LimiterCollector(Collector):
    def __init__(self, get_service: Callable[[], Service | None]) -> None:
        self._get_service = get_service

    def collect(self) -> Iterator[GaugeMetricFamily]:
        service = self._get_service()
        borrowed = GaugeMetricFamily(
            "agent_trio_limiter_borrowed", "Tokens in use per limiter", labels=["limiter"]
        )
        total = GaugeMetricFamily(
            "agent_trio_limiter_total", "Tokens available per limiter", labels=["limiter"]
        )
        waiting = GaugeMetricFamily(
            "agent_trio_limiter_waiting", "Tasks waiting per limiter", labels=["limiter"]
        )
        if service is not None:
            for name, stats in service.limiter_statistics().items():
                borrowed.add_metric([name], stats["borrowed"])
                total.add_metric([name], stats["total"])
                waiting.add_metric([name], stats["waiting"])
        yield borrowed
        yield total
        yield waiting


class Metrics:
    """The metrics of one app."""

    def __init__(self, get_service: Callable[[], Service | None]) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "agent_trio_http_requests",
            "HTTP requests by route and status",
            ["method", "route", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "agent_trio_http_request_seconds",
            "HTTP request latency by route",
            ["method", "route"],
            registry=self.registry,
        )
        self.registry.register(_LimiterCollector(get_service))
