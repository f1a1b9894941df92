"""An embedded engine run by ``trio.run`` in a background thread, for sync fixtures.

The engine's process is spawned from that thread, so the thread must live as long
as the engine (the kernel kills the engine when the thread that started it exits).
"""

from __future__ import annotations

import contextlib
import dataclasses
import threading
import time
from collections.abc import Iterator
from types import TracebackType
from typing import Any

import httpx
import trio

from agent_trio import Settings
from agent_trio.engine import EngineInfo, run_embedded_engine
from agent_trio.service import engine_config

__all__ = ["BackgroundEngine", "own_database"]

#: tries to drop a database the engine is still busy with, half a second apart
DROP_ATTEMPTS = 120


class BackgroundEngine:
    """``with BackgroundEngine(settings) as info:`` starts the engine, and stops it."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._main, name="embedded-engine", daemon=True)
        self._token: trio.lowlevel.TrioToken | None = None
        self._scope: trio.CancelScope | None = None
        self._info: EngineInfo | None = None
        self._error: BaseException | None = None

    def __enter__(self) -> EngineInfo:
        self._thread.start()
        wait = self._settings.engine_start_timeout_seconds + 30
        if not self._ready.wait(wait):
            raise RuntimeError(f"the embedded engine thread did not report within {wait} s")
        if self._info is None:
            self._thread.join()
            raise RuntimeError("the embedded engine did not start") from self._error
        return self._info

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._token is not None and self._scope is not None:
            # RunFinishedError: the engine already ended (its error is raised below)
            with contextlib.suppress(trio.RunFinishedError):
                trio.from_thread.run_sync(self._scope.cancel, trio_token=self._token)
        self._thread.join(self._settings.engine_stop_grace_seconds + 30)
        if self._thread.is_alive():
            raise RuntimeError("the embedded engine thread did not stop")
        if self._error is not None:
            raise RuntimeError("the embedded engine failed while the tests ran") from self._error

    def _main(self) -> None:
        try:
            trio.run(self._serve)
        except BaseException as exc:  # reported by __enter__/__exit__ in the test thread
            self._error = exc
        finally:
            self._ready.set()

    async def _serve(self) -> None:
        self._token = trio.lowlevel.current_trio_token()
        with trio.CancelScope() as self._scope:
            async with trio.open_nursery() as nursery:
                config = engine_config(self._settings)
                self._info = await nursery.start(run_embedded_engine, config)
                self._ready.set()


@contextlib.contextmanager
def own_database(engine: EngineInfo, name: str) -> Iterator[EngineInfo]:
    """A database of its own on a running engine (dropped afterwards).

    Tests whose schema differs (another vector dimension) use one, so that they do
    not depend on which test created the shared database's indexes first.
    """
    auth = (engine.user, engine.password)
    with httpx.Client(auth=auth, timeout=60) as client:

        def command(text: str) -> Any:
            response = client.post(f"{engine.http_url}/api/v1/server", json={"command": text})
            response.raise_for_status()
            return response.json()["result"]

        def drop() -> None:
            # The engine refuses (400) to drop a database while it is still busy with
            # it, e.g. building its vector index after the last write: poll, bounded.
            for _ in range(DROP_ATTEMPTS - 1):
                try:
                    command(f"drop database {name}")
                except httpx.HTTPStatusError as exc:
                    if exc.response.status_code != 400:
                        raise
                    time.sleep(0.5)
                else:
                    return
            command(f"drop database {name}")

        if name in command("list databases"):
            drop()
        command(f"create database {name}")
        try:
            yield dataclasses.replace(engine, database=name)
        finally:
            drop()
