"""Log lines an operator can grep: each carries the request it belongs to.

A request's :class:`RequestContext` (its id, and the session once a route knows
it) is the value of :data:`current_request` in the task that serves the request.
Trio tasks start with a copy of their spawner's context, so the tasks a request
starts (a chat's tools, a search's two sides) carry the same context object, and
every line they log names the request. :class:`RequestFilter`, on our handler,
copies it onto each record as ``request_id`` and ``session_id``.

Two formats (``LOG_FORMAT``): ``text`` for people, one line per record with the
request appended; ``json`` for log shippers, one JSON object per line, with the
fields a record was given in ``extra={"fields": {...}}`` (the request log's
method, route, status and duration) at the top level.
"""

from __future__ import annotations

import json
import logging
import time
from contextvars import ContextVar
from dataclasses import dataclass
from typing import IO, Any, Literal

__all__ = [
    "LogFormat",
    "RequestContext",
    "RequestFilter",
    "current_request",
    "log_handler",
    "note_session",
]

LogFormat = Literal["text", "json"]

_TEXT = "[%(asctime)s] [%(process)d] [%(levelname)s] %(name)s: %(message)s"
_TEXT_DATES = "%Y-%m-%d %H:%M:%S %z"


@dataclass(slots=True)
class RequestContext:
    """What every log line of one request says about it."""

    id: str
    route: str | None = None
    session_id: str | None = None


#: the request the running task serves (a context variable is per task by nature:
#: this holds no state of its own)
current_request: ContextVar[RequestContext | None] = ContextVar("agent_trio_request", default=None)


def note_session(session_id: str) -> None:
    """Name ``session_id`` in the log lines of the current request, if there is one."""
    context = current_request.get()
    if context is not None:
        context.session_id = session_id


class RequestFilter(logging.Filter):
    """Copies the current request's id and session onto each record (never drops one)."""

    def filter(self, record: logging.LogRecord) -> bool:
        context = current_request.get()
        record.request_id = context.id if context is not None else None
        record.session_id = context.session_id if context is not None else None
        return True


class TextFormatter(logging.Formatter):
    """The ASGI server's format, then ``[request=<id> session=<id>]`` when there is one."""

    def __init__(self) -> None:
        super().__init__(_TEXT, _TEXT_DATES)

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        request_id = getattr(record, "request_id", None)
        if request_id is None:
            return line
        session_id = getattr(record, "session_id", None)
        where = f"request={request_id}" + (f" session={session_id}" if session_id else "")
        head, newline, rest = line.partition("\n")  # a traceback goes below the line
        return f"{head} [{where}]{newline}{rest}"


class JsonFormatter(logging.Formatter):
    """One JSON object per record, on one line."""

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "time": _iso_time(record.created),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key in ("request_id", "session_id"):
            value = getattr(record, key, None)
            if value is not None:
                out[key] = value
        fields = getattr(record, "fields", None)
        if isinstance(fields, dict):
            out.update(fields)
        if record.exc_info:
            out["exception"] = self.formatException(record.exc_info)
        return json.dumps(out, ensure_ascii=False, default=str)


def _iso_time(created: float) -> str:
    seconds = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(created))
    return f"{seconds}.{int(created % 1 * 1000):03d}Z"


def log_handler(stream: IO[str] | None = None, *, format: LogFormat = "text") -> logging.Handler:
    """A handler that writes to ``stream`` (stderr by default) in ``format``."""
    handler = logging.StreamHandler(stream)
    handler.addFilter(RequestFilter())
    handler.setFormatter(JsonFormatter() if format == "json" else TextFormatter())
    return handler
