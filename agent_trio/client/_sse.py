"""Server-sent events, read the way the contract writes them.

A frame is ``event: <type>`` and ``data: <json>`` lines ended by a blank line;
``:`` lines are comments (the server's pings). The JSON repeats ``type``, which
wins over the event name, so a stream of ``data:`` lines alone reads the same.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from typing import Any

__all__ = ["iter_frames"]


def iter_frames(lines: Iterable[str]) -> Iterator[dict[str, Any]]:
    """Each frame's JSON object, with ``type`` filled in from the event name if absent.

    A frame whose data is not a JSON object is skipped: the client shows what it
    understands and the stream goes on.
    """
    event = ""
    data: list[str] = []
    for line in lines:
        if not line:
            frame = _frame(event, data)
            if frame is not None:
                yield frame
            event, data = "", []
        elif line.startswith(":"):
            continue
        else:
            name, _, value = line.partition(":")
            value = value.removeprefix(" ")
            if name == "event":
                event = value
            elif name == "data":
                data.append(value)
    frame = _frame(event, data)
    if frame is not None:
        yield frame


def _frame(event: str, data: list[str]) -> dict[str, Any] | None:
    if not data:
        return None
    try:
        value = json.loads("\n".join(data))
    except ValueError:
        return None
    if not isinstance(value, dict):
        return None
    value.setdefault("type", event or "message")
    return value
