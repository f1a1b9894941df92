"""The embedded engine as the service runs it, and what overlaps with its start."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from functools import partial
from typing import Generic, TypeVar

import trio

from agent_trio._errors import ConfigError, EngineError
from agent_trio._settings import Settings
from agent_trio.engine import EngineInfo, run_embedded_engine
from agent_trio.service._configs import engine_config
from agent_trio.upstream import import_local_model_libraries

__all__ = ["engine_or_external", "warm_imports"]

log = logging.getLogger("agent_trio.service")
T = TypeVar("T")


class _Reported(Generic[T]):
    """A task status that remembers whether ``started`` was called."""

    def __init__(self, inner: trio.TaskStatus[T]) -> None:
        self._inner = inner
        self.reported = False

    def started(self, value: T) -> None:
        self.reported = True
        self._inner.started(value)


async def _run_engine(
    settings: Settings, *, task_status: trio.TaskStatus[EngineInfo] = trio.TASK_STATUS_IGNORED
) -> None:
    """Run the embedded engine; if it dies after it was ready, degrade instead of crashing.

    A failed start is the service's failed start. A death later is logged, and the
    service stays up: /health reports the graph as down (503) and graph routes
    answer 503, rather than the whole server vanishing.
    """
    status = _Reported(task_status)
    try:
        await run_embedded_engine(engine_config(settings), task_status=status)  # type: ignore[arg-type]
    except EngineError as exc:
        if not status.reported:
            raise
        log.error(
            "%s; the graph stays unavailable until the service restarts",
            str(exc).splitlines()[0],
        )
        await trio.sleep_forever()


@asynccontextmanager
async def engine_or_external(
    settings: Settings, given: EngineInfo | None
) -> AsyncIterator[EngineInfo | None]:
    """Start the embedded engine in a nursery we own, unless one is given or not wanted."""
    if given is not None or not settings.embedded_engine:
        yield given
        return
    async with trio.open_nursery() as nursery:
        engine: EngineInfo = await nursery.start(_run_engine, settings)
        try:
            yield engine
        finally:
            nursery.cancel_scope.cancel()  # the engine stops itself, shielded


@asynccontextmanager
async def warm_imports(settings: Settings | None) -> AsyncIterator[None]:
    """Import the local model's libraries in a thread while the engine starts.

    Importing them takes longer than starting the engine; done side by side, the
    embedder finds them imported when its turn comes. Only imports: the model
    itself is loaded, and owned, by the embedder. An import cannot be stopped
    halfway, so a cancelled start waits for it (a few seconds at most) instead of
    leaving a thread importing into a process that is shutting down.
    """
    if settings is None or settings.embedding_provider != "local":
        yield
        return
    async with trio.open_nursery() as nursery:
        nursery.start_soon(partial(trio.to_thread.run_sync, _import_model_libraries))
        yield


def _import_model_libraries() -> None:
    with contextlib.suppress(ConfigError):  # the embedder says what is missing, its own way
        import_local_model_libraries()
