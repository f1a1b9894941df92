"""Prometheus metrics: one registry per app, never the process-global one."""

from __future__ import annotations

from collections.abc import Callable, Iterator

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from agent_trio.service import Service
from agent_trio.upstream import EmbedderStats, UpstreamStats

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
                borrowed.add_metric([name], stats.borrowed)
                total.add_metric([name], stats.total)
                waiting.add_metric([name], stats.waiting)
        yield borrowed
        yield total
        yield waiting


#: attempt failures an upstream client counts, by kind (see ``upstream/_failures.py``)
_FAILURE_KINDS = (
    "throttled",
    "server_errors",
    "timeouts",
    "network_errors",
    "rejected",
    "protocol_errors",
)
_BREAKER_STATES = ("closed", "open", "half_open")


class _UpstreamCollector(Collector):
    """The upstream clients' own counters and states, read at each scrape."""

    def __init__(self, get_service: Callable[[], Service | None]) -> None:
        self._get_service = get_service

    def collect(self) -> Iterator[Metric]:
        labels = ["upstream"]
        attempts = CounterMetricFamily(
            "agent_trio_upstream_attempts", "Requests sent to an upstream API", labels=labels
        )
        failures = CounterMetricFamily(
            "agent_trio_upstream_failures",
            "Failed attempts by kind (throttled: 429)",
            labels=["upstream", "kind"],
        )
        retries = CounterMetricFamily(
            "agent_trio_upstream_retries", "Failed attempts that were retried", labels=labels
        )
        gave_up = CounterMetricFamily(
            "agent_trio_upstream_gave_up", "Calls that failed after retrying", labels=labels
        )
        refused = CounterMetricFamily(
            "agent_trio_upstream_circuit_refusals",
            "Calls failed at once by an open circuit breaker",
            labels=labels,
        )
        breaker = GaugeMetricFamily(
            "agent_trio_upstream_breaker_state",
            "1 for the circuit breaker's current state",
            labels=["upstream", "state"],
        )
        concurrency = GaugeMetricFamily(
            "agent_trio_upstream_concurrency",
            "Requests allowed in flight now (adapted to the upstream's answers)",
            labels=labels,
        )
        texts = CounterMetricFamily(
            "agent_trio_embedding_texts", "Texts embedded", labels=["provider"]
        )
        service = self._get_service()
        if service is not None:
            embedding = service.embedder.statistics()
            texts.add_metric(
                [service.embedder.provider], embedding.counters.get("texts_embedded", 0)
            )
            for name, stats in _upstreams(service, embedding):
                counters = stats.counters
                attempts.add_metric([name], counters["attempts"])
                retries.add_metric([name], counters["retries"])
                gave_up.add_metric([name], counters["gave_up"])
                refused.add_metric([name], counters["circuit_open"])
                for kind in _FAILURE_KINDS:
                    failures.add_metric([name, kind], counters[kind])
                for state in _BREAKER_STATES:
                    breaker.add_metric([name, state], float(stats.breaker.state == state))
                concurrency.add_metric([name], stats.limiter.total)
        yield from (attempts, failures, retries, gave_up, refused, breaker, concurrency, texts)


def _upstreams(service: Service, embedding: EmbedderStats) -> Iterator[tuple[str, UpstreamStats]]:
    """The HTTP upstreams in use (the local embedder is none): name and statistics."""
    if embedding.upstream is not None:
        yield "embedding", embedding.upstream
    if service.llm is not None:
        yield "llm", service.llm.statistics()


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
        self.registry.register(_UpstreamCollector(get_service))
