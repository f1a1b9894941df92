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
    """The open streams of one app (each by its chat's cancel scope); :meth:`close`
    cancels them all, and every stream opened after it at once."""

    def __init__(self) -> None:
        self._closing = False
        self._scopes: set[trio.CancelScope] = set()
        self._ended = trio.Event()
        self._ended.set()

    @property
    def open(self) -> int:
        return len(self._scopes)

    @property
    def closing(self) -> bool:
        return self._closing

    def close(self) -> None:
        """Ask every open stream, and every stream opened from now on, to end (idempotent)."""
        self._closing = True
        for scope in self._scopes:
            scope.cancel()

    async def wait_ended(self) -> None:
        """Return once no stream is open."""
        await self._ended.wait()

    @contextmanager
    def opened(self, scope: trio.CancelScope) -> Iterator[None]:
        """``with streams.opened(scope):`` for as long as one stream is open; ``scope``
        (its chat's) is cancelled when the streams close."""
        if not self._scopes:
            self._ended = trio.Event()
        self._scopes.add(scope)
        if self._closing:
            scope.cancel()
        try:
            yield
        finally:
            self._scopes.discard(scope)
            if not self._scopes:
                self._ended.set()
