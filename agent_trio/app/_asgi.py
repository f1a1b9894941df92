"""An ASGI wrapper that lets Hypercorn finish each response's bookkeeping.

Hypercorn (trio worker, HTTP/1.1) does its end-of-response work inside the
app's ``send`` of the last body part: it ends the request, tells the app the
stream is over (``http.disconnect``) and starts the connection's keep-alive
timer, a task started with ``nursery.start``. Quart-Trio's request task
watches for that ``http.disconnect`` and cancels the request as soon as it
arrives, which is while the same ``send`` is still running: the timer task is
cancelled before it starts. The connection is then never treated as idle.
``keep_alive_timeout`` does not close it, and at shutdown Hypercorn does not
close it either: the server waits the whole ``graceful_timeout`` for a client
that merely keeps its connection open.

Shielding the ``send`` of the last body part lets it complete. Hypercorn
already shields the socket write inside it, so this adds no wait that was not
there; streamed parts before it (``more_body``) stay cancellable, so a client
that leaves mid-stream still cancels its request at once. The shield has a
deadline all the same (:data:`LAST_SEND_DEADLINE`): a peer that stops reading
cannot hold a request task forever.
"""

from __future__ import annotations

from typing import Any

import trio

__all__ = ["LAST_SEND_DEADLINE", "FinishResponses"]

#: how long the shielded ``send`` of a response's last part may take
LAST_SEND_DEADLINE = 10.0

Message = dict[str, Any]


class FinishResponses:
    """Wrap an ASGI app; shield the ``send`` of each HTTP response's last part."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_last_part_whole(message: Message) -> None:
            if message["type"] == "http.response.body" and not message.get("more_body", False):
                with trio.move_on_after(LAST_SEND_DEADLINE, shield=True):
                    await send(message)
            else:
                await send(message)

        await self.app(scope, receive, send_last_part_whole)
