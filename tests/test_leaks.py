"""Leak detection: tokens borrowed that no operation in flight accounts for.

The watch itself on plain limiters, cut by check counts and the virtual clock;
then the service's: a chat slot leaked on purpose turns /health degraded, a chat
that holds its slot does not.
"""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
import trio

from agent_trio.engine import EngineInfo
from agent_trio.service import InFlight, LeakWatch, Suspect
from tests.support.chat import chat_settings, limiters_idle, llm_chat, open_chat_app, poll
from tests.support.fake_llm import Hold, Text
from tests.support.metrics import sample_value


def chat_watch(limiter: trio.CapacityLimiter, ops: InFlight, grace: int = 3) -> LeakWatch:
    return LeakWatch(
        lambda: {"chat": limiter.statistics().borrowed_tokens},
        lambda: {"chat": ops.counts()["chat"]},
        grace=grace,
    )


async def test_a_token_no_operation_holds_is_suspected_after_the_grace(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="agent_trio.service")
    limiter, ops = trio.CapacityLimiter(4), InFlight()
    watch = chat_watch(limiter, ops)
    ops.begin("chat")
    await limiter.acquire_on_behalf_of("a chat")
    for _ in range(5):
        watch.check()
    assert watch.suspects == []  # one chat, one token: in step
    await limiter.acquire_on_behalf_of("nobody")
    watch.check()
    watch.check()
    assert watch.suspects == []  # within the grace
    watch.check()
    assert watch.suspects == [Suspect("chat", borrowed=2, accounted=1)]
    watch.check()
    assert watch.suspects == [Suspect("chat", borrowed=2, accounted=1)]
    limiter.release_on_behalf_of("nobody")
    watch.check()
    assert watch.suspects == []
    assert [(r.levelno, r.getMessage()) for r in caplog.records] == [
        (
            logging.WARNING,
            "limiter leak suspected, chat: 2 borrowed, 1 accounted for by operations in "
            "flight for 3 checks in a row",
        ),
        (logging.INFO, "limiter chat is back in step: 1 tokens borrowed"),
    ]


async def test_a_mismatch_must_last_the_grace_in_a_row() -> None:
    limiter, ops = trio.CapacityLimiter(4), InFlight()
    watch = chat_watch(limiter, ops)
    for number in range(3):
        await limiter.acquire_on_behalf_of(f"chat {number}, not registered yet")
        watch.check()
        watch.check()
        ops.begin("chat")
        watch.check()  # in step again: the count starts over
    assert watch.suspects == []
    assert watch.checks == 9


async def test_the_watch_checks_every_interval_from_its_start(
    autojump_clock: trio.abc.Clock,
) -> None:
    limiter, ops = trio.CapacityLimiter(4), InFlight()
    watch = chat_watch(limiter, ops)
    await limiter.acquire_on_behalf_of("nobody")
    async with trio.open_nursery() as nursery:
        await nursery.start(watch.run, 10.0)
        started = trio.current_time()
        await trio.sleep(29)
        assert watch.checks == 2
        assert watch.suspects == []
        await trio.sleep(2)
        assert watch.checks == 3
        assert [s.limiter for s in watch.suspects] == ["chat"]
        nursery.cancel_scope.cancel()
    assert trio.current_time() - started == 31


def test_ending_an_operation_that_never_began_is_a_bug() -> None:
    ops = InFlight()
    with ops.track("ingestion"):
        assert ops.counts() == {"chat": 0, "stream": 0, "ingestion": 1}
    with pytest.raises(RuntimeError, match="no stream is in flight"):
        ops.end("stream")


@pytest.mark.engine
async def test_a_leaked_chat_slot_makes_health_degraded_until_it_is_back(
    engine_info: EngineInfo, tmp_path: Path
) -> None:
    settings = chat_settings(tmp_path, leak_check_interval_seconds=3600)
    async with open_chat_app(settings, engine_info, corpus=False) as app:
        service = app.service
        healthy = await (await app.client.get("/health")).get_json()
        assert healthy["status"] == "healthy"
        assert healthy["checks"]["leaks"]["status"] == "ok"
        await service.limiters["chat"].acquire_on_behalf_of("no chat at all")
        for _ in range(service.leaks.grace):
            service.leaks.check()
        response = await app.client.get("/health")
        assert response.status_code == 200
        body = await response.get_json()
        assert body["status"] == "degraded"
        leaks = body["checks"]["leaks"]
        assert (leaks["status"], leaks["detail"], leaks["checks"]) == (
            "error",
            "limiter leak suspected: chat: 1 borrowed, 0 accounted for by operations in flight",
            service.leaks.grace,
        )
        text = (await (await app.client.get("/metrics")).get_data()).decode()
        assert sample_value(text, 'agent_trio_limiter_leak_suspected{limiter="chat"}') == 1
        assert sample_value(text, 'agent_trio_limiter_leak_suspected{limiter="graph"}') == 0
        service.limiters["chat"].release_on_behalf_of("no chat at all")
        service.leaks.check()
        body = await (await app.client.get("/health")).get_json()
        assert body["status"] == "healthy"
        text = (await (await app.client.get("/metrics")).get_data()).decode()
        assert sample_value(text, 'agent_trio_limiter_leak_suspected{limiter="chat"}') == 0


@pytest.mark.engine
async def test_chats_that_hold_their_slots_are_accounted_for(
    engine_info: EngineInfo, tmp_path: Path
) -> None:
    release = trio.Event()
    script = [Hold(release, Text("done"))]
    async with llm_chat(engine_info, tmp_path, script, leak_check_interval_seconds=3600) as (
        app,
        fake,
    ):
        service = app.service
        async with trio.open_nursery() as nursery:
            nursery.start_soon(app.post, "/chat", {"message": "wait for it"})
            nursery.start_soon(app.stream, {"message": "and this one"})
            await fake.wait_until(lambda f: f.in_flight == 2)
            in_flight = service.operations_in_flight()
            assert (in_flight["chat"], in_flight["stream"], in_flight["llm_attempt"]) == (1, 1, 2)
            assert service.limiter_statistics()["chat"].borrowed == 2
            for _ in range(service.leaks.grace + 2):
                service.leaks.check()
            assert service.leaks.suspects == []
            release.set()
        await poll(lambda: limiters_idle(service))
        assert service.operations_in_flight()["chat"] == 0
        assert service.operations_in_flight()["stream"] == 0
        assert set(service.leaks.checked()) == set(service.limiters)
