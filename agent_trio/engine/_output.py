"""The engine's console output: logged line by line, a tail kept for error messages.

The engine logs one JSON object a line (``arcadedb.server.logFormat=json``), so
each record keeps its level. Other lines come from the JVM itself or are printed
directly (an uncaught exception, the shutdown messages): a stack trace from an
uncaught exception is logged as an error, anything else as information.
"""

from __future__ import annotations

import collections
import json
import logging
import re
from typing import Any

import trio

__all__ = ["TAIL_LINES", "EngineOutput", "pump_output"]

_log = logging.getLogger("agent_trio.engine")

#: lines kept for error messages
TAIL_LINES = 25
_MAX_LINE = 64 * 1024

_LEVELS = {
    "SEVERE": logging.ERROR,
    "WARNING": logging.WARNING,
    "INFO": logging.INFO,
    "CONFIG": logging.INFO,
}
#: ArcadeDB's colour markup, ``$ANSI{green text}``, left in some messages
_ANSI_MARKUP = re.compile(r"\$ANSI\{\S+ ([^}]*)\}")
#: the server's main thread died during start; the JVM itself keeps running
_START_FAILED = 'Exception in thread "main"'
_UNCAUGHT = "Exception in thread "
_TRACE_CONTINUATION = ("\t", " ", "Caused by:", "Suppressed:")
#: a listener could not bind its port (another process took it after we picked it)
_PORT_TAKEN = "Unable to listen"


class EngineOutput:
    """What the engine printed, as far as starting and failing are concerned."""

    def __init__(self) -> None:
        self.tail: collections.deque[str] = collections.deque(maxlen=TAIL_LINES)
        self.start_failed = False
        self.port_taken = False
        self.closed = trio.Event()
        self._in_trace = False

    def feed(self, line: str) -> None:
        record = _parse_record(line)
        if record is not None:
            level, text = record
            self._in_trace = False
        else:
            level, text = self._plain_level(line), line
        if _START_FAILED in text:
            self.start_failed = True
        if _PORT_TAKEN in text:
            self.port_taken = True
        if text.strip():
            self.tail.extend(text.splitlines())
            _log.log(level, "%s", text)

    def describe(self) -> str:
        if not self.tail:
            return "(the engine printed nothing)"
        return "last engine output:\n" + "\n".join(self.tail)

    def _plain_level(self, line: str) -> int:
        self._in_trace = line.startswith(_UNCAUGHT) or (
            self._in_trace and line.startswith(_TRACE_CONTINUATION)
        )
        return logging.ERROR if self._in_trace else logging.INFO


def _parse_record(line: str) -> tuple[int, str] | None:
    """``(level, text)`` of one JSON log record, or ``None`` for any other line."""
    if not line.startswith("{"):
        return None
    try:
        record: Any = json.loads(line)
    except ValueError:
        return None
    if not isinstance(record, dict) or "message" not in record:
        return None
    level = _LEVELS.get(str(record.get("level")), logging.DEBUG)
    logger = str(record.get("logger") or "engine").rsplit(".", 1)[-1]
    message = _ANSI_MARKUP.sub(r"\1", str(record["message"]))
    text = f"[{logger}] {message}"
    if record.get("exception"):
        text += "\n" + str(record["exception"]).rstrip()
    return level, text


async def pump_output(fd: int, output: EngineOutput) -> None:
    """Read the pipe until end of file, feeding complete lines to ``output``.

    Takes ownership of ``fd``. Sets ``output.closed`` when done, however it ends.
    """
    buffer = b""
    try:
        async with trio.lowlevel.FdStream(fd) as stream:
            while chunk := await stream.receive_some(65536):
                buffer += chunk
                *lines, buffer = buffer.split(b"\n")
                if len(buffer) > _MAX_LINE:
                    lines.append(buffer)
                    buffer = b""
                for raw in lines:
                    output.feed(_decode(raw))
        if buffer:
            output.feed(_decode(buffer))
    finally:
        output.closed.set()


def _decode(raw: bytes) -> str:
    return raw.decode("utf-8", "replace").rstrip("\r")
