"""The service task: opens everything, closes everything, in order, whatever fails."""

from __future__ import annotations

import asyncio
from contextlib import AbstractAsyncContextManager
from functools import partial
from pathlib import Path
from typing import Any

import pytest
import trio
import trio.testing
from prometheus_client import generate_latest

from agent_trio import GraphUnavailable, ResourceClosed, Settings
from agent_trio.app._metrics import Metrics
from agent_trio.document import document_id_for
from agent_trio.engine import EngineInfo
from agent_trio.ingest import Ingestor
from agent_trio.service import (
    LimiterStats,
    ServiceHooks,
    embedding_config,
    health_report,
    open_service,
    serve_service,
)
from agent_trio.upstream import Embedder, open_embedder
from tests.support.checks import assert_limiters_free, living_tasks
from tests.support.fake_embeddings import FakeEmbeddings
from tests.support.service import fake_api_settings, fake_embedder, pid_alive

pytestmark = pytest.mark.engine


async def test_open_service_with_a_running_engine(engine_info: EngineInfo, tmp_path: Path) -> None:
    settings = fake_api_settings(tmp_path)
    tasks_before = trio.lowlevel.current_statistics().tasks_living
    hooks = ServiceHooks(engine=engine_info, embedder=fake_embedder)
    async with open_service(settings, hooks=hooks) as service:
        await service.graph.ping()
        assert set(service.limiters) == {
            "graph",
            "graph_health",
            "graph_store",
            "write",
            "embedding",
            "chat",
            "extraction",
        }
        assert service.limiters["chat"].total_tokens == settings.chat_max_concurrency
        vectors = await service.embedder.embed(["alpha", "beta"])
        assert [len(v) for v in vectors] == [16, 16]
        graph, embedder, http = service.graph, service.embedder, service.http
    assert graph.closed
    assert http.is_closed
    with pytest.raises(ResourceClosed):
        await graph.ping()
    with pytest.raises(ResourceClosed):
        await embedder.embed(["gamma"])
    assert trio.lowlevel.current_statistics().tasks_living == tasks_before


async def test_a_close_step_that_hangs_is_cut_by_its_deadline_and_the_rest_close(
    engine_info: EngineInfo, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The driver's close never returns (a peer that does not answer): the gateway's
    shielded close gives up at its deadline, and the steps after it still run."""
    hooks = ServiceHooks(engine=engine_info, embedder=fake_embedder)
    hung: list[str] = []
    with trio.fail_after(60):
        async with open_service(fake_api_settings(tmp_path), hooks=hooks) as service:
            graph, http, loop = service.graph, service.http, graph_loop(service)
            driver = graph._driver
            close = driver.close

            async def hang_then_close() -> None:
                try:
                    await asyncio.sleep(3600)
                except asyncio.CancelledError:
                    hung.append("cut")
                    await close()  # the real close, so no socket is left behind
                    raise

            driver.close = hang_then_close  # type: ignore[method-assign]
    assert hung == ["cut"]
    assert "closing the graph driver took longer" in caplog.text
    assert graph.closed
    assert http.is_closed  # closed before the graph
    assert loop.is_closed()  # closed after it


async def test_a_cancelled_service_still_closes_everything(
    engine_info: EngineInfo, tmp_path: Path
) -> None:
    """Cancelled while a graph query and an embedding request are in flight: every
    resource closes, every limiter is free, no task is left."""
    gate = trio.Event()  # never set: the embedding request waits until cancelled
    fake = FakeEmbeddings(gate=gate)

    def embedder(settings: Settings) -> AbstractAsyncContextManager[Embedder]:
        return open_embedder(embedding_config(settings), transport=fake.transport())

    hooks = ServiceHooks(engine=engine_info, embedder=embedder)
    tasks = await living_tasks()
    with trio.fail_after(60), trio.CancelScope() as scope:
        async with open_service(fake_api_settings(tmp_path), hooks=hooks) as service:
            graph, http, emb, loop = (
                service.graph,
                service.http,
                service.embedder,
                graph_loop(service),
            )
            limiters = list(service.limiters.values())
            async with trio.open_nursery() as nursery:
                nursery.start_soon(graph.query, "UNWIND range(1, 300) AS a RETURN count(*) AS c")
                nursery.start_soon(emb.embed, ["held at the API"])
                await trio.testing.wait_all_tasks_blocked()
                assert fake.in_flight == 1
                scope.cancel()
    assert scope.cancelled_caught
    assert graph.closed
    assert http.is_closed
    assert loop.is_closed()
    with pytest.raises(ResourceClosed):
        await emb.embed(["after"])
    assert_limiters_free(*limiters)
    assert await living_tasks() == tasks


def graph_loop(service: Any) -> Any:
    """The trio-asyncio loop the service's graph driver runs on."""
    return service.graph._loop


async def test_graph_down_at_startup_fails_fast(tmp_path: Path) -> None:
    with trio.socket.socket() as sock:  # a port with nothing listening
        await sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    settings = fake_api_settings(tmp_path, neo4j_uri=f"bolt://127.0.0.1:{port}", neo4j_password="x")
    with trio.fail_after(30), pytest.RaisesGroup(GraphUnavailable, flatten_subgroups=True):
        async with open_service(settings, hooks=ServiceHooks(embedder=fake_embedder)):
            pytest.fail("the service must not start without its graph")


@pytest.mark.slow
async def test_serve_service_owns_the_embedded_engine(tmp_path: Path) -> None:
    settings = fake_api_settings(tmp_path, engine_stop_grace_seconds=5)
    hooks = ServiceHooks(embedder=fake_embedder)
    with trio.fail_after(90):
        async with trio.open_nursery() as nursery:
            service = await nursery.start(partial(serve_service, settings, hooks=hooks))
            assert service.engine is not None
            pid = service.engine.pid
            assert pid_alive(pid)
            await service.graph.ping()
            stop_requested = trio.current_time()
            service.request_stop()
    assert trio.current_time() - stop_requested < 10
    assert not pid_alive(pid)
    assert service.graph.closed


async def test_ingest_on_start_runs_in_the_background(
    engine_info: EngineInfo, tmp_path: Path
) -> None:
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    (corpus / "a.md").write_text("# Alpha\n\nAlpha Corp makes anvils in Springfield.\n")
    (corpus / "b.txt").write_text("Beta Ltd was founded on 3 March 2021 by Ann Lee.\n")
    (corpus / "bad.md").write_text("---\ntitle: [unclosed\n---\nbody\n")
    settings = fake_api_settings(tmp_path, ingest_on_start=f"{corpus}")
    hooks = ServiceHooks(engine=engine_info, embedder=fake_embedder)
    ids = [document_id_for(str(corpus / name)) for name in ("a.md", "b.txt", "bad.md")]
    async with open_service(settings, hooks=hooks) as service:
        get = service.knowledge.get_document
        with trio.fail_after(30):
            while await get(ids[0]) is None or await get(ids[1]) is None:  # noqa: ASYNC110
                await trio.sleep(0.1)
        alpha = await get(ids[0])
        assert alpha is not None
        assert alpha.title == "Alpha"
        assert alpha.chunks
        assert await get(ids[2]) is None  # reported and skipped, not fatal


async def test_health_answers_while_every_graph_slot_is_held(
    engine_info: EngineInfo, tmp_path: Path
) -> None:
    # Three slow queries hold every slot of the graph limiter, each on a connection
    # of its own, until told to finish; /health's graph check still gets through.
    settings = fake_api_settings(tmp_path, graph_max_concurrency=3)
    hooks = ServiceHooks(engine=engine_info, embedder=fake_embedder)
    async with open_service(settings, hooks=hooks) as service:
        gateway, limiter = service.graph, service.limiters["graph"]
        release = asyncio.Event()
        holding: list[object] = []

        async def slow_query() -> None:  # asyncio, on the gateway's loop
            async with gateway._driver.session(database=gateway.database) as session:
                tx = await session.begin_transaction()
                await tx.run("RETURN 1")
                holding.append(tx)
                await release.wait()
                await tx.rollback()

        async def set_release() -> None:
            release.set()

        async with trio.open_nursery() as nursery:
            for _ in range(3):
                nursery.start_soon(gateway._call, lambda _call: slow_query())
            with trio.fail_after(30):
                while len(holding) < 3:  # noqa: ASYNC110 - waiting for the engine's answers
                    await trio.sleep(0.01)
            assert limiter.statistics().borrowed_tokens == 3
            with trio.move_on_after(0.5) as queued:  # an ordinary query waits for a slot
                await gateway.query("RETURN 1 AS ok")
            assert queued.cancelled_caught
            report = await health_report(service)
            assert report["checks"]["graph"]["status"] == "ok", report["checks"]["graph"]
            assert report["checks"]["graph"]["detail"] == "RETURN 1 answered"
            assert report["limiters"]["graph"]["borrowed"] == 3
            await gateway._loop.run_aio_coroutine(set_release())
        assert limiter.statistics().borrowed_tokens == 0
        assert gateway.health_limiter.statistics().borrowed_tokens == 0


async def test_ingest_on_start_is_never_fatal(
    engine_info: EngineInfo,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    # not only our own errors: a bug in the pipeline is logged, and the service stays up
    async def broken(self: Ingestor, paths: object, **kwargs: object) -> None:
        raise RuntimeError("a bug in the pipeline")

    monkeypatch.setattr(Ingestor, "ingest_paths", broken)
    settings = fake_api_settings(tmp_path, ingest_on_start=str(tmp_path))
    hooks = ServiceHooks(engine=engine_info, embedder=fake_embedder)
    async with open_service(settings, hooks=hooks) as service:
        with trio.fail_after(30):
            while "INGEST_ON_START failed unexpectedly" not in caplog.text:  # noqa: ASYNC110
                await trio.sleep(0.01)
        await service.graph.ping()  # still serving
    assert "RuntimeError: a bug in the pipeline" in caplog.text


async def test_metrics_and_health_list_every_limiter_the_service_uses(
    engine_info: EngineInfo, tmp_path: Path
) -> None:
    hooks = ServiceHooks(engine=engine_info, embedder=fake_embedder)
    async with open_service(fake_api_settings(tmp_path), hooks=hooks) as service:
        assert service.limiters["write"] is service.knowledge.write_limiter
        metrics = Metrics(lambda: service)
        async with service.knowledge.write_limiter:  # a replacement in progress
            stats = service.limiter_statistics()
            text = generate_latest(metrics.registry).decode()
            report = await health_report(service)
        assert stats["write"] == LimiterStats(borrowed=1, total=1, waiting=0)
        assert 'agent_trio_limiter_borrowed{limiter="write"} 1.0' in text
        for name in service.limiters:
            assert f'agent_trio_limiter_total{{limiter="{name}"}}' in text
        assert report["limiters"]["write"] == {"borrowed": 1, "total": 1, "waiting": 0}
        assert set(report["limiters"]) == set(service.limiters)
