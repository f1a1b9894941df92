"""The server as a real process: ``hypercorn --config hypercorn.toml agent_trio.app:app``
or ``python -m agent_trio serve``, on the embedded default unless told otherwise, with
its output in ``server.log``; and the environment that points it at the loopback fakes.
"""

from __future__ import annotations

import os
import sys
import tomllib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import trio

__all__ = [
    "GRACEFUL_TIMEOUT",
    "HANG",
    "fakes_env",
    "free_port",
    "poll_health",
    "running_server",
    "server_command",
    "wait_healthy",
]

ROOT = Path(__file__).resolve().parent.parent.parent
HYPERCORN = Path(sys.executable).parent / "hypercorn"
GRACEFUL_TIMEOUT = float(tomllib.loads((ROOT / "hypercorn.toml").read_text())["graceful_timeout"])
#: bounds against a hang (a start, an exit): never a measure of speed
HANG = 180


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


#: what a shell does for ``cmd &``: the job starts with SIGINT and SIGQUIT ignored
#: (ignored signals stay ignored across ``exec``)
_AS_BACKGROUND_JOB = ["sh", "-c", "trap '' INT QUIT; exec \"$@\"", "background-job"]


def server_command(launcher: str, port: int) -> list[str]:
    bind = f"127.0.0.1:{port}"
    config = str(ROOT / "hypercorn.toml")
    if launcher == "hypercorn":
        return [str(HYPERCORN), "--config", config, "--bind", bind, "agent_trio.app:app"]
    return [sys.executable, "-m", "agent_trio", "serve", "--config", config, "--bind", bind]


@asynccontextmanager
async def running_server(
    tmp_path: Path,
    *,
    background_job: bool = False,
    launcher: str = "hypercorn",
    env: dict[str, str] | None = None,
) -> AsyncIterator[tuple[trio.Process, str, Path]]:
    """A server on the embedded default, plus ``env``; its output goes to ``server.log``."""
    data_dir = tmp_path / "data"
    port = free_port()
    environment = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("NEO4J_", "ARCADEDB_", "LLM_", "EMBEDDING_"))
    }
    environment |= {"AGENT_DATA_DIR": str(data_dir), **(env or {})}
    command = server_command(launcher, port)
    with (tmp_path / "server.log").open("ab") as log:
        process = await trio.lowlevel.open_process(
            [*_AS_BACKGROUND_JOB, *command] if background_job else command,
            cwd=tmp_path,  # away from the repository's own .env and data
            env=environment,
            stdout=log,
            stderr=log,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        yield process, url, data_dir
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()


async def wait_healthy(url: str, process: trio.Process) -> dict[str, Any]:
    """Poll /health until it answers; the connection is closed again afterwards."""
    with trio.fail_after(HANG):
        async with httpx.AsyncClient() as client:
            return await poll_health(client, url, process)


async def poll_health(client: httpx.AsyncClient, url: str, process: trio.Process) -> dict[str, Any]:
    while True:
        assert process.returncode is None, "the server exited during startup"
        try:
            response = await client.get(f"{url}/health")
        except httpx.TransportError:
            await trio.sleep(0.25)
            continue
        body: dict[str, Any] = response.json()
        assert response.status_code == 200, body
        return body


def fakes_env(llm_url: str, embeddings_url: str) -> dict[str, str]:
    """The server's LLM and embeddings APIs: the fakes on loopback (16 dimensions)."""
    return {
        "LLM_PROVIDER": "openai",
        "LLM_BASE_URL": llm_url,
        "LLM_API_KEY": "sk-test",
        "LLM_CHOICE": "fake-model",
        "EMBEDDING_PROVIDER": "openai",
        "EMBEDDING_BASE_URL": embeddings_url,
        "EMBEDDING_MODEL": "fake",
        "EMBEDDING_DIMENSIONS": "16",
        "EMBEDDING_RATE_LIMIT_PER_MINUTE": "0",
    }
