"""Log formats: one JSON object per line, Hypercorn's lines included."""

from __future__ import annotations

import io
import json
import logging

from agent_trio._logs import RequestContext, current_request, log_handler
from agent_trio.app._process import RelayTo


def _raise(exc: Exception) -> None:
    raise exc


def test_hypercorn_s_lines_and_tracebacks_become_json_objects() -> None:
    ours, theirs = io.StringIO(), io.StringIO()
    hypercorn = logging.getLogger("hypercorn.error.test")
    hypercorn.propagate = False
    hypercorn.setLevel(logging.INFO)
    hypercorn.addHandler(logging.StreamHandler(theirs))
    relay = RelayTo(log_handler(ours, format="json"))
    hypercorn.addFilter(relay)
    token = current_request.set(RequestContext("req-9"))
    try:
        hypercorn.info("Running on http://127.0.0.1:8058 (CTRL + C to quit)")
        try:
            _raise(RuntimeError("the app broke"))
        except RuntimeError:
            hypercorn.exception("Error in ASGI Framework")
    finally:
        current_request.reset(token)
        hypercorn.removeFilter(relay)
    assert theirs.getvalue() == ""
    lines = ours.getvalue().splitlines()
    assert len(lines) == 2
    started, failed = (json.loads(line) for line in lines)
    assert started["message"].startswith("Running on ")
    assert (started["logger"], started["level"]) == ("hypercorn.error.test", "INFO")
    assert failed["request_id"] == "req-9"
    assert failed["level"] == "ERROR"
    assert failed["exception"].startswith("Traceback")
    assert "RuntimeError: the app broke" in failed["exception"]


def test_text_lines_keep_a_traceback_below_the_line() -> None:
    out = io.StringIO()
    logger = logging.getLogger("agent_trio.test_text")
    logger.propagate = False
    handler = log_handler(out, format="text")
    logger.addHandler(handler)
    token = current_request.set(RequestContext("req-3", session_id="s-3"))
    try:
        try:
            _raise(ValueError("bad"))
        except ValueError:
            logger.exception("it failed")
    finally:
        current_request.reset(token)
        logger.removeHandler(handler)
    first, *rest = out.getvalue().splitlines()
    assert first.endswith("agent_trio.test_text: it failed [request=req-3 session=s-3]")
    assert rest[0] == "Traceback (most recent call last):"
    assert rest[-1] == "ValueError: bad"
