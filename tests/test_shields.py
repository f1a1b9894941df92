"""Every shield has a deadline, no thread is abandoned, and stopping is bounded.

Virtual time (``autojump_clock``): the deadlines are asserted exactly.
"""

from __future__ import annotations

import gc
import threading
from typing import Any

import httpx
import pytest
import trio
import trio.testing

from agent_trio import Settings, load_settings
from agent_trio.app import _lifespan
from agent_trio.app._asgi import LAST_SEND_DEADLINE, FinishResponses
from agent_trio.app._lifespan import STOP_MARGIN, ServiceRunner
from agent_trio.service import _engine
from agent_trio.upstream._sse import LineReader
from tests.support.fake_llm import FakeLlm, Text

# -- the last part of a response ---------------------------------------------------


def _app_sending(parts: list[dict[str, Any]]) -> Any:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        for part in parts:
            await send(part)

    return app


async def _send_stuck_on_body(message: dict[str, Any]) -> None:
    if message["type"] == "http.response.body":
        await trio.sleep_forever()  # a peer that stopped reading


async def _receive() -> dict[str, Any]:
    raise AssertionError("not called")


async def test_the_last_parts_send_outlives_cancellation_within_its_deadline(
    autojump_clock: trio.abc.Clock,
) -> None:
    wrapped = FinishResponses(_app_sending([{"type": "http.response.body", "body": b"x"}]))
    began = trio.current_time()
    with trio.move_on_after(1):  # the request is cancelled 1 s in
        await wrapped({"type": "http"}, _receive, _send_stuck_on_body)
    assert trio.current_time() - began == LAST_SEND_DEADLINE


async def test_a_streamed_part_before_the_last_stays_cancellable(
    autojump_clock: trio.abc.Clock,
) -> None:
    part = {"type": "http.response.body", "body": b"x", "more_body": True}
    wrapped = FinishResponses(_app_sending([part]))
    began = trio.current_time()
    with trio.move_on_after(1) as scope:
        await wrapped({"type": "http"}, _receive, _send_stuck_on_body)
    assert scope.cancelled_caught
    assert trio.current_time() - began == 1


# -- closing a streamed upstream body ------------------------------------------------


class _StuckClose:
    """An async iterator of chunks whose ``aclose`` never finishes by itself."""

    def __init__(self) -> None:
        self.closing = False

    def __aiter__(self) -> _StuckClose:
        return self

    async def __anext__(self) -> bytes:
        return b"data: {}\n\n"

    async def aclose(self) -> None:
        self.closing = True
        await trio.sleep_forever()


async def test_closing_a_stream_is_shielded_and_bounded(autojump_clock: trio.abc.Clock) -> None:
    reader = LineReader(httpx.Response(200, content=b""))
    stuck = _StuckClose()
    reader._chunks = stuck
    began = trio.current_time()
    with trio.CancelScope() as scope:
        scope.cancel()  # closing happens while the caller is being cancelled
        await reader.aclose()
    assert stuck.closing
    assert 0 < trio.current_time() - began <= 5


# -- the model-import thread ---------------------------------------------------------


async def test_a_cancelled_start_waits_for_the_import_thread(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Any
) -> None:
    importing, release, imported = threading.Event(), threading.Event(), threading.Event()

    def slow_import() -> None:
        importing.set()
        release.wait(30)
        imported.set()

    monkeypatch.setattr(_engine, "_import_model_libraries", slow_import)
    settings = load_settings(agent_data_dir=tmp_path)
    assert settings.embedding_provider == "local"
    left = trio.Event()
    start_scope = trio.CancelScope()

    async def start() -> None:
        with start_scope:
            async with _engine.warm_imports(settings):
                await trio.sleep_forever()  # the engine starting
        left.set()

    async with trio.open_nursery() as nursery:
        nursery.start_soon(start)
        await trio.to_thread.run_sync(importing.wait, 30)
        start_scope.cancel()
        await trio.testing.wait_all_tasks_blocked()
        assert not left.is_set(), "the start returned while its thread still imported"
        release.set()
    assert imported.is_set()
    assert left.is_set()


# -- stopping the service ------------------------------------------------------------


class _Service:
    def __init__(self) -> None:
        self.stop_requested = False

    def request_stop(self) -> None:
        self.stop_requested = True


def _serve_ignoring_stop(close_seconds: float) -> Any:
    """A ``serve_service`` whose orderly close never ends, and whose cancelled close
    (shielded) takes ``close_seconds``."""

    async def serve(settings: Settings, *, hooks: Any, task_status: trio.TaskStatus[Any]) -> None:
        task_status.started(_Service())
        try:
            await trio.sleep_forever()
        finally:
            with trio.CancelScope(shield=True):
                await trio.sleep(close_seconds)

    return serve


@pytest.mark.parametrize("close_seconds", [2.0, 1000.0])
async def test_stop_has_its_own_deadline(
    autojump_clock: trio.abc.Clock,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Any,
    close_seconds: float,
    caplog: pytest.LogCaptureFixture,
) -> None:
    monkeypatch.setattr(_lifespan, "serve_service", _serve_ignoring_stop(close_seconds))
    settings = load_settings(agent_data_dir=tmp_path, shutdown_timeout_seconds=3)
    runner = ServiceRunner(None)
    async with trio.open_nursery() as nursery:
        service = await runner.start(nursery, settings)
        assert runner.service is service
        began = trio.current_time()
        with trio.CancelScope() as outer:
            outer.cancel()  # the lifespan is being cancelled: stop is shielded from it
            await runner.stop()
        took = trio.current_time() - began
        assert runner.service is None
        assert service.stop_requested  # type: ignore[attr-defined]
        if close_seconds < STOP_MARGIN:
            assert took == 3 + close_seconds  # orderly deadline, then the cancelled close
            assert "cancelling it" in caplog.text
        else:
            assert took == 3 + STOP_MARGIN  # and no longer: the close is left
            assert "did not finish closing" in caplog.text
        await runner.stop()  # idempotent
        assert trio.current_time() - began == took


async def test_a_stream_left_between_chunks_leaves_no_generator_to_the_collector() -> None:
    """httpx reads a body through nested async generators; a reader closed between two
    chunks (the client left while its answer streamed) ends every one of them, so none
    is finalized by the garbage collector (which Trio reports, and the suite fails on)."""
    pause = trio.Event()
    llm = FakeLlm([Text("one two three four", pieces=4, pause=pause)])
    async with trio.open_nursery() as nursery:
        base = await nursery.start(llm.serve)
        async with httpx.AsyncClient() as http:
            body = {"model": "fake-model", "stream": True, "messages": []}
            async with http.stream("POST", f"{base}/chat/completions", json=body) as response:
                reader = LineReader(response)
                assert (await reader.next_line() or "").startswith("data:")  # the first piece
                await reader.aclose()  # while every generator waits at its yield
            del reader, response
            gc.collect()
            await trio.testing.wait_all_tasks_blocked()  # Trio finalizes what was collected
        pause.set()
        nursery.cancel_scope.cancel()
