"""The frameworks' floor for held streams, for bench/chat.py.

    .venv/bin/python bench/_floor_server.py --bind 127.0.0.1:PORT [--upstream URL]

A Quart-Trio app on Hypercorn's Trio worker (hypercorn.toml, in this process, as
``python -m agent_trio serve`` runs it), with nothing of agent-trio's, and two routes:

* ``GET /ping`` answers ``{"ok": true}`` (the bench waits for it);
* ``POST /hold`` answers with a server-sent event stream that sends one frame, then
  holds until the client leaves. With ``--upstream``, the stream then also opens a
  streamed ``POST {URL}/chat/completions`` with httpx and waits for its answer,
  which the bench's fake LLM holds: the least that a held chat stream keeps open,
  one stream in and one out.

The bench measures the RSS that a thousand of these add, beside the chat streams'.
SIGTERM or SIGINT stops it.
"""

from __future__ import annotations

import argparse
import signal
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import trio
from hypercorn.config import Config
from hypercorn.trio import serve
from quart import Response
from quart_trio import QuartTrio

ROOT = Path(__file__).resolve().parent.parent
FRAME = b'event: session\ndata: {"type": "session"}\n\n'


def create_app(upstream: str | None) -> QuartTrio:
    app = QuartTrio("floor")
    clients: dict[str, httpx.AsyncClient] = {}

    @app.before_serving
    async def _open() -> None:
        limits = httpx.Limits(max_connections=None, max_keepalive_connections=None)
        clients["llm"] = httpx.AsyncClient(limits=limits, timeout=None)

    @app.after_serving
    async def _close() -> None:
        await clients["llm"].aclose()

    @app.get("/ping")
    async def ping() -> dict[str, Any]:
        return {"ok": True}

    @app.post("/hold")
    async def hold() -> Response:
        async def body() -> AsyncIterator[bytes]:
            yield FRAME
            if upstream is not None:
                payload = {
                    "model": "floor",
                    "stream": True,
                    "messages": [{"role": "user", "content": "hi"}],
                }
                url = f"{upstream}/chat/completions"
                async with clients["llm"].stream("POST", url, json=payload) as answer:
                    async for _ in answer.aiter_raw():
                        break
            await trio.sleep_forever()

        response = Response(body(), content_type="text/event-stream")
        response.timeout = None
        return response

    return app


async def main(bind: str, upstream: str | None) -> None:
    config = Config.from_toml(ROOT / "hypercorn.toml")
    config.bind = [bind]
    with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:

        async def stop() -> None:
            async for _ in signals:
                return

        await serve(create_app(upstream), config, shutdown_trigger=stop)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bind", required=True)
    parser.add_argument("--upstream")
    args = parser.parse_args()
    trio.run(main, args.bind, args.upstream)
