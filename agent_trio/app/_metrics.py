"""Prometheus metrics: one registry per app, never the process-global one.

Most values are read when ``/metrics`` is scraped, from the running service's own
statistics (limiters, waits, upstream counters, Trio tasks); a few are counted as
events happen: HTTP requests, chats by outcome, open streams, graph calls (the
app hooks the gateway when the service starts: :meth:`Metrics.attach`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import trio
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, ProcessCollector
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from agent_trio.service import Service
from agent_trio.upstream import EmbedderStats, UpstreamStats

__all__ = ["CHAT_OUTCOMES", "Metrics"]

#: how a chat ended: answered, the client left (or the server stopped), an error or
#: its deadline, or refused a slot (503, CHAT_MAX_CONCURRENCY)
CHAT_OUTCOMES = ("complete", "interrupted", "failed", "rejected")
#: graph calls take milliseconds to tens of seconds
_GRAPH_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)


class _LimiterCollector(Collector):
    """Each limiter's tokens and waits, and whether it is suspected of a leak."""

    def __init__(self, get_service: Callable[[], Service | None]) -> None:
        self._get_service = get_service

    def collect(self) -> Iterator[Metric]:
        service = self._get_service()
        yield from _limiter_tokens(service)
        yield from _limiter_waits(service)
        yield from _leak_watch(service)


def _limiter_tokens(service: Service | None) -> Iterator[Metric]:
    labels = ["limiter"]
    borrowed = GaugeMetricFamily(
        "agent_trio_limiter_borrowed", "Tokens in use per limiter", labels=labels
    )
    total = GaugeMetricFamily(
        "agent_trio_limiter_total", "Tokens available per limiter", labels=labels
    )
    waiting = GaugeMetricFamily(
        "agent_trio_limiter_waiting", "Tasks waiting per limiter", labels=labels
    )
    if service is not None:
        for name, stats in service.limiter_statistics().items():
            borrowed.add_metric([name], stats.borrowed)
            total.add_metric([name], stats.total)
            waiting.add_metric([name], stats.waiting)
    yield from (borrowed, total, waiting)


def _limiter_waits(service: Service | None) -> Iterator[Metric]:
    acquired = CounterMetricFamily(
        "agent_trio_limiter_acquisitions",
        "Tokens taken per limiter (<upstream>_rate: starts let through by the rate limiter)",
        labels=["limiter"],
    )
    waited = CounterMetricFamily(
        "agent_trio_limiter_wait_seconds",
        "Seconds spent waiting for a token, per limiter",
        labels=["limiter"],
    )
    if service is not None:
        for name, waits in service.limiter_waits().items():
            acquired.add_metric([name], waits.count)
            waited.add_metric([name], waits.seconds)
    yield from (acquired, waited)


def _leak_watch(service: Service | None) -> Iterator[Metric]:
    suspected = GaugeMetricFamily(
        "agent_trio_limiter_leak_suspected",
        "1 while a limiter lends more tokens than its operations in flight hold",
        labels=["limiter"],
    )
    in_flight = GaugeMetricFamily(
        "agent_trio_operations_in_flight",
        "Chats, streams, ingestions, graph calls and upstream attempts in flight",
        labels=["kind"],
    )
    if service is not None:
        suspects = {s.limiter for s in service.leaks.suspects}
        for name in service.leaks.checked():
            suspected.add_metric([name], float(name in suspects))
        for kind, count in service.operations_in_flight().items():
            in_flight.add_metric([kind], count)
    yield from (suspected, in_flight)


class _TaskCollector(Collector):
    """Live Trio tasks, counted at scrape time by walking the tree from the root task."""

    def collect(self) -> Iterator[GaugeMetricFamily]:
        tasks = GaugeMetricFamily("agent_trio_trio_tasks", "Trio tasks alive in this process")
        try:
            root = trio.lowlevel.current_root_task()
        except RuntimeError:  # not in a Trio run (a scrape from outside one)
            root = None
        if root is not None:
            count = 0
            todo = [root]
            while todo:
                task = todo.pop()
                count += 1
                for nursery in task.child_nurseries:
                    todo.extend(nursery.child_tasks)
            tasks.add_metric([], count)
        yield tasks


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
        rate_limit = GaugeMetricFamily(
            "agent_trio_upstream_rate_limit",
            "Requests this instance may start per rolling minute (adapted; absent: unlimited)",
            labels=labels,
        )
        rate_in_window = GaugeMetricFamily(
            "agent_trio_upstream_rate_in_window",
            "Requests started in the rolling minute (and places reserved in it)",
            labels=labels,
        )
        rate_waiting = GaugeMetricFamily(
            "agent_trio_upstream_rate_waiting",
            "Requests waiting for a place in the rolling minute",
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
                rate = stats.rate
                if rate.limit is not None:
                    per_minute = rate.limit * 60.0 / rate.period_seconds
                    rate_limit.add_metric([name], per_minute)
                rate_in_window.add_metric([name], rate.in_window + rate.pending)
                rate_waiting.add_metric([name], rate.waiting)
        yield from (attempts, failures, retries, gave_up, refused, breaker, concurrency)
        yield from (rate_limit, rate_in_window, rate_waiting, texts)


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
        self.chats = Counter(
            "agent_trio_chats",
            "Chats (POST /chat and /chat/stream) by how they ended",
            ["outcome"],
            registry=self.registry,
        )
        for outcome in CHAT_OUTCOMES:
            self.chats.labels(outcome)
        self.streams_open = Gauge(
            "agent_trio_sse_streams_open",
            "Chat streams whose body is being sent",
            registry=self.registry,
        )
        self.graph_calls = Histogram(
            "agent_trio_graph_call_seconds",
            "Graph calls (query, transaction, ping), the wait for a slot included",
            ["operation"],
            buckets=_GRAPH_BUCKETS,
            registry=self.registry,
        )
        self.graph_errors = Counter(
            "agent_trio_graph_errors",
            "Graph calls that failed, by kind (cancelled: the caller gave up)",
            ["operation", "kind"],
            registry=self.registry,
        )
        ProcessCollector(registry=self.registry)
        self.registry.register(_LimiterCollector(get_service))
        self.registry.register(_UpstreamCollector(get_service))
        self.registry.register(_TaskCollector())

    def attach(self, service: Service) -> None:
        """Count the graph calls of ``service`` (once it is running)."""
        service.graph.on_call = self._graph_call

    def _graph_call(self, operation: str, seconds: float, failure: str | None) -> None:
        self.graph_calls.labels(operation).observe(seconds)
        if failure is not None:
            self.graph_errors.labels(operation, failure).inc()
