"""The HTTP embedder against fake upstreams, on virtual time."""

from __future__ import annotations

import json
import logging
import math
from datetime import UTC, datetime
from email.utils import format_datetime
from typing import Any

import httpx
import pytest
import trio
import trio.testing
from upstream_support import (
    DIMS,
    embedding_settings,
    fake_embeddings,
    live_tasks,
    quick_tuning,
    vector_for,
)

from agent_trio import (
    CircuitOpen,
    ResourceClosed,
    UpstreamProtocolError,
    UpstreamRejected,
    UpstreamUnavailable,
)
from agent_trio.service import embedding_config
from agent_trio.upstream import HttpEmbedder, open_embedder
from tests.support.fake_embeddings import FakeEmbeddings, text_vector
from tests.support.fake_embeddings import serve as serve_embeddings


def _texts(n: int) -> list[str]:
    return [f"text number {i}" for i in range(n)]


def _assert_idle(embedder: Any) -> None:
    stats = embedder.statistics()
    assert stats.limiter.borrowed == 0
    assert stats.limiter.waiting == 0
    assert stats.upstream.rate.pending == 0
    assert stats.upstream.rate.waiting == 0


async def test_vectors_come_back_in_input_order_across_batches(
    autojump_clock: trio.abc.Clock,
) -> None:
    latencies = iter([5.0, 1.0, 3.0, 2.0, 4.0] * 3)

    async def script(number: int, request: httpx.Request) -> None:
        await trio.sleep(next(latencies))  # batches finish out of order

    fake = fake_embeddings(script=script)
    texts = _texts(47)
    async with open_embedder(
        embedding_config(embedding_settings()), transport=fake.transport()
    ) as embedder:
        vectors = await embedder.embed(texts)
    assert vectors == [vector_for(t) for t in texts]
    assert [len(batch) for _, batch in fake.requests] == [10, 10, 10, 10, 7]
    assert fake.max_in_flight == 3


async def test_batches_are_also_cut_by_characters(autojump_clock: trio.abc.Clock) -> None:
    fake = fake_embeddings()
    texts = ["x" * 40] * 6
    async with open_embedder(
        embedding_config(embedding_settings()), transport=fake.transport(), max_batch_chars=100
    ) as embedder:
        vectors = await embedder.embed(texts)
    assert len(vectors) == 6
    assert [len(batch) for _, batch in fake.requests] == [2, 2, 2]


async def test_concurrency_cap_is_never_exceeded(autojump_clock: trio.abc.Clock) -> None:
    fake = fake_embeddings(latency=1.0)
    settings = embedding_settings(embedding_max_concurrency=4, embedding_batch_size=1)
    async with open_embedder(embedding_config(settings), transport=fake.transport()) as embedder:
        async with trio.open_nursery() as nursery:
            for _ in range(5):  # five callers at once, each with many batches
                nursery.start_soon(embedder.embed, _texts(20))
        _assert_idle(embedder)
    assert fake.max_in_flight == 4
    assert len(fake.requests) == 100
    assert trio.current_time() == 25.0  # 100 requests, 4 at a time, 1 s each


async def test_rate_limit_is_exact_in_virtual_time(autojump_clock: trio.abc.Clock) -> None:
    fake = fake_embeddings(latency=0.5)
    settings = embedding_settings(embedding_rate_limit_per_minute=6, embedding_batch_size=1)
    async with open_embedder(
        embedding_config(settings), transport=fake.transport(), tuning=quick_tuning()
    ) as emb:
        await emb.embed(_texts(15))
    starts = [t for t, _ in fake.requests]
    assert starts == [0.0] * 3 + [0.5] * 3 + [60.0] * 3 + [60.5] * 3 + [120.0] * 3


async def test_network_error_is_retried_with_backoff(autojump_clock: trio.abc.Clock) -> None:
    async def script(number: int, request: httpx.Request) -> None:
        if number < 2:
            raise httpx.ConnectError("connection refused", request=request)

    fake = fake_embeddings(script=script)
    async with open_embedder(
        embedding_config(embedding_settings()), transport=fake.transport(), tuning=quick_tuning()
    ) as embedder:
        vectors = await embedder.embed(["hello"])
        counters = embedder.statistics().upstream.counters
    assert vectors == [vector_for("hello")]
    assert [t for t, _ in fake.requests] == [0.0, 1.0, 3.0]  # back-off 1 s, then 2 s
    assert counters["network_errors"] == 2
    assert counters["retries"] == 2


async def test_http_500_is_retried_then_gives_up_loudly(autojump_clock: trio.abc.Clock) -> None:
    async def script(number: int, request: httpx.Request) -> httpx.Response:
        return httpx.Response(500, json={"error": {"message": "model crashed"}})

    fake = fake_embeddings(script=script)
    async with open_embedder(
        embedding_config(embedding_settings(upstream_max_attempts=3)),
        transport=fake.transport(),
        tuning=quick_tuning(),
    ) as embedder:
        with pytest.raises(UpstreamUnavailable) as info:
            await embedder.embed(_texts(3))
        assert embedder.statistics().upstream.counters["gave_up"] == 1
    assert len(fake.requests) == 3
    assert info.value.status_code == 500
    assert "model crashed" in str(info.value)
    assert info.value.upstream == "embedding"


async def test_each_retry_is_logged_with_the_upstream_and_its_failure(
    autojump_clock: trio.abc.Clock, caplog: pytest.LogCaptureFixture
) -> None:
    async def script(number: int, request: httpx.Request) -> httpx.Response | None:
        if number == 0:
            return httpx.Response(503, json={"error": {"message": "warming up"}})
        if number == 1:
            raise httpx.ReadTimeout("slow", request=request)
        return None

    fake = fake_embeddings(script=script)
    caplog.set_level(logging.INFO, logger="agent_trio.upstream")
    async with open_embedder(
        embedding_config(embedding_settings()), transport=fake.transport(), tuning=quick_tuning()
    ) as embedder:
        assert await embedder.embed(["hello"]) == [vector_for("hello")]
    retries = [r for r in caplog.records if r.name == "agent_trio.upstream"]
    assert [r.levelno for r in retries] == [logging.WARNING, logging.WARNING]
    first, second = (r.getMessage() for r in retries)
    assert "embedding upstream failed with HTTP 503: warming up" in first
    assert "retry 1 " in first
    assert "embedding upstream" in second
    assert "retry 2 " in second


async def test_a_call_that_fails_for_good_is_one_more_line_and_counts_its_waits(
    autojump_clock: trio.abc.Clock, caplog: pytest.LogCaptureFixture
) -> None:
    fake = fake_embeddings(status=503)
    caplog.set_level(logging.INFO, logger="agent_trio.upstream")
    settings = embedding_settings(upstream_max_attempts=2, upstream_breaker_threshold=10)
    async with open_embedder(
        embedding_config(settings), transport=fake.transport(), tuning=quick_tuning()
    ) as embedder:
        with pytest.raises(UpstreamUnavailable):
            await embedder.embed(["hello"])
        fake.status = 400
        with pytest.raises(UpstreamRejected):
            await embedder.embed(["hello"])
        stats = embedder.statistics()
    lines = [(r.levelno, r.getMessage()) for r in caplog.records if r.name == "agent_trio.upstream"]
    assert [level for level, _ in lines] == [logging.WARNING] * 3
    retried, gave_up, rejected = (message for _, message in lines)
    assert "retry 1 " in retried
    assert gave_up == "embedding upstream failed with HTTP 503: unavailable; gave up"
    assert rejected.endswith("with HTTP 400: unavailable; not retried")
    # three attempts, each let through by the rate limiter and given a slot
    assert stats.attempts_in_flight == 0
    assert stats.waits["limiter"].count == stats.waits["rate"].count == 3


async def test_invalid_json_fails_at_once(autojump_clock: trio.abc.Clock) -> None:
    async def script(number: int, request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, text="<html>gateway</html>")

    fake = fake_embeddings(script=script)
    async with open_embedder(
        embedding_config(embedding_settings()), transport=fake.transport()
    ) as embedder:
        with pytest.raises(UpstreamProtocolError, match="not JSON"):
            await embedder.embed(_texts(3))
    assert len(fake.requests) == 1


@pytest.mark.parametrize(
    ("answer", "match"),
    [
        ({"data": [{"index": 0, "embedding": [1.0] * DIMS}]}, "1 vectors for 2 texts"),
        (
            {"data": [{"index": 0, "embedding": [1.0] * DIMS}, {"index": 1, "embedding": [1.0]}]},
            "1 dimensions",
        ),
        (
            {
                "data": [
                    {"index": 0, "embedding": [1.0] * DIMS},
                    {"index": 0, "embedding": [1.0] * DIMS},
                ]
            },
            "repeated",
        ),
        (
            {
                "data": [
                    {"index": 0, "embedding": [1.0] * DIMS},
                    {"index": 1, "embedding": [0.0] * DIMS},
                ]
            },
            "all zeros",
        ),
        (
            {
                "data": [
                    {"index": 0, "embedding": [1.0] * DIMS},
                    {"index": 1, "embedding": [math.nan] * DIMS},
                ]
            },
            "finite",
        ),
        ({"vectors": []}, "no 'data'"),
    ],
)
async def test_wrong_answers_are_errors_never_zero_vectors(
    autojump_clock: trio.abc.Clock, answer: dict[str, Any], match: str
) -> None:
    async def script(number: int, request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, content=json.dumps(answer).encode())

    fake = fake_embeddings(script=script)
    async with open_embedder(
        embedding_config(embedding_settings()), transport=fake.transport()
    ) as embedder:
        with pytest.raises(UpstreamProtocolError, match=match):
            await embedder.embed(["a", "b"])


async def test_answer_in_any_order_is_put_back_in_input_order(
    autojump_clock: trio.abc.Clock,
) -> None:
    async def script(number: int, request: httpx.Request) -> httpx.Response:
        texts = json.loads(request.content)["input"]
        data = [{"index": i, "embedding": vector_for(t)} for i, t in enumerate(texts)]
        return httpx.Response(200, json={"data": data[::-1]})

    fake = fake_embeddings(script=script)
    async with open_embedder(
        embedding_config(embedding_settings()), transport=fake.transport()
    ) as embedder:
        assert await embedder.embed(["a", "b", "c"]) == [vector_for(t) for t in "abc"]


async def test_other_4xx_fails_at_once_with_the_upstream_message(
    autojump_clock: trio.abc.Clock,
) -> None:
    async def script(number: int, request: httpx.Request) -> httpx.Response:
        return httpx.Response(400, json={"error": {"message": "input too long for model"}})

    fake = fake_embeddings(script=script)
    async with open_embedder(
        embedding_config(embedding_settings()), transport=fake.transport()
    ) as embedder:
        with pytest.raises(UpstreamRejected, match="input too long for model") as info:
            await embedder.embed(["a"])
        assert embedder.statistics().upstream.breaker.consecutive_failures == 0
    assert info.value.status_code == 400
    assert len(fake.requests) == 1


async def test_429_retry_after_seconds_pauses_the_whole_upstream(
    autojump_clock: trio.abc.Clock,
) -> None:
    async def script(number: int, request: httpx.Request) -> httpx.Response | None:
        if number == 0:
            return httpx.Response(429, headers={"Retry-After": "7"}, json={"error": "slow down"})
        return None

    fake = fake_embeddings(latency=1.0, script=script)
    settings = embedding_settings(embedding_batch_size=1, embedding_max_concurrency=1)
    async with open_embedder(
        embedding_config(settings), transport=fake.transport(), tuning=quick_tuning()
    ) as emb:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(emb.embed, ["first"])
            await trio.testing.wait_all_tasks_blocked()
            nursery.start_soon(emb.embed, ["second"])  # another caller: paused too
        counters = emb.statistics().upstream.counters
    starts = [t for t, _ in fake.requests]
    assert starts == [0.0, 7.0, 8.0]
    assert counters["throttled"] == 1


async def test_429_retry_after_http_date(autojump_clock: trio.abc.Clock) -> None:
    wall = 1_700_000_000.0
    when = format_datetime(datetime.fromtimestamp(wall + 12, tz=UTC), usegmt=True)

    async def script(number: int, request: httpx.Request) -> httpx.Response | None:
        if number == 0:
            return httpx.Response(429, headers={"Retry-After": when})
        return None

    fake = fake_embeddings(script=script)
    tuning = quick_tuning(wall_clock=lambda: wall)
    async with open_embedder(
        embedding_config(embedding_settings()), transport=fake.transport(), tuning=tuning
    ) as emb:
        await emb.embed(["a"])
    assert [t for t, _ in fake.requests] == [0.0, 12.0]


async def test_retry_after_beyond_the_callers_deadline_fails_now(
    autojump_clock: trio.abc.Clock,
) -> None:
    async def script(number: int, request: httpx.Request) -> httpx.Response:
        return httpx.Response(429, headers={"Retry-After": "120"})

    fake = fake_embeddings(script=script)
    async with open_embedder(
        embedding_config(embedding_settings()), transport=fake.transport()
    ) as embedder:
        with trio.fail_after(30), pytest.raises(UpstreamUnavailable) as info:
            await embedder.embed(["a"])
        assert trio.current_time() == 0.0
        assert info.value.retry_after == 120.0
        assert info.value.status_code == 429
        # a second caller with a short deadline fails fast too, without a request
        with trio.fail_after(30), pytest.raises(UpstreamUnavailable):
            await embedder.embed(["b"])
    assert len(fake.requests) == 1


async def test_per_attempt_deadline_then_retry(autojump_clock: trio.abc.Clock) -> None:
    async def script(number: int, request: httpx.Request) -> None:
        if number == 0:
            await trio.sleep_forever()

    fake = fake_embeddings(script=script)
    settings = embedding_settings(embedding_request_timeout_seconds=10.0)
    async with open_embedder(
        embedding_config(settings), transport=fake.transport(), tuning=quick_tuning()
    ) as emb:
        assert await emb.embed(["a"]) == [vector_for("a")]
        stats = emb.statistics()
    assert [t for t, _ in fake.requests] == [0.0, 11.0]  # 10 s deadline, 1 s back-off
    assert stats.upstream.counters["timeouts"] == 1
    assert fake.in_flight == 0


async def test_breaker_opens_fails_fast_then_recovers(autojump_clock: trio.abc.Clock) -> None:
    healthy = False

    async def script(number: int, request: httpx.Request) -> httpx.Response | None:
        if healthy:
            return None
        return httpx.Response(503, json={"error": {"message": "down"}})

    fake = fake_embeddings(script=script)
    settings = embedding_settings(
        upstream_max_attempts=3,
        upstream_breaker_threshold=4,
        upstream_breaker_cooldown_seconds=30.0,
    )
    async with open_embedder(
        embedding_config(settings), transport=fake.transport(), tuning=quick_tuning()
    ) as emb:
        with pytest.raises(UpstreamUnavailable):
            await emb.embed(["a"])  # 3 failures
        with pytest.raises(CircuitOpen):
            await emb.embed(["b"])  # 4th failure opens the breaker; its retry fails fast
        sent = len(fake.requests)
        with pytest.raises(CircuitOpen) as info:
            await emb.embed(["c"])
        assert len(fake.requests) == sent == 4  # no request while open
        assert info.value.retry_after is not None
        assert emb.statistics().upstream.breaker.state == "open"
        healthy = True
        await trio.sleep(info.value.retry_after)
        assert emb.statistics().upstream.breaker.state == "half_open"
        assert await emb.embed(["d"]) == [vector_for("d")]
        assert emb.statistics().upstream.breaker.state == "closed"


async def test_cancel_while_waiting_for_the_rate(autojump_clock: trio.abc.Clock) -> None:
    fake = fake_embeddings(latency=1.0)
    settings = embedding_settings(embedding_rate_limit_per_minute=2, embedding_batch_size=1)
    async with open_embedder(
        embedding_config(settings), transport=fake.transport(), tuning=quick_tuning()
    ) as emb:
        before = live_tasks()
        with trio.move_on_after(30) as scope:
            await emb.embed(_texts(5))  # 2 go, 3 wait for the window
        assert scope.cancelled_caught
        assert live_tasks() == before
        _assert_idle(emb)
        assert len(fake.requests) == 2
        await trio.sleep(30)  # the window frees at t=60
        assert await emb.embed(["again"]) == [vector_for("again")]
        assert trio.current_time() == 61.0


async def test_cancel_while_waiting_for_a_slot(autojump_clock: trio.abc.Clock) -> None:
    fake = fake_embeddings(latency=100.0)
    settings = embedding_settings(embedding_max_concurrency=2, embedding_batch_size=1)
    async with open_embedder(embedding_config(settings), transport=fake.transport()) as emb:
        before = live_tasks()
        with trio.move_on_after(5) as scope:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(emb.embed, _texts(4))
                await trio.testing.wait_all_tasks_blocked()
                assert emb.statistics().limiter.waiting == 2
                assert fake.in_flight == 2
        assert scope.cancelled_caught
        assert live_tasks() == before
        _assert_idle(emb)
        assert fake.in_flight == 0


async def test_cancel_mid_request(autojump_clock: trio.abc.Clock) -> None:
    fake = fake_embeddings(latency=100.0)
    async with open_embedder(
        embedding_config(embedding_settings()), transport=fake.transport()
    ) as emb:
        before = live_tasks()
        with trio.move_on_after(1) as scope:
            await emb.embed(["a"])
        assert scope.cancelled_caught
        assert live_tasks() == before
        _assert_idle(emb)
        assert fake.in_flight == 0
        stats = emb.statistics()
        assert stats.upstream.breaker.consecutive_failures == 0  # a cancel is no verdict


async def test_cancel_during_back_off_holds_no_slot(autojump_clock: trio.abc.Clock) -> None:
    async def script(number: int, request: httpx.Request) -> httpx.Response:
        return httpx.Response(502)

    fake = fake_embeddings(script=script)
    tuning = quick_tuning(backoff_initial=20.0, backoff_max=60.0)
    async with open_embedder(
        embedding_config(embedding_settings()), transport=fake.transport(), tuning=tuning
    ) as e:
        before = live_tasks()
        async with trio.open_nursery() as nursery:
            nursery.start_soon(e.embed, ["a"])
            await trio.sleep(10)  # inside the 20 s back-off
            _assert_idle(e)
            nursery.cancel_scope.cancel()
        _assert_idle(e)
        assert live_tasks() == before
    assert len(fake.requests) == 1


async def test_a_failed_batch_fails_the_call_and_stops_the_others(
    autojump_clock: trio.abc.Clock,
) -> None:
    async def script(number: int, request: httpx.Request) -> httpx.Response | None:
        if "text number 10" in json.loads(request.content)["input"]:
            return httpx.Response(422, json={"detail": "bad batch"})
        await trio.sleep(5)
        return None

    fake = fake_embeddings(script=script)
    async with open_embedder(
        embedding_config(embedding_settings()), transport=fake.transport()
    ) as emb:
        before = live_tasks()
        with pytest.raises(UpstreamRejected, match="bad batch"):
            await emb.embed(_texts(60))
        assert trio.current_time() == 0.0  # the others were cancelled, not awaited
        assert live_tasks() == before
        _assert_idle(emb)


async def test_empty_and_long_texts(autojump_clock: trio.abc.Clock) -> None:
    fake = fake_embeddings()
    async with open_embedder(
        embedding_config(embedding_settings()), transport=fake.transport(), max_text_chars=50
    ) as emb:
        with pytest.raises(ValueError, match="text 1 is empty"):
            await emb.embed(["fine", "   "])
        with pytest.raises(TypeError):
            await emb.embed("not a list")  # type: ignore[arg-type]
        assert await emb.embed([]) == []
        await emb.embed(["y" * 80])
        assert fake.requests[-1][1] == ["y" * 50]
        assert emb.statistics().counters["texts_truncated"] == 1
    async with open_embedder(
        embedding_config(embedding_settings()),
        transport=fake.transport(),
        max_text_chars=50,
        long_texts="error",
    ) as emb:
        with pytest.raises(ValueError, match="80 characters"):
            await emb.embed(["y" * 80])
    assert len(fake.requests) == 1


async def test_closed_embedder_refuses_use(autojump_clock: trio.abc.Clock) -> None:
    fake = fake_embeddings()
    async with open_embedder(
        embedding_config(embedding_settings()), transport=fake.transport()
    ) as emb:
        pass
    assert isinstance(emb, HttpEmbedder)
    with pytest.raises(ResourceClosed):
        await emb.embed(["a"])
    with pytest.raises(ResourceClosed):
        await emb.embed_query("a")
    emb.close()  # idempotent
    assert emb.closed
    assert fake.requests == []


async def test_provider_payloads(autojump_clock: trio.abc.Clock) -> None:
    bodies: list[dict[str, Any]] = []
    headers: list[httpx.Headers] = []

    async def script(number: int, request: httpx.Request) -> None:
        bodies.append(json.loads(request.content))
        headers.append(request.headers)

    fake = fake_embeddings(script=script)
    jina = embedding_settings(
        embedding_provider="jina",
        embedding_base_url="http://jina.test/v1",
        embedding_api_key="jina-key",
        embedding_model="jina-embeddings-v3",
    )
    async with open_embedder(embedding_config(jina), transport=fake.transport()) as emb:
        await emb.embed(["doc"])
        assert await emb.embed_query("question") == vector_for("question")
    assert bodies[0]["task"] == "retrieval.passage"
    assert bodies[1]["task"] == "retrieval.query"
    assert bodies[0]["dimensions"] == DIMS
    assert headers[0]["authorization"] == "Bearer jina-key"
    openai = embedding_settings(embedding_model="text-embedding-3-small")
    async with open_embedder(embedding_config(openai), transport=fake.transport()) as emb:
        await emb.embed(["doc"])
    assert bodies[2] == {
        "model": "text-embedding-3-small",
        "input": ["doc"],
        "encoding_format": "float",
        "dimensions": DIMS,
    }
    ollama = embedding_settings(embedding_model="nomic-embed-text")
    async with open_embedder(embedding_config(ollama), transport=fake.transport()) as emb:
        await emb.embed(["doc"])
    assert "dimensions" not in bodies[3]
    assert "authorization" not in headers[3]


def test_entry_points_replace_stamina_s_bare_retry_log() -> None:
    import stamina.instrumentation

    from agent_trio.upstream import use_own_retry_logs

    assert stamina.instrumentation.get_on_retry_hooks()  # its defaults: logging, Prometheus
    try:
        use_own_retry_logs()
        assert stamina.instrumentation.get_on_retry_hooks() == ()
    finally:
        stamina.instrumentation.set_on_retry_hooks(None)


async def test_the_connection_pool_is_as_wide_as_the_concurrency_limit() -> None:
    """150 requests in flight at once over real loopback HTTP: httpx's default pool of
    100 connections must not be a hidden second limit below EMBEDDING_MAX_CONCURRENCY."""
    wanted = 150
    all_in = trio.Event()
    fake = FakeEmbeddings(dimensions=DIMS, vector=text_vector, gate=all_in)
    fake.on_request = lambda count: all_in.set() if fake.in_flight + 1 >= wanted else None
    async with trio.open_nursery() as nursery:
        url = await nursery.start(serve_embeddings, fake)
        settings = embedding_settings(
            embedding_base_url=url, embedding_max_concurrency=wanted, embedding_batch_size=1
        )
        texts = [f"text {n}" for n in range(wanted)]
        async with open_embedder(embedding_config(settings), tuning=quick_tuning()) as emb:
            with trio.fail_after(60):  # against a hang: fewer than 150 would wait forever
                vectors = await emb.embed(texts)
        assert vectors == [vector_for(t) for t in texts]
        assert fake.max_in_flight == wanted
        nursery.cancel_scope.cancel()
