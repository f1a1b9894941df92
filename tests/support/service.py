"""Opening the service in tests: settings for the fake embeddings API, its opener,
whether a process is still alive, and which engine processes run on a data directory."""

from __future__ import annotations

import os
from contextlib import AbstractAsyncContextManager
from pathlib import Path

import trio
from quart_trio import QuartTrio
from quart_trio.testing import TrioTestApp

from agent_trio import Settings, load_settings
from agent_trio.service import embedding_config
from agent_trio.upstream import Embedder, open_embedder
from tests.support.fake_embeddings import FakeEmbeddings

__all__ = [
    "LIFESPAN_DEADLINE",
    "engine_pids",
    "fake_api_settings",
    "fake_embedder",
    "pid_alive",
    "running",
]


def fake_api_settings(tmp_path: Path, **overrides: object) -> Settings:
    """Settings whose embedding API is the in-process fake (16 dimensions)."""
    values: dict[str, object] = {
        "agent_data_dir": tmp_path / "data",
        "embedding_provider": "openai",
        "embedding_base_url": "http://embeddings.test/v1",
        "embedding_model": "fake",
        "embedding_dimensions": 16,
        "embedding_rate_limit_per_minute": 0,
    }
    values.update(overrides)
    return load_settings(**values)


def fake_embedder(settings: Settings) -> AbstractAsyncContextManager[Embedder]:
    """An embedder opener (``ServiceHooks.embedder``) on the fake embeddings API."""
    assert settings.embedding_dimensions is not None
    fake = FakeEmbeddings(dimensions=settings.embedding_dimensions)
    return open_embedder(embedding_config(settings), transport=fake.transport())


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # a zombie is gone for our purposes, but we reap our children: check state
    try:
        state = Path(f"/proc/{pid}/stat").read_text().split()[2]
    except FileNotFoundError:
        return False
    return state != "Z"


def engine_pids(data_dir: Path) -> list[int]:
    """Java processes whose command line names this data directory."""
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().decode(errors="replace")
        except OSError:
            continue
        if "java" in cmdline and str(data_dir) in cmdline and pid_alive(int(entry.name)):
            pids.append(int(entry.name))
    return pids


async def until_no_engine(data_dir: Path, *, every: float = 0.1) -> None:
    """Poll until no engine runs on ``data_dir`` (it may outlive its server a moment);
    the caller bounds the wait."""
    while engine_pids(data_dir):  # noqa: ASYNC110 - polling another process
        await trio.sleep(every)


#: deadlines of the app's startup and shutdown in tests: bounds against a hang, not
#: measures of speed (Quart's default, 6 s, is shorter than a start on a busy machine)
LIFESPAN_DEADLINE = 120


def running(app: QuartTrio) -> TrioTestApp:
    """``async with running(app) as test_app:`` starts the app's lifespan, and stops it."""
    return TrioTestApp(app, startup_timeout=LIFESPAN_DEADLINE, shutdown_timeout=LIFESPAN_DEADLINE)
