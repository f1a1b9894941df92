"""Request ids and the request log: one line per request, and the id in every line of it."""

from __future__ import annotations

import io
import json
import logging
import signal
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
import trio

from agent_trio._logs import LogFormat, log_handler
from agent_trio.engine import EngineInfo
from tests.support.chat import ChatApp, chat_settings, llm_chat, open_chat_app
from tests.support.fake_llm import agentic_script
from tests.support.server import HANG, poll_health, running_server

pytestmark = pytest.mark.engine


@contextmanager
def captured(format: LogFormat) -> Iterator[io.StringIO]:
    """What our loggers write at INFO, in ``format``, while the block runs."""
    logger = logging.getLogger("agent_trio")
    stream = io.StringIO()
    handler = log_handler(stream, format=format)
    level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        yield stream
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)


def records(stream: io.StringIO) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


def access(stream: io.StringIO) -> list[dict[str, Any]]:
    return [r for r in records(stream) if r["logger"] == "agent_trio.access"]


async def test_a_sane_request_id_is_kept_and_any_other_replaced(
    engine_info: EngineInfo, tmp_path: Path
) -> None:
    async with open_chat_app(chat_settings(tmp_path), engine_info, corpus=False) as app:
        kept = await app.client.get("/health", headers={"X-Request-ID": "lb-7f3a:0001.x_y"})
        assert kept.headers["X-Request-ID"] == "lb-7f3a:0001.x_y"
        ids = []
        for sent in ("two words", "x" * 129, "naïve", "", None):
            headers = {} if sent is None else {"X-Request-ID": sent}
            response = await app.client.get("/health", headers=headers)
            ids.append(response.headers["X-Request-ID"])
        assert all(len(i) == 32 and int(i, 16) >= 0 for i in ids), ids
        assert len(set(ids)) == len(ids)
        missing = await app.client.get("/no/such/route")
        assert missing.status_code == 404
        assert len(missing.headers["X-Request-ID"]) == 32


async def test_one_json_line_per_request_with_route_status_and_session(
    engine_info: EngineInfo, tmp_path: Path
) -> None:
    async with open_chat_app(chat_settings(tmp_path), engine_info, corpus=False) as app:
        with captured("json") as stream:
            chat = await app.client.post(
                "/chat",
                json={"message": "anything?", "session_id": "s-log"},
                headers={"X-Request-ID": "req-1"},
            )
            assert chat.status_code == 200
            session = await app.client.get("/sessions/s-log")
            assert session.status_code == 200
            missing = await app.client.get("/documents/nope")
            assert missing.status_code == 404
    lines = access(stream)
    assert [(r["method"], r["route"], r["status"]) for r in lines] == [
        ("POST", "/chat", 200),
        ("GET", "/sessions/<string:session_id>", 200),
        ("GET", "/documents/<string:document_id>", 404),
    ]
    assert lines[0]["request_id"] == "req-1"
    assert [r.get("session_id") for r in lines] == ["s-log", "s-log", None]
    assert lines[1]["request_id"] == session.headers["X-Request-ID"]
    assert all(r["duration_ms"] >= 0 and r["level"] == "INFO" for r in lines)
    assert lines[0]["message"].startswith("POST /chat 200 ")


async def test_the_request_id_reaches_lines_logged_by_the_chat_s_tool_tasks(
    engine_info: EngineInfo, tmp_path: Path
) -> None:
    async with llm_chat(engine_info, tmp_path, agentic_script(tool="no_such_tool")) as (app, _):
        with captured("json") as stream:
            status, _body = await chat(app, "req-tools", "s-tools")
            assert status == 200
    [unknown] = [r for r in records(stream) if "unknown tool" in r["message"]]
    assert unknown["logger"] == "agent_trio.agent"
    assert (unknown["request_id"], unknown["session_id"]) == ("req-tools", "s-tools")
    [line] = access(stream)
    assert line["request_id"] == "req-tools"


async def chat(app: ChatApp, request_id: str, session_id: str) -> tuple[int, Any]:
    response = await app.client.post(
        "/chat",
        json={"message": "Who acquired Kestrel Labs?", "session_id": session_id},
        headers={"X-Request-ID": request_id},
    )
    return response.status_code, await response.get_json()


async def test_text_lines_name_the_request_after_the_message(
    engine_info: EngineInfo, tmp_path: Path
) -> None:
    async with open_chat_app(chat_settings(tmp_path), engine_info, corpus=False) as app:
        with captured("text") as stream:
            await app.client.post(
                "/chat",
                json={"message": "anything?", "session_id": "s-text"},
                headers={"X-Request-ID": "req-text"},
            )
    [line] = [x for x in stream.getvalue().splitlines() if "agent_trio.access" in x]
    assert "[INFO] agent_trio.access: POST /chat 200 " in line
    assert line.endswith(" ms [request=req-text session=s-text]")


@pytest.mark.engine
@pytest.mark.slow
@pytest.mark.parametrize("launcher", ["hypercorn", "serve"])
async def test_log_format_json_holds_for_the_whole_process_with_either_launcher(
    tmp_path: Path, launcher: str
) -> None:
    """Every line the server writes is a JSON object, from its start to its exit,
    and the access line carries the request id the client sent."""
    env = {"LOG_FORMAT": "json", "LLM_PROVIDER": "none"}
    async with (
        running_server(tmp_path, launcher=launcher, env=env) as (process, url, _),
        httpx.AsyncClient(timeout=HANG) as client,
    ):
        with trio.fail_after(HANG):
            await poll_health(client, url, process)
            response = await client.get(f"{url}/health", headers={"X-Request-ID": "ops-42"})
        assert response.headers["X-Request-ID"] == "ops-42"
        process.send_signal(signal.SIGTERM)
        with trio.fail_after(HANG):
            assert await process.wait() == 0
    lines = (tmp_path / "server.log").read_text().splitlines()
    objects = [json.loads(line) for line in lines if line.strip()]
    assert all(isinstance(o, dict) and "message" in o for o in objects)
    assert any(o.get("logger", "").startswith("hypercorn") for o in objects)
    tagged = [o for o in objects if o.get("request_id") == "ops-42"]
    assert [(o["method"], o["route"], o["status"]) for o in tagged] == [("GET", "/health", 200)]
