"""The real server for bench/chat.py, with timing hooks and a trivial route.

    .venv/bin/python bench/_chat_server.py --bind 127.0.0.1:PORT

Runs ``python -m agent_trio serve`` (hypercorn.toml, the trio worker, in this
process) after two additions that only the benchmark has:

* every graph gateway call (``GraphGateway._call``) and every wait on an upstream
  API (``Upstream.post_json``; opening a stream, ``Upstream.stream_json``; each
  next event of an open LLM stream) is timed, as an interval on the system-wide
  monotonic clock (``time.perf_counter``, the same clock in every process here);
  ``GET /_bench/intervals`` returns the intervals recorded since the last call;
* ``GET /_bench/ping`` answers ``{"ok": true}`` and does nothing else: the floor
  of the framework (Quart-Trio on Hypercorn), routed through the same app;
* ``GET /_bench/collector`` returns the CPU seconds and the passes of the cyclic
  garbage collector so far (``gc.callbacks``, the collecting thread's time).

With ``BENCH_TRACEMALLOC=N`` it traces allocations (N frames) and the held-streams
phase of ``bench/chat.py`` prints where the memory of the open streams went.
With ``BENCH_PROFILE=FILE`` in its environment it runs under cProfile, timing the
CPU of the serving thread, and writes the profile to FILE when it stops.
"""

from __future__ import annotations

import cProfile
import gc
import os
import sys
import time
import tracemalloc
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent

#: (start, end, "graph" or "upstream") of every timed call since the last ``/_bench/intervals``
INTERVALS: list[tuple[float, float, str]] = []
#: the tracemalloc snapshot that ``/_bench/memory`` compares with
_BASELINE: tracemalloc.Snapshot | None = None
#: CPU seconds (of the collecting thread) and passes of the cyclic garbage collector
COLLECTOR: dict[str, float] = {"seconds": 0.0, "passes": 0}
_collecting_since = 0.0


def _time_collections(phase: str, info: dict[str, int]) -> None:
    global _collecting_since
    if phase == "start":
        _collecting_since = time.thread_time()
    else:
        COLLECTOR["seconds"] += time.thread_time() - _collecting_since
        COLLECTOR["passes"] += 1


def _timed(function: Callable[..., Awaitable[Any]], kind: str) -> Callable[..., Awaitable[Any]]:
    async def timed(*args: Any, **kwargs: Any) -> Any:
        began = time.perf_counter()
        try:
            return await function(*args, **kwargs)
        finally:
            INTERVALS.append((began, time.perf_counter(), kind))

    return timed


def _timed_opening(
    function: Callable[..., AbstractAsyncContextManager[Any]], kind: str
) -> Callable[..., AbstractAsyncContextManager[Any]]:
    """Time entering and leaving the context (the request and the close), not its body."""

    @asynccontextmanager
    async def timed(*args: Any, **kwargs: Any) -> AsyncIterator[Any]:
        manager = function(*args, **kwargs)
        began = time.perf_counter()
        try:
            value = await manager.__aenter__()
        finally:
            INTERVALS.append((began, time.perf_counter(), kind))
        try:
            yield value
        except BaseException:
            began = time.perf_counter()
            try:
                if not await manager.__aexit__(*sys.exc_info()):
                    raise
            finally:
                INTERVALS.append((began, time.perf_counter(), kind))
        else:
            began = time.perf_counter()
            try:
                await manager.__aexit__(None, None, None)
            finally:
                INTERVALS.append((began, time.perf_counter(), kind))

    return timed


def install_hooks() -> None:
    from agent_trio.graph._gateway import GraphGateway
    from agent_trio.upstream import _llm, _upstream

    upstream = _upstream.Upstream
    GraphGateway._call = _timed(GraphGateway._call, "graph")  # type: ignore[method-assign]
    upstream.post_json = _timed(upstream.post_json, "upstream")  # type: ignore[method-assign]
    upstream.stream_json = _timed_opening(upstream.stream_json, "upstream")  # type: ignore[method-assign]
    _llm._EventStream.__anext__ = _timed(_llm._EventStream.__anext__, "upstream")  # type: ignore[method-assign]


def add_routes() -> None:
    """Give every app that ``serve`` creates the two bench routes."""
    from agent_trio.app import _serve

    async def ping() -> dict[str, bool]:
        return {"ok": True}

    async def intervals() -> dict[str, list[tuple[float, float, str]]]:
        taken = INTERVALS[:]
        INTERVALS.clear()
        return {"intervals": taken}

    async def collector() -> dict[str, float]:
        return dict(COLLECTOR)

    async def memory() -> dict[str, list[str]]:
        """With ``BENCH_TRACEMALLOC``: the first call takes a baseline, later ones the
        largest growth since it, by line."""
        global _BASELINE
        if not tracemalloc.is_tracing():
            return {"top": []}
        snapshot = tracemalloc.take_snapshot()
        if _BASELINE is None:
            _BASELINE = snapshot
            return {"top": []}
        stats = snapshot.compare_to(_BASELINE, "lineno")
        grown = sum(stat.size_diff for stat in stats)
        by_file = snapshot.compare_to(_BASELINE, "filename")
        return {
            "top": [f"total traced growth {grown / 1024:.0f} KiB"]
            + [str(stat) for stat in by_file[:25]]
            + [str(stat) for stat in stats[:40]]
        }

    create_app = _serve.create_app

    def create_app_with_routes(*args: Any, **kwargs: Any) -> Any:
        app = create_app(*args, **kwargs)
        app.add_url_rule("/_bench/ping", "bench_ping", ping, methods=["GET"])
        app.add_url_rule("/_bench/intervals", "bench_intervals", intervals, methods=["GET"])
        app.add_url_rule("/_bench/memory", "bench_memory", memory, methods=["GET"])
        app.add_url_rule("/_bench/collector", "bench_collector", collector, methods=["GET"])
        return app

    _serve.create_app = create_app_with_routes  # type: ignore[assignment]


def main() -> int:
    sys.path.insert(0, str(ROOT))
    if os.environ.get("BENCH_TRACEMALLOC"):
        tracemalloc.start(int(os.environ["BENCH_TRACEMALLOC"]))
    install_hooks()
    add_routes()
    gc.callbacks.append(_time_collections)
    from agent_trio._cli import main as cli

    options = sys.argv[1:]
    arguments = ["serve", "--config", str(ROOT / "hypercorn.toml"), *options]
    profile_to = os.environ.get("BENCH_PROFILE")
    if not profile_to:
        return cli(arguments)
    profile = cProfile.Profile(time.thread_time)  # CPU of the serving thread
    try:
        return profile.runcall(cli, arguments)
    finally:
        profile.dump_stats(profile_to)


if __name__ == "__main__":
    raise SystemExit(main())
