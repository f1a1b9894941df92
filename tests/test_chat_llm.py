"""Chats with an LLM: the fake OpenAI-compatible server on loopback, the real engine."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import trio

from agent_trio.agent import TOOL_SPECS, history_messages
from agent_trio.app import _chat_routes
from agent_trio.engine import EngineInfo
from agent_trio.graph import ChunkHit, MessageRow
from agent_trio.search import Searcher
from tests.support.chat import (
    ChatApp,
    chat_settings,
    data_frames,
    limiters_idle,
    llm_chat,
    open_chat_app,
    poll,
    serve_app,
)
from tests.support.fake_llm import Calls, Fail, FakeLlm, Hold, Reply, Script, Text

pytestmark = pytest.mark.engine


def tools_then(text: str, *calls: tuple[str, dict[str, Any]]) -> Script:
    """Every turn that offers tools gets ``calls``; one without tools gets ``text``."""

    def reply(number: int, body: dict[str, Any]) -> Reply:
        last = body["messages"][-1]["role"]
        return Calls(list(calls)) if body.get("tools") and last == "user" else Text(text, pieces=3)

    return reply


async def statuses(app: ChatApp, session_id: str) -> list[tuple[str, str]]:
    messages = await app.service.sessions.messages(session_id)
    return [(m.role, m.status) for m in messages]


async def test_tool_round_trip(engine_info: EngineInfo, tmp_path: Path) -> None:
    args = {"query": "Corvid Kestrel acquisition", "limit": 3}
    script = tools_then("Corvid Systems acquired Kestrel Labs.", ("hybrid_search", args))
    async with llm_chat(engine_info, tmp_path, script) as (app, fake):
        status, body = await app.post("/chat", {"message": "Who bought Kestrel?"})
        assert status == 200, body
        assert body["message"] == "Corvid Systems acquired Kestrel Labs."
        assert body["tools_used"] == [
            {"tool_name": "hybrid_search", "args": args, "tool_call_id": "call_0"}
        ]
        assert body["sources"]
        assert len(body["sources"]) <= 3
        assert body["metadata"] == {"search_type": "hybrid", "model": "fake-model", "steps": 2}
        first, second = fake.requests
        assert first["model"] == "fake-model"
        assert [t["function"]["name"] for t in first["tools"]] == [t.name for t in TOOL_SPECS]
        assert first["messages"][0]["role"] == "system"
        assert "search" in first["messages"][0]["content"]
        assert first["messages"][-1] == {"role": "user", "content": "Who bought Kestrel?"}
        assistant, tool = second["messages"][-2:]
        assert assistant["tool_calls"][0]["function"]["name"] == "hybrid_search"
        assert tool["role"] == "tool"
        assert tool["tool_call_id"] == "call_0"
        results = json.loads(tool["content"])["results"]
        assert [r["chunk_id"] for r in results] == [s["chunk_id"] for s in body["sources"]]
        assert await statuses(app, body["session_id"]) == [
            ("user", "complete"),
            ("assistant", "complete"),
        ]
        assert limiters_idle(app.service)


async def test_bad_tool_calls_go_back_to_the_model_as_errors(
    engine_info: EngineInfo, tmp_path: Path
) -> None:
    script = tools_then(
        "Sorry.",
        ("vector_search", {"query": "x", "limit": "many"}),
        ("no_such_tool", {}),
        ("get_document", {"document_id": "missing"}),
    )
    async with llm_chat(engine_info, tmp_path, script) as (app, fake):
        status, body = await app.post("/chat", {"message": "hm"})
        assert status == 200, body
        results = [m for m in fake.requests[1]["messages"] if m["role"] == "tool"]
        errors = [json.loads(m["content"])["error"] for m in results]
        assert "limit" in errors[0]
        assert "no tool named 'no_such_tool'" in errors[1]
        assert "no document with id 'missing'" in errors[2]
        assert [t["tool_name"] for t in body["tools_used"]] == [
            "vector_search",
            "no_such_tool",
            "get_document",
        ]


async def test_tool_calls_of_one_turn_run_concurrently(
    engine_info: EngineInfo, tmp_path: Path
) -> None:
    calls = [("hybrid_search", {"query": q}) for q in ("Corvid", "Kestrel", "Halvorsen")]
    async with llm_chat(engine_info, tmp_path, tools_then("Done.", *calls)) as (app, fake):
        inside = 0
        most = 0
        all_in = trio.Event()
        real = app.service.searcher

        class Gate(Searcher):
            """Each search waits until all three are inside: only concurrency lets it end."""

            async def hybrid(
                self, query: str, limit: int = 10, text_weight: float | None = None
            ) -> list[ChunkHit]:
                nonlocal inside, most
                inside += 1
                most = max(most, inside)
                if inside == len(calls):
                    all_in.set()
                with trio.fail_after(10):
                    await all_in.wait()
                try:
                    return await real.hybrid(query, limit, text_weight)
                finally:
                    inside -= 1

        app.service.searcher = Gate(app.service.knowledge, app.service.embedder)
        status, body = await app.post("/chat", {"message": "three at once"})
        assert status == 200, body
        assert most == 3
        tool_messages = [m for m in fake.requests[1]["messages"] if m["role"] == "tool"]
        assert [m["tool_call_id"] for m in tool_messages] == ["call_0", "call_1", "call_2"]
        assert all("results" in json.loads(m["content"]) for m in tool_messages)


async def test_at_most_agent_max_steps_turns(engine_info: EngineInfo, tmp_path: Path) -> None:
    def always_tools(number: int, body: dict[str, Any]) -> Reply:
        if body.get("tools"):
            return Calls([("list_documents", {"limit": 2})])
        return Text("Here is what I found.")

    async with llm_chat(engine_info, tmp_path, always_tools, agent_max_steps=3) as (app, fake):
        status, body = await app.post("/chat", {"message": "loop forever"})
        assert status == 200, body
        assert len(fake.requests) == 3
        assert [bool(r.get("tools")) for r in fake.requests] == [True, True, False]
        assert body["message"] == "Here is what I found."
        assert body["metadata"]["steps"] == 3
        assert len(body["tools_used"]) == 2


async def test_whole_chat_deadline_is_504_and_the_answer_failed(
    engine_info: EngineInfo, tmp_path: Path
) -> None:
    release = trio.Event()
    async with llm_chat(engine_info, tmp_path, [Hold(release)], chat_timeout_seconds=1.0) as (
        app,
        fake,
    ):
        status, body = await app.post("/chat", {"message": "slow", "session_id": "s-slow"})
        assert status == 504, body
        assert body["error"]["code"] == "deadline_exceeded"
        assert await statuses(app, "s-slow") == [("user", "complete"), ("assistant", "failed")]
        await poll(lambda: fake.in_flight == 0)
        assert fake.closed_while_answering  # the upstream request was abandoned, not left open
        assert limiters_idle(app.service)
        release.set()


async def test_upstream_outage_is_503_and_the_breaker_answers_at_once(
    engine_info: EngineInfo, tmp_path: Path
) -> None:
    async with llm_chat(engine_info, tmp_path, [Fail(500)], upstream_breaker_threshold=2) as (
        app,
        fake,
    ):
        response = await app.client.post("/chat", json={"message": "hi", "session_id": "s-down"})
        assert response.status_code == 503
        assert response.headers["Retry-After"]
        error = (await response.get_json())["error"]
        assert error["code"] == "upstream_unavailable"
        assert await statuses(app, "s-down") == [("user", "complete"), ("assistant", "failed")]
        sent = len(fake.requests)
        assert sent == 2  # UPSTREAM_MAX_ATTEMPTS, then the breaker opened
        again = await app.client.post("/chat", json={"message": "again"})
        assert again.status_code == 503
        error = (await again.get_json())["error"]
        assert error["code"] == "upstream_unavailable"
        assert error["message"] == "the llm service is unavailable; try again shortly"
        assert len(fake.requests) == sent  # no request: the breaker is open
        # the breaker's cooldown left (UPSTREAM_BREAKER_COOLDOWN_SECONDS), not the default 5 s
        assert 20 <= int(again.headers["Retry-After"]) <= 30
        stream_status, frames = await app.stream({"message": "and again"})
        assert stream_status == 200
        assert [f["type"] for f in frames] == ["session", "model", "error"]
        assert frames[-1]["code"] == "upstream_unavailable"
        assert frames[-1]["message"] == error["message"]  # as the JSON error says it
        assert frames[-1]["content"] == frames[-1]["message"]
        assert len(fake.requests) == sent
        assert limiters_idle(app.service)


async def test_history_goes_to_the_model_newest_turns(
    engine_info: EngineInfo, tmp_path: Path
) -> None:
    def echo(number: int, body: dict[str, Any]) -> Reply:
        return Text(f"answer {number}")

    async with llm_chat(engine_info, tmp_path, echo) as (app, fake):
        for turn in range(3):
            status, _ = await app.post("/chat", {"message": f"question {turn}", "session_id": "h"})
            assert status == 200
        contents = [(m["role"], m["content"]) for m in fake.requests[2]["messages"][1:]]
        assert contents == [
            ("user", "question 0"),
            ("assistant", "answer 0"),
            ("user", "question 1"),
            ("assistant", "answer 1"),
            ("user", "question 2"),
        ]
        status, _ = await app.post("/chat", {"message": "fresh", "session_id": "other"})
        assert [m["role"] for m in fake.requests[3]["messages"]] == ["system", "user"]


def test_history_keeps_the_newest_turns_within_the_budget() -> None:
    def message(n: int, role: str) -> MessageRow:
        return MessageRow(f"m{n}", "s", role, f"{role} {n:02d}", "complete", (), f"t{n}")  # type: ignore[arg-type]

    newest_first = [message(n, "user" if n % 2 == 0 else "assistant") for n in range(9, -1, -1)]
    four = len("assistant 09") + len("user 08") + len("assistant 07") + len("user 06")
    kept = history_messages(newest_first, budget=four)
    assert [m.content for m in kept] == ["user 06", "assistant 07", "user 08", "assistant 09"]
    assert [m.role for m in kept] == ["user", "assistant", "user", "assistant"]
    kept = history_messages(newest_first, budget=four - 1)
    assert [m.content for m in kept] == ["assistant 07", "user 08", "assistant 09"]
    assert history_messages(newest_first, budget=3) == []


async def test_disconnect_mid_stream_reaches_the_upstream(
    engine_info: EngineInfo, tmp_path: Path
) -> None:
    slow = Text("word " * 400, pieces=400, delay=0.02)  # eight seconds of deltas
    async with (
        llm_chat(engine_info, tmp_path, [slow]) as (app, fake),
        serve_app(app.app) as url,
    ):
        host, port = url.removeprefix("http://").split(":")
        payload = json.dumps({"message": "talk slowly", "session_id": "s-left"}).encode()
        request = (
            f"POST /chat/stream HTTP/1.1\r\nHost: {host}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(payload)}\r\n\r\n"
        ).encode() + payload
        received = b""
        async with await trio.open_tcp_stream(host, int(port)) as client:
            await client.send_all(request)
            while received.count(b'"type": "text"') < 3:  # the answer is streaming
                chunk = await client.receive_some()
                assert chunk, received
                received += chunk
            assert received.startswith(b"HTTP/1.1 200")
        left_at = trio.current_time()
        await poll(lambda: fake.closed_while_answering)
        assert fake.closed_while_answering[0] - left_at <= 0.1
        await poll(lambda: limiters_idle(app.service))
        await poll(lambda: statuses(app, "s-left"))
        await poll(lambda: _has_interrupted_answer(app))
        [_, answer] = await app.service.sessions.messages("s-left")
        assert answer.status == "interrupted"
        assert answer.content.startswith("word word word")
        lines = received.decode().splitlines()
        assert [f["type"] for f in data_frames(lines)[:2]] == ["session", "model"]


async def _has_interrupted_answer(app: ChatApp) -> bool:
    return ("assistant", "interrupted") in await statuses(app, "s-left")


async def test_waiting_for_a_chat_slot_is_bounded_and_cancellable(
    engine_info: EngineInfo, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(_chat_routes, "SLOT_WAIT", 0.5)
    release = trio.Event()
    async with llm_chat(
        engine_info, tmp_path, [Hold(release, Text("first"))], chat_max_concurrency=1
    ) as (app, fake):
        chat = app.service.limiters["chat"]
        results: list[tuple[int, Any]] = []

        async def first() -> None:
            results.append(await app.post("/chat", {"message": "first"}))

        async with trio.open_nursery() as nursery:
            nursery.start_soon(first)
            await fake.wait_until(lambda f: f.in_flight == 1)
            assert chat.statistics().borrowed_tokens == 1
            # a second chat waits for the slot, and its client gives up while it waits
            async with trio.open_nursery() as waiting:
                waiting.start_soon(app.post, "/chat", {"message": "second"})
                await poll(lambda: chat.statistics().tasks_waiting == 1)
                waiting.cancel_scope.cancel()
            assert chat.statistics().tasks_waiting == 0
            assert chat.statistics().borrowed_tokens == 1
            # one that waits longer than SLOT_WAIT is refused
            response = await app.client.post("/chat", json={"message": "third"})
            assert response.status_code == 503
            assert response.headers["Retry-After"] == "1"
            assert (await response.get_json())["error"]["code"] == "overloaded"
            release.set()
        assert results[0][0] == 200
        assert len(fake.requests) == 1  # neither of the others reached the model
        assert limiters_idle(app.service)


async def test_stopping_the_app_ends_an_open_stream_with_shutting_down(
    engine_info: EngineInfo, tmp_path: Path
) -> None:
    held = trio.Event()  # never set: the model's answer stops after its first words
    first = "Held words. "
    fake = FakeLlm([Text(first + "The rest.", pieces=2, pause=held)])
    body = {"message": "Talk until I stop you.", "session_id": "s-stop"}
    text_seen, streamed = trio.Event(), trio.Event()
    received: list[str] = []

    async def stream(app: ChatApp) -> None:
        headers = {"Content-Type": "application/json"}
        async with app.client.request("/chat/stream", method="POST", headers=headers) as conn:
            await conn.send(json.dumps(body).encode())
            await conn.send_complete()
            while True:
                try:
                    received.append((await conn.receive()).decode())
                except trio.EndOfChannel:
                    break
                if '"type": "text"' in "".join(received):
                    text_seen.set()
        streamed.set()

    async with trio.open_nursery() as nursery:
        config = chat_settings(tmp_path, await nursery.start(fake.serve))
        async with open_chat_app(config, engine_info, corpus=False) as app:
            nursery.start_soon(stream, app)  # it outlives the app's lifespan
            with trio.fail_after(30):
                await text_seen.wait()
        with trio.fail_after(30):
            await streamed.wait()
        frames = data_frames("".join(received).splitlines())
        assert [f["type"] for f in frames] == ["session", "model", "text", "error"]
        assert frames[-1]["code"] == "shutting_down"
        assert frames[-1]["content"] == frames[-1]["message"]
        assert fake.closed_while_answering
        async with open_chat_app(config, engine_info, corpus=False) as again:
            messages = await again.service.sessions.messages("s-stop")
        assert [(m.role, m.status, m.content) for m in messages] == [
            ("user", "complete", body["message"]),
            ("assistant", "interrupted", first),
        ]
        nursery.cancel_scope.cancel()
