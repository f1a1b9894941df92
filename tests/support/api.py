"""The app on the session's engine, through the test client or a real Hypercorn server."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from functools import partial
from pathlib import Path
from typing import Any

import trio
from hypercorn.config import Config
from hypercorn.trio import serve
from quart import Quart
from quart_trio.testing import TrioTestApp

from agent_trio.app import create_app, running_service
from agent_trio.engine import EngineInfo
from agent_trio.service import ServiceHooks
from tests.support.service import LIFESPAN_DEADLINE, fake_api_settings, fake_embedder, running


def make_app(engine_info: EngineInfo, tmp_path: Path, **settings: Any) -> Quart:
    """The app with the fake embedding API, on the session's engine."""
    return create_app(
        fake_api_settings(tmp_path, **settings),
        hooks=ServiceHooks(engine=engine_info, embedder=fake_embedder),
    )


@asynccontextmanager
async def started_empty(app: Quart) -> AsyncIterator[TrioTestApp]:
    """The app started (its graph emptied), for the test client."""
    async with running(app) as test_app:
        await running_service(app).knowledge.delete_all()
        yield test_app


@asynccontextmanager
async def served(app: Quart) -> AsyncIterator[str]:
    """The app served by Hypercorn on a free loopback port; yields its base URL."""
    config = Config()
    config.bind = ["127.0.0.1:0"]
    config.startup_timeout = LIFESPAN_DEADLINE
    config.accesslog = None
    stop = trio.Event()
    async with trio.open_nursery() as nursery:
        binds: list[str] = await nursery.start(
            partial(serve, app, config, shutdown_trigger=stop.wait)  # type: ignore[arg-type]
        )
        await running_service(app).knowledge.delete_all()
        try:
            yield binds[0]
        finally:
            stop.set()
