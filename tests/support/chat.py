"""Helpers of the chat tests: the app on the session's engine, served for real if needed.

Embeddings come from the in-process fake (hashed bag-of-words vectors, 16
dimensions); the LLM, when there is one, is :class:`tests.support.fake_llm.FakeLlm` on
loopback. The sample corpus (``examples/corpus``) is ingested once per database
content (unchanged documents are skipped).
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable, Iterable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from functools import partial
from pathlib import Path
from typing import Any

import trio
from hypercorn.config import Config
from hypercorn.trio import serve
from quart import Quart
from quart.typing import TestClientProtocol
from werkzeug.datastructures import Headers

from agent_trio import Settings
from agent_trio.app import create_app, running_service
from agent_trio.engine import EngineInfo
from agent_trio.service import Service, ServiceHooks
from agent_trio.upstream import Embedder
from tests.support.fake_llm import FakeLlm, Script, Text
from tests.support.service import fake_api_settings, fake_embedder, running

__all__ = [
    "CORPUS",
    "ChatApp",
    "EmbedderOpener",
    "chat_settings",
    "data_frames",
    "limiters_idle",
    "llm_chat",
    "open_chat_app",
    "poll",
    "serve_app",
]

CORPUS = Path(__file__).resolve().parents[2] / "examples" / "corpus"

EmbedderOpener = Callable[[Settings], AbstractAsyncContextManager[Embedder]]


def chat_settings(tmp_path: Path, llm_url: str | None = None, **overrides: Any) -> Settings:
    values: dict[str, Any] = {"llm_provider": "none"}
    if llm_url is not None:
        values |= {
            "llm_provider": "openai",
            "llm_base_url": llm_url,
            "llm_api_key": "sk-test",
            "llm_choice": "fake-model",
            "upstream_max_attempts": 2,
        }
    values |= overrides
    return fake_api_settings(tmp_path, **values)


class ChatApp:
    def __init__(self, app: Quart, client: TestClientProtocol, service: Service) -> None:
        self.app = app
        self.client = client
        self.service = service

    async def post(self, path: str, body: Any) -> tuple[int, Any]:
        response = await self.client.post(path, json=body)
        return response.status_code, await response.get_json()

    async def stream(self, body: Any) -> tuple[int, list[dict[str, Any]]]:
        """POST to /chat/stream, reading the body as it comes (the test client's
        ``post`` reads it only after the app finished, with room for ten parts)."""
        status, _, text = await self.stream_raw(body)
        return status, data_frames(text.splitlines())

    async def stream_raw(self, body: Any) -> tuple[int, Headers, str]:
        headers = {"Content-Type": "application/json"}
        parts: list[bytes] = []
        async with self.client.request("/chat/stream", method="POST", headers=headers) as conn:
            await conn.send(json.dumps(body).encode())
            await conn.send_complete()
            while True:
                try:
                    parts.append(await conn.receive())
                except trio.EndOfChannel:
                    break
            status = conn.status_code  # type: ignore[attr-defined]
            response_headers = conn.headers  # type: ignore[attr-defined]
        return status, response_headers, b"".join(parts).decode()


@asynccontextmanager
async def open_chat_app(
    settings: Settings,
    engine_info: EngineInfo,
    *,
    corpus: bool = True,
    embedder: EmbedderOpener = fake_embedder,
) -> AsyncIterator[ChatApp]:
    app = create_app(settings, hooks=ServiceHooks(engine=engine_info, embedder=embedder))
    async with running(app) as test_app:
        service = running_service(app)
        assert service is not None
        if corpus:
            summary = await service.ingestor.ingest_paths([CORPUS])
            assert not summary.failed, summary.failed
        yield ChatApp(app, test_app.test_client(), service)


@asynccontextmanager
async def serve_app(app: Quart) -> AsyncIterator[str]:
    """Serve ``app`` (already started by the test) with Hypercorn on loopback; yield its
    base URL."""
    config = Config()
    config.bind = ["127.0.0.1:0"]
    config.accesslog = None
    config.graceful_timeout = 1

    async def without_lifespan(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "lifespan":
            await app(scope, receive, send)
            return
        while True:  # the app is already started: say yes to the server's lifespan
            message = await receive()
            await send({"type": message["type"] + ".complete"})
            if message["type"] == "lifespan.shutdown":
                return

    async with trio.open_nursery() as nursery:
        binds = await nursery.start(partial(serve, mode="asgi"), without_lifespan, config)
        yield binds[0]
        nursery.cancel_scope.cancel()


def data_frames(lines: Iterable[str]) -> list[dict[str, Any]]:
    """What a client that reads only ``data:`` lines sees: one object per frame."""
    return [json.loads(line[len("data:") :]) for line in lines if line.startswith("data:")]


def limiters_idle(service: Service) -> bool:
    return all(s.borrowed == 0 and s.waiting == 0 for s in service.limiter_statistics().values())


@asynccontextmanager
async def llm_chat(
    engine_info: EngineInfo,
    tmp_path: Path,
    script: Script,
    *,
    embedder: EmbedderOpener = fake_embedder,
    **settings: Any,
) -> AsyncIterator[tuple[ChatApp, FakeLlm]]:
    """The chat app with the corpus, its LLM the fake on loopback answering ``script``;
    ``embedder`` opens its embedder (by default on a fake embeddings API of its own)."""
    fake = FakeLlm([Text("{}")])  # what ingestion's extraction gets, if it asks
    async with trio.open_nursery() as nursery:
        url = await nursery.start(fake.serve)
        config = chat_settings(tmp_path, url, **settings)
        async with open_chat_app(config, engine_info, embedder=embedder) as app:
            fake.requests.clear()
            fake.script = script
            yield app, fake
        nursery.cancel_scope.cancel()


async def poll(condition: Callable[[], Any], *, within: float = 10.0) -> None:
    """Wait, in steps of 10 ms, for ``condition()`` to hold; fail after ``within`` s."""
    with trio.fail_after(within):
        while True:
            if await _value(condition()):
                return
            await trio.sleep(0.01)


async def _value(value: Any) -> Any:
    return await value if hasattr(value, "__await__") else value
