"""/metrics moves when its events happen: chats by outcome, open streams, graph calls and
their errors, waits for every limiter the service uses, the process and its Trio tasks."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import trio
from prometheus_client.parser import text_string_to_metric_families

from agent_trio import GraphQueryError
from agent_trio.app import _chat_routes
from agent_trio.engine import EngineInfo
from tests.support.chat import (
    ChatApp,
    chat_settings,
    limiters_idle,
    llm_chat,
    open_chat_app,
    poll,
    serve_app,
)
from tests.support.fake_llm import Hold, agentic_script

pytestmark = pytest.mark.engine

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


async def scrape(app: ChatApp) -> Samples:
    response = await app.client.get("/metrics")
    assert response.status_code == 200
    text = (await response.get_data()).decode()
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples[(name, frozenset(labels.items()))]


def labelled(samples: Samples, name: str, label: str) -> set[str]:
    return {dict(labels)[label] for (sample, labels) in samples if sample == name}


def chats(samples: Samples) -> dict[str, float]:
    return {
        outcome: value(samples, "agent_trio_chats_total", outcome=outcome)
        for outcome in ("complete", "interrupted", "failed", "rejected")
    }


async def test_a_chat_counts_complete_and_every_limiter_s_waits(
    engine_info: EngineInfo, tmp_path: Path
) -> None:
    async with llm_chat(engine_info, tmp_path, agentic_script()) as (app, _fake):
        await app.client.get("/health")
        before = await scrape(app)
        assert chats(before) == dict.fromkeys(chats(before), 0.0)
        status, body = await app.post("/chat", {"message": "Who acquired Kestrel Labs?"})
        assert status == 200, body
        assert body["tools_used"]  # the tool ran, so the graph and the embedder did
        status, frames = await app.stream({"message": "And when?"})
        assert status == 200
        assert frames[-1]["type"] == "end"
        document = {"source": f"{tmp_path.name}.md", "content": f"Written by {tmp_path.name}."}
        status, body = await app.post("/documents", document)
        assert (status, body["status"]) == (201, "written"), body
        after = await scrape(app)

    assert chats(after) == {"complete": 2, "interrupted": 0, "failed": 0, "rejected": 0}
    assert value(after, "agent_trio_sse_streams_open") == 0
    queries = "agent_trio_graph_call_seconds_count"
    assert value(after, queries, operation="query") > value(before, queries, operation="query")
    # every limiter the service uses, and the upstreams' rate limiters; nothing else
    names = set(app.service.limiters) | {"embedding_rate", "llm_rate"}
    assert labelled(after, "agent_trio_limiter_wait_seconds_total", "limiter") == names
    acquired = "agent_trio_limiter_acquisitions_total"
    assert labelled(after, acquired, "limiter") == names
    for name in ("chat", "graph", "write", "embedding", "embedding_rate", "llm", "llm_rate"):
        assert value(after, acquired, limiter=name) > value(before, acquired, limiter=name), name
    assert value(after, acquired, limiter="graph_health") >= 1  # /health asked
    assert value(after, "process_open_fds") > 0
    assert value(after, "process_resident_memory_bytes") > 0
    assert value(after, "agent_trio_trio_tasks") > 1


async def test_a_client_that_leaves_a_stream_counts_interrupted(
    engine_info: EngineInfo, tmp_path: Path
) -> None:
    # the model never answers: the client leaves while the chat waits for it (leaving
    # while the answer streams is tested in test_chat_llm)
    never = Hold(trio.Event())
    async with (
        llm_chat(engine_info, tmp_path, [never]) as (app, fake),
        serve_app(app.app) as url,
    ):
        host, port = url.removeprefix("http://").split(":")
        payload = json.dumps({"message": "talk slowly"}).encode()
        request = (
            f"POST /chat/stream HTTP/1.1\r\nHost: {host}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(payload)}\r\n\r\n"
        ).encode() + payload
        received = b""
        async with await trio.open_tcp_stream(host, int(port)) as client:
            await client.send_all(request)
            while b'"type": "model"' not in received:  # the stream has begun
                chunk = await client.receive_some()
                assert chunk, received
                received += chunk
            await fake.wait_until(lambda f: f.in_flight == 1)
            streaming = await scrape(app)
        assert value(streaming, "agent_trio_sse_streams_open") == 1

        async def interrupted() -> bool:
            return chats(await scrape(app))["interrupted"] == 1

        await poll(interrupted)
        after = await scrape(app)
        assert chats(after) == {"complete": 0, "interrupted": 1, "failed": 0, "rejected": 0}
        assert value(after, "agent_trio_sse_streams_open") == 0
        await poll(lambda: limiters_idle(app.service))


async def test_a_chat_refused_a_slot_counts_rejected(
    engine_info: EngineInfo, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(_chat_routes, "SLOT_WAIT", 0.05)
    settings = chat_settings(tmp_path, chat_max_concurrency=1)
    async with open_chat_app(settings, engine_info, corpus=False) as app:
        owner = object()
        await app.service.limiters["chat"].acquire_on_behalf_of(owner)
        status, body = await app.post("/chat", {"message": "anyone there?"})
        assert status == 503, body
        stream = await app.client.post("/chat/stream", json={"message": "and now?"})
        assert stream.status_code == 503
        app.service.limiters["chat"].release_on_behalf_of(owner)
        samples = await scrape(app)
    assert chats(samples) == {"complete": 0, "interrupted": 0, "failed": 0, "rejected": 2}


async def test_a_failed_graph_query_counts_by_kind(engine_info: EngineInfo, tmp_path: Path) -> None:
    async with open_chat_app(chat_settings(tmp_path), engine_info, corpus=False) as app:
        errors = "agent_trio_graph_errors_total"
        before = await scrape(app)
        assert (errors, frozenset({("operation", "query"), ("kind", "query")})) not in before
        with pytest.raises(GraphQueryError):
            await app.service.graph.query("THIS IS NOT A QUERY")
        after = await scrape(app)
    assert value(after, errors, operation="query", kind="query") == 1
