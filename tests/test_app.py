"""The HTTP layer: /health, /metrics, JSON errors, auth, CORS, through the test client."""

from __future__ import annotations

import os
import signal
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager
from functools import partial
from pathlib import Path

import httpx
import pytest
import trio
from quart.typing import TestClientProtocol as Client

from agent_trio import Settings
from agent_trio.app import create_app, running_service
from agent_trio.engine import EngineInfo
from agent_trio.service import ServiceHooks, embedding_config
from agent_trio.upstream import Embedder, open_embedder
from tests.support.fake_embeddings import FakeEmbeddings
from tests.support.metrics import sample_value
from tests.support.service import (
    LIFESPAN_DEADLINE,
    fake_api_settings,
    fake_embedder,
    pid_alive,
    running,
)

pytestmark = pytest.mark.engine


@pytest.fixture
async def client(engine_info: EngineInfo, tmp_path: Path) -> AsyncIterator[Client]:
    app = create_app(
        fake_api_settings(tmp_path, api_key="s3cret", cors_origins="http://ui.test"),
        hooks=ServiceHooks(engine=engine_info, embedder=fake_embedder),
    )
    async with running(app) as test_app:
        yield test_app.test_client()


AUTH = {"Authorization": "Bearer s3cret"}


async def test_health_is_healthy_with_the_graph_up(client: Client) -> None:
    response = await client.get("/health")
    assert response.status_code == 200
    body = await response.get_json()
    assert body["status"] == "healthy"
    assert body["checks"]["graph"]["status"] == "ok"
    assert body["checks"]["graph"]["latency_ms"] >= 0
    assert body["checks"]["embedder"]["status"] == "ok"
    assert body["checks"]["embedder"]["provider"] == "openai"
    assert body["checks"]["llm"]["provider"] == "none"
    assert body["uptime_seconds"] >= 0
    assert body["version"]
    text = str(body)
    assert "s3cret" not in text


async def test_health_reports_each_limiter_as_it_is_used(
    engine_info: EngineInfo, tmp_path: Path
) -> None:
    settings = fake_api_settings(tmp_path, chat_max_concurrency=3)
    app = create_app(settings, hooks=ServiceHooks(engine=engine_info, embedder=fake_embedder))
    async with running(app) as test_app:
        client = test_app.test_client()
        limiters = running_service(app).limiters
        idle = (await (await client.get("/health")).get_json())["limiters"]
        assert idle["chat"] == {"borrowed": 0, "total": 3, "waiting": 0}
        # hold a slot of the embedding and chat limiters: /health must count them
        async with limiters["embedding"], limiters["chat"]:
            busy = (await (await client.get("/health")).get_json())["limiters"]
        assert busy["chat"]["borrowed"] == 1
        assert busy["embedding"]["borrowed"] == 1
        assert busy["embedding"]["total"] == idle["embedding"]["total"]
        after = (await (await client.get("/health")).get_json())["limiters"]
        assert after["chat"]["borrowed"] == after["embedding"]["borrowed"] == 0


async def test_metrics_expose_limiters_and_requests(client: Client) -> None:
    await client.get("/health")
    response = await client.get("/metrics")
    assert response.status_code == 200
    text = (await response.get_data()).decode()
    assert 'agent_trio_limiter_total{limiter="graph"}' in text
    assert 'agent_trio_http_requests_total{method="GET",route="/health",status="200"}' in text


async def test_metrics_expose_each_upstream_s_attempts_failures_and_breaker(
    engine_info: EngineInfo, tmp_path: Path
) -> None:
    settings = fake_api_settings(tmp_path)
    assert settings.embedding_dimensions is not None

    async def first_fails(number: int, request: httpx.Request) -> httpx.Response | None:
        if number == 0:
            return httpx.Response(503, json={"error": {"message": "warming up"}})
        return None

    fake = FakeEmbeddings(dimensions=settings.embedding_dimensions, script=first_fails)

    def embedder(settings: Settings) -> AbstractAsyncContextManager[Embedder]:
        return open_embedder(embedding_config(settings), transport=fake.transport())

    app = create_app(settings, hooks=ServiceHooks(engine=engine_info, embedder=embedder))
    async with running(app) as test_app:
        client = test_app.test_client()
        search = await client.post("/search/vector", json={"query": "turbines"})
        assert search.status_code == 200
        text = (await (await client.get("/metrics")).get_data()).decode()

    value = partial(sample_value, text)

    assert value('agent_trio_upstream_attempts_total{upstream="embedding"}') == 2
    assert (
        value('agent_trio_upstream_failures_total{kind="server_errors",upstream="embedding"}') == 1
    )
    assert value('agent_trio_upstream_failures_total{kind="throttled",upstream="embedding"}') == 0
    assert value('agent_trio_upstream_retries_total{upstream="embedding"}') == 1
    assert value('agent_trio_upstream_gave_up_total{upstream="embedding"}') == 0
    assert value('agent_trio_upstream_breaker_state{state="closed",upstream="embedding"}') == 1
    assert value('agent_trio_upstream_breaker_state{state="open",upstream="embedding"}') == 0
    assert value('agent_trio_upstream_concurrency{upstream="embedding"}') == 3
    assert value('agent_trio_embedding_texts_total{provider="openai"}') == 1
    assert 'upstream="llm"' not in text  # no LLM configured


async def test_api_key_is_required_except_for_health_and_metrics(
    client: Client,
) -> None:
    response = await client.get("/openapi.json")
    assert response.status_code == 401
    body = await response.get_json()
    assert body["error"]["code"] == "unauthorized"
    wrong = await client.get("/openapi.json", headers={"Authorization": "Bearer nope"})
    assert wrong.status_code == 401
    ok = await client.get("/openapi.json", headers=AUTH)
    assert ok.status_code == 200
    assert "/health" in (await ok.get_json())["paths"]


async def test_errors_are_json(client: Client) -> None:
    missing = await client.get("/no/such/route", headers=AUTH)
    assert missing.status_code == 404
    assert (await missing.get_json())["error"]["code"] == "not_found"
    wrong_method = await client.delete("/health")
    assert wrong_method.status_code == 405
    assert (await wrong_method.get_json())["error"]["code"] == "method_not_allowed"


async def test_cors_allow_list(client: Client) -> None:
    allowed = await client.get("/health", headers={"Origin": "http://ui.test"})
    assert allowed.headers.get("Access-Control-Allow-Origin") == "http://ui.test"
    assert allowed.headers["Access-Control-Expose-Headers"].lower() == "x-request-id"
    other = await client.get("/health", headers={"Origin": "http://evil.test"})
    assert "Access-Control-Allow-Origin" not in other.headers


async def test_no_cors_headers_when_unset(engine_info: EngineInfo, tmp_path: Path) -> None:
    app = create_app(
        fake_api_settings(tmp_path),
        hooks=ServiceHooks(engine=engine_info, embedder=fake_embedder),
    )
    async with running(app) as test_app:
        response = await test_app.test_client().get("/health", headers={"Origin": "http://a"})
        assert response.status_code == 200
        assert "Access-Control-Allow-Origin" not in response.headers


@pytest.mark.slow
async def test_health_turns_503_when_the_engine_dies(tmp_path: Path) -> None:
    app = create_app(fake_api_settings(tmp_path), hooks=ServiceHooks(embedder=fake_embedder))
    # a bound against a hang: this app starts its own engine (a JVM)
    with trio.fail_after(3 * LIFESPAN_DEADLINE):
        async with running(app) as test_app:
            client = test_app.test_client()
            healthy = await client.get("/health")
            assert healthy.status_code == 200
            body = await healthy.get_json()
            assert body["checks"]["graph"]["status"] == "ok"
            service = running_service(app)
            assert service is not None
            assert service.engine is not None
            pid = service.engine.pid
            os.kill(pid, signal.SIGKILL)
            while pid_alive(pid):  # noqa: ASYNC110 - polling another process
                await trio.sleep(0.05)
            started = trio.current_time()
            down = await client.get("/health")
            assert trio.current_time() - started < 5
            assert down.status_code == 503
            assert int(down.headers["Retry-After"]) >= 1
            body = await down.get_json()
            assert body["status"] == "unhealthy"
            assert body["checks"]["graph"]["status"] == "error"
            bolt_port = service.engine.bolt_uri.rsplit(":", 1)[1]
            assert bolt_port not in body["checks"]["graph"]["detail"]  # the driver's text is logged
            assert body["limiters"]["graph"]["borrowed"] == 0
            search = await client.post("/search/hybrid", json={"query": "anything"})
            assert search.status_code == 503  # never an empty 200 that hides the outage
            error = (await search.get_json())["error"]
            assert error["code"] == "graph_unavailable"
            port = running_service(app).engine.bolt_uri.rsplit(":", 1)[1]
            assert port not in error["message"]
            assert search.headers["Retry-After"]
