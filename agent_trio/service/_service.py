"""The service: the root of every resource.

:func:`open_service` opens, in order, the embedded engine (when ``NEO4J_URI`` is
unset), a trio-asyncio loop, the neo4j driver (verified), the httpx clients, the
extraction workers (no process until ingestion keeps coming) and the named
limiters, and closes them in reverse order on exit. Each resource is opened with
``async with`` and closes itself, shielded, under its own deadline, so a failure
in one close step does not skip the others: the ``async with`` blocks around it
still exit. :func:`serve_service` is the long-running task form
that a nursery starts: it reports the :class:`Service` through ``task_status``
only once everything is ready.
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

import httpx
import trio
import trio_asyncio

from agent_trio._errors import AgentTrioError, leaf_errors
from agent_trio._limiter_stats import LimiterStats
from agent_trio._settings import Settings
from agent_trio._version import __version__
from agent_trio._waits import WaitStats, WaitTally
from agent_trio.engine import EngineInfo
from agent_trio.extract import ExtractionWorkers, extractor_for, open_extraction_workers
from agent_trio.graph import (
    Dialect,
    GraphGateway,
    GraphTarget,
    KnowledgeStore,
    SessionStore,
    make_dialect,
    open_graph,
)
from agent_trio.ingest import Ingestor
from agent_trio.search import Searcher
from agent_trio.service._configs import embedding_config, llm_config
from agent_trio.service._engine import engine_or_external, warm_imports
from agent_trio.service._leaks import InFlight, LeakWatch
from agent_trio.upstream import Embedder, LlmClient, open_embedder, open_llm

__all__ = ["LimiterStats", "Service", "ServiceHooks", "open_service", "serve_service"]

log = logging.getLogger("agent_trio.service")
T = TypeVar("T")

EmbedderOpener = Callable[[Settings], AbstractAsyncContextManager[Embedder]]
LlmOpener = Callable[[Settings], AbstractAsyncContextManager[LlmClient | None]]


def _open_configured_embedder(settings: Settings) -> AbstractAsyncContextManager[Embedder]:
    return open_embedder(embedding_config(settings))


def _open_configured_llm(settings: Settings) -> AbstractAsyncContextManager[LlmClient | None]:
    return open_llm(llm_config(settings))


@dataclass(frozen=True)
class ServiceHooks:
    """What a caller may inject instead of the defaults (tests, benchmarks).

    ``engine``: an embedded engine that is already running (tests share one per
    session); ``embedder``/``llm``: openers used instead of the configured
    providers (fakes of third-party APIs only).
    """

    engine: EngineInfo | None = None
    embedder: EmbedderOpener | None = None
    llm: LlmOpener | None = None


@dataclass
class Service:
    """Everything a request needs, owned by the task that opened it."""

    settings: Settings
    graph: GraphGateway
    embedder: Embedder
    llm: LlmClient | None
    http: httpx.AsyncClient
    knowledge: KnowledgeStore
    searcher: Searcher
    ingestor: Ingestor
    limiters: dict[str, trio.CapacityLimiter]
    engine: EngineInfo | None
    sessions: SessionStore
    extraction: ExtractionWorkers
    started_at: float = field(default_factory=time.monotonic)
    #: waits for the limiters the service hands out itself (``chat``)
    waits: WaitTally = field(default_factory=WaitTally)
    #: chats, streams and ingestions in flight (their owners register them)
    in_flight: InFlight = field(default_factory=InFlight)
    leaks: LeakWatch = field(init=False, repr=False)
    _stop: trio.Event = field(default_factory=trio.Event, repr=False)

    def __post_init__(self) -> None:
        self.leaks = LeakWatch(
            self._borrowed, self.accounted_tokens, grace=self.settings.leak_check_grace
        )

    @property
    def version(self) -> str:
        return __version__

    def uptime_seconds(self) -> float:
        return time.monotonic() - self.started_at

    def request_stop(self) -> None:
        """Ask :func:`serve_service` to close everything and return."""
        self._stop.set()

    def limiter_statistics(self) -> dict[str, LimiterStats]:
        """Each limiter the service uses, by name, as it is now."""
        return {name: LimiterStats.of(limiter) for name, limiter in self.limiters.items()}

    def operations_in_flight(self) -> dict[str, int]:
        """Chats, streams, ingestions, graph calls and upstream attempts in flight."""
        out = self.in_flight.counts()
        out["graph_call"] = self.graph.calls_in_flight
        for name, attempts in self._upstream_attempts().items():
            out[f"{name}_attempt"] = attempts
        return out

    def accounted_tokens(self) -> dict[str, int]:
        """For each limiter, the most tokens the operations in flight can hold now
        (see ``_leaks``)."""
        ops = self.in_flight.counts()
        graph_calls = self.graph.calls_in_flight
        out = {
            "chat": ops["chat"] + ops["stream"],
            "graph": graph_calls,
            "graph_health": graph_calls,
            "graph_store": graph_calls,
            "write": graph_calls,
            "extraction": self.extraction.jobs_in_flight,
        }
        out.update(self._upstream_attempts())
        return {name: count for name, count in out.items() if name in self.limiters}

    def _upstream_attempts(self) -> dict[str, int]:
        out = {"embedding": self.embedder.statistics().attempts_in_flight}
        if self.llm is not None:
            out["llm"] = self.llm.statistics().attempts_in_flight
        return out

    def _borrowed(self) -> dict[str, int]:
        return {name: stats.borrowed for name, stats in self.limiter_statistics().items()}

    def limiter_waits(self) -> dict[str, WaitStats]:
        """For each limiter, and each upstream's rate limiter (``<upstream>_rate``):
        acquisitions so far and the seconds they waited in all."""
        out: dict[str, WaitStats] = {}
        for name, limiter in self.limiters.items():
            if name in ("embedding", "llm"):
                continue  # the clients tally their own, below
            out[name] = self.graph.waits.of(limiter) if name != "chat" else self.waits.of(limiter)
        clients = [("embedding", self.embedder.statistics().waits)]
        if self.llm is not None:
            clients.append(("llm", self.llm.statistics().waits))
        for name, waits in clients:
            if "limiter" in waits:
                out[name] = waits["limiter"]
            if "rate" in waits:
                out[f"{name}_rate"] = waits["rate"]
        return out


def _graph_target(settings: Settings, engine: EngineInfo | None) -> GraphTarget:
    if engine is not None:
        return GraphTarget(engine.bolt_uri, engine.user, engine.password, engine.database)
    assert settings.neo4j_uri is not None
    password = settings.neo4j_password.get_secret_value() if settings.neo4j_password else ""
    return GraphTarget(settings.neo4j_uri, settings.neo4j_user, password, settings.neo4j_database)


async def _ingest_on_start(service: Service, paths: list[Path]) -> None:
    """INGEST_ON_START: ingest these paths once, in the background; never fatal.

    Every :class:`Exception` is logged and the service stays up: our own errors in
    one line each, anything else with its traceback. A cancellation, like any other
    exception that is not an :class:`Exception` (``KeyboardInterrupt``), passes.
    """
    summary = None
    try:
        with service.in_flight.track("ingestion"):
            summary = await service.ingestor.ingest_paths(paths)
    except* AgentTrioError as group:
        for exc in leaf_errors(group):
            log.error("INGEST_ON_START failed: %s", exc)
    except* Exception as group:
        log.error("INGEST_ON_START failed unexpectedly", exc_info=group)
    if summary is None:
        return
    log.info(
        "INGEST_ON_START: %d documents written, %d unchanged, %d failed (%d chunks)",
        summary.documents,
        summary.skipped,
        len(summary.failed),
        summary.chunks,
    )
    for source, reason in summary.failed:
        log.warning("INGEST_ON_START could not ingest %s: %s", source, reason)


def _dialect(settings: Settings, engine: EngineInfo | None, http: httpx.AsyncClient) -> Dialect:
    """The embedded engine's dialect, or GRAPH_DIALECT's for a server of its own; an
    ArcadeDB server has its schema made over its HTTP API (ARCADEDB_HTTP_URL)."""
    if engine is None and settings.graph_dialect == "neo4j":
        return make_dialect("neo4j")
    target = _graph_target(settings, engine)
    return make_dialect(
        "arcadedb",
        http=http,
        http_url=engine.http_url if engine is not None else settings.arcadedb_http_url,
        database=target.database,
        user=target.user,
        password=target.password,
    )


@asynccontextmanager
async def open_service(
    settings: Settings, *, hooks: ServiceHooks | None = None
) -> AsyncIterator[Service]:
    """Open every resource of the service; close all of them on exit."""
    hooks = hooks or ServiceHooks()
    limiters = {"graph": trio.CapacityLimiter(settings.graph_max_concurrency)}
    open_emb = hooks.embedder or _open_configured_embedder
    open_chat_llm = hooks.llm or _open_configured_llm
    async with (
        warm_imports(settings if hooks.embedder is None else None),
        engine_or_external(settings, hooks.engine) as engine,
        trio_asyncio.open_loop() as loop,
        open_graph(
            _graph_target(settings, engine),
            loop=loop,
            limiter=limiters["graph"],
            query_timeout=settings.graph_query_timeout_seconds,
        ) as graph,
        httpx.AsyncClient(timeout=httpx.Timeout(10.0, read=60.0)) as http,
        open_emb(settings) as embedder,
        open_chat_llm(settings) as llm,
        open_extraction_workers() as extraction,
    ):
        limiters["embedding"] = embedder.limiter
        if llm is not None:
            limiters["llm"] = llm.limiter
        limiters["chat"] = trio.CapacityLimiter(settings.chat_max_concurrency)
        limiters["extraction"] = extraction.limiter
        knowledge = KnowledgeStore(
            graph, _dialect(settings, engine, http), dimensions=embedder.dimensions
        )
        limiters["write"] = knowledge.write_limiter
        limiters["graph_health"] = graph.health_limiter
        limiters["graph_store"] = graph.store_limiter
        await knowledge.ensure_schema()
        sessions = SessionStore(graph, knowledge.dialect, ttl=settings.session_ttl_seconds)
        await sessions.ensure_schema()
        service = Service(
            settings=settings,
            graph=graph,
            embedder=embedder,
            llm=llm,
            http=http,
            knowledge=knowledge,
            searcher=Searcher(knowledge, embedder),
            ingestor=Ingestor(
                knowledge,
                embedder,
                extractor_for(settings, llm, workers=extraction),
                chunk_size=settings.chunk_size,
                chunk_overlap=settings.chunk_overlap,
            ),
            limiters=limiters,
            engine=engine,
            sessions=sessions,
            extraction=extraction,
        )
        log.info(
            "service ready: graph %s (%s), embedder %s/%s, llm %s",
            "embedded" if engine else settings.neo4j_uri,
            settings.graph_dialect,
            embedder.provider,
            embedder.model,
            llm.model if llm else "none (extractive answers)",
        )
        async with trio.open_nursery() as background:
            await background.start(service.leaks.run, settings.leak_check_interval_seconds)
            if settings.ingest_on_start_paths:
                background.start_soon(_ingest_on_start, service, settings.ingest_on_start_paths)
            try:
                yield service
            finally:
                background.cancel_scope.cancel()
    log.info("service closed")


async def serve_service(
    settings: Settings,
    *,
    hooks: ServiceHooks | None = None,
    task_status: trio.TaskStatus[Service] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Run the service until :meth:`Service.request_stop` or cancellation."""
    async with open_service(settings, hooks=hooks) as service:
        task_status.started(service)
        await service._stop.wait()
