"""The open chat streams, and telling them that the server is stopping.

A ``/chat/stream`` answer may last as long as its chat (CHAT_TIMEOUT_SECONDS), longer
than the server's graceful period. So when the server begins to stop (SIGTERM or
SIGINT, or the app's lifespan shutting down), :meth:`OpenStreams.close` tells every
open stream at once: each cancels its chat (whose answer is stored ``interrupted``)
and ends with an ``error`` frame, code ``shutting_down``. Plain ``POST /chat``
requests are left to finish within the graceful period. :meth:`OpenStreams.wait_ended`
returns once no stream is open.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import trio

__all__ = ["OpenStreams"]


class OpenStreams:
    """Counts the open streams of one app; :meth:`close` asks them all to end."""

    def __init__(self) -> None:
        self._closing = trio.Event()
        self._open = 0
        self._ended = trio.Event()
        self._ended.set()

    @property
    def open(self) -> int:
        return self._open

    @property
    def closing(self) -> bool:
        return self._closing.is_set()

    def close(self) -> None:
        """Ask every open stream, and every stream opened from now on, to end (idempotent)."""
        self._closing.set()

    async def wait_closing(self) -> None:
        await self._closing.wait()

    async def wait_ended(self) -> None:
        """Return once no stream is open."""
        await self._ended.wait()

    @contextmanager
    def opened(self) -> Iterator[None]:
        """``with streams.opened():`` for as long as one stream is open."""
        if self._open == 0:
            self._ended = trio.Event()
        self._open += 1
        try:
            yield
        finally:
            self._open -= 1
            if self._open == 0:
                self._ended.set()
