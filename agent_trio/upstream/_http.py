"""HTTP details shared by the upstream clients: Retry-After, error messages, timeouts."""

from __future__ import annotations

import email.utils
import json
import math
from typing import Any

import httpx

__all__ = ["edge_timeout", "parse_retry_after", "upstream_message"]

_MESSAGE_LIMIT = 500


def parse_retry_after(value: str | None, *, now: float) -> float | None:
    """Seconds to wait from a ``Retry-After`` header, or None if absent or unreadable.

    Accepts delay-seconds (decimals too, as some servers send them) and an HTTP date,
    compared with ``now`` (seconds since the epoch, the wall clock). A date in the past
    means "no wait" (0.0).
    """
    if value is None:
        return None
    text = value.strip()
    if not text:
        return None
    try:
        seconds = float(text)
    except ValueError:
        pass
    else:
        return seconds if math.isfinite(seconds) and seconds >= 0 else None
    try:
        when = email.utils.parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:  # RFC 9110 dates are GMT; a zone-less one is taken as such
        return None
    return max(0.0, when.timestamp() - now)


def upstream_message(response: httpx.Response) -> str:
    """The upstream's own explanation of an error answer, short and on one line."""
    text = response.text
    try:
        data: Any = json.loads(text)
    except ValueError:
        data = None
    message: Any = None
    if isinstance(data, dict):
        error = data.get("error")
        if isinstance(error, dict):
            message = error.get("message") or error.get("code")
        elif isinstance(error, str):
            message = error
        message = message or data.get("detail") or data.get("message")
    if message is None:
        message = text or response.reason_phrase
    line = message if isinstance(message, str) else json.dumps(message)
    line = " ".join(line.split())
    if len(line) > _MESSAGE_LIMIT:
        line = line[: _MESSAGE_LIMIT - 1] + "…"
    return line


def edge_timeout(seconds: float) -> httpx.Timeout:
    """Per-phase timeouts at the protocol edge; the per-attempt deadline is a cancel scope."""
    return httpx.Timeout(
        connect=min(10.0, seconds),
        read=seconds,
        write=seconds,
        pool=seconds,
    )
