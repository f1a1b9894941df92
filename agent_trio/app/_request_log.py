"""One log line per request, and the request's id in its answer and in its log lines.

An ASGI wrapper around the app. Each HTTP request gets an id: the client's
``X-Request-ID`` when it is sane (1 to 128 letters, digits and ``._:-``), else a
new one. It goes back in the ``X-Request-ID`` header of the answer, and into the
:class:`~agent_trio._logs.RequestContext` of the request's task, so every line the
request logs (its child tasks' included) names it. When the request is over, one
line on ``agent_trio.access``: method, route, status, duration, with the request
and session ids. This replaces Hypercorn's access log (off in ``hypercorn.toml``),
which builds its fields from a copy of the environment for every request.
"""

from __future__ import annotations

import logging
import re
import time
import uuid
from typing import Any

from agent_trio._logs import RequestContext, current_request

__all__ = ["REQUEST_ID_HEADER", "RequestLog"]

log = logging.getLogger("agent_trio.access")

REQUEST_ID_HEADER = "X-Request-ID"
_HEADER_KEY = REQUEST_ID_HEADER.lower().encode()
_SANE_ID = re.compile(rb"[A-Za-z0-9._:-]{1,128}")

Message = dict[str, Any]


def _request_id(scope: Any) -> str:
    for name, value in scope.get("headers", ()):
        if name == _HEADER_KEY:
            if _SANE_ID.fullmatch(value):
                return str(value.decode("ascii"))
            break
    return uuid.uuid4().hex


class RequestLog:
    """Wrap an ASGI app: give each HTTP request an id, and log it once it is over."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        context = RequestContext(_request_id(scope))
        header = (_HEADER_KEY, context.id.encode("ascii"))
        status: int | None = None

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message = {**message, "headers": [*message.get("headers", ()), header]}
            await send(message)

        token = current_request.set(context)
        started = time.perf_counter()
        try:
            await self.app(scope, receive, send_with_id)
        finally:
            _log_request(scope, context, status, time.perf_counter() - started)
            current_request.reset(token)


def _log_request(scope: Any, context: RequestContext, status: int | None, seconds: float) -> None:
    if not log.isEnabledFor(logging.INFO):
        return
    method = scope.get("method", "-")
    route = context.route or scope.get("path", "-")
    shown = status if status is not None else "-"  # no answer began: the client left first
    duration_ms = round(seconds * 1000, 1)
    fields = {"method": method, "route": route, "status": status, "duration_ms": duration_ms}
    log.info("%s %s %s %.1f ms", method, route, shown, duration_ms, extra={"fields": fields})
