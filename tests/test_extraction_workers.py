"""Extraction workers: real worker processes, started when ingestion keeps coming.

Waits are bounded polls for a condition (a process started, exited); the one wait
that is a sleep only makes sure that more than ``idle_timeout`` has passed. Where a
step must follow the one before within ``idle_timeout``, that is ``STARTS_WITHIN``,
the bound every poll here has.
"""

from __future__ import annotations

import os
import signal
import time
from functools import partial
from pathlib import Path

import pytest
import trio

from agent_trio.document import Chunk, SourceDocument
from agent_trio.extract import ExtractionWorkers, RuleExtractor, open_extraction_workers
from agent_trio.ingest._chunker import chunk_text
from agent_trio.ingest._reader import read_document
from tests.retrieval_questions import CORPUS_DIR
from tests.support.chat import poll
from tests.support.service import pid_alive

#: a worker process takes a second or two to start on a busy machine; this bounds it
STARTS_WITHIN = 60.0


def worker_pid(_: object) -> int:
    """A job: the process it runs in."""
    return os.getpid()


def touch_then_sleep(path: str) -> None:
    """A job that says it runs (``path`` exists), then runs for an hour."""
    Path(path).touch()
    time.sleep(3600)


def corpus() -> list[tuple[SourceDocument, list[Chunk]]]:
    docs = [read_document(path) for path in sorted(CORPUS_DIR.iterdir())]
    return [(doc, chunk_text(doc.content, size=1000, overlap=200)) for doc in docs]


async def started(workers: ExtractionWorkers) -> None:
    """Start ``workers`` (``start_after`` 0) and wait until they are up."""
    assert not workers.up(1)
    await poll(lambda: workers.state == "up", within=STARTS_WITHIN)


async def test_a_worker_process_extracts_what_this_process_would() -> None:
    docs = corpus()
    here = await RuleExtractor().extract_each(docs)
    async with open_extraction_workers(processes=1, start_after=0) as workers:
        await started(workers)
        pid = await workers.run_sync(worker_pid, None, documents=0)
        assert pid not in (None, os.getpid())

        there = await RuleExtractor(workers).extract_each(docs)

        assert workers.documents_sent == len(docs) == 12
        assert workers.limiter.borrowed_tokens == 0
    assert there == here
    assert sum(len(e.facts) for e in there) > 0  # something was found
    assert not pid_alive(pid)  # closing the workers ended the process


async def test_workers_start_after_enough_documents_without_a_pause() -> None:
    docs = corpus()
    async with open_extraction_workers(
        processes=1, start_after=4, idle_timeout=STARTS_WITHIN
    ) as workers:
        extractor = RuleExtractor(workers)
        await extractor.extract_each(docs[:3])
        assert workers.state == "down"
        await extractor.extract_each(docs[:1])  # 4 without a pause
        assert workers.state == "starting"
        assert workers.documents_sent == 0  # extracted here meanwhile

        await poll(lambda: workers.state == "up", within=STARTS_WITHIN)
        await extractor.extract_each(docs[:2])
        assert workers.documents_sent == 2
        assert workers.starts == 1


async def test_a_pause_starts_the_count_again_and_an_idle_worker_exits() -> None:
    docs = corpus()
    async with open_extraction_workers(processes=1, start_after=4, idle_timeout=0.5) as workers:
        extractor = RuleExtractor(workers)
        await extractor.extract_each(docs[:3])
        await trio.sleep(0.6)  # a pause longer than idle_timeout: the count starts again
        await extractor.extract_each(docs[:3])
        assert workers.state == "down"
        await extractor.extract_each(docs[:4])  # enough, however long the steps took
        assert workers.state == "starting"
        await poll(lambda: workers.state == "up", within=STARTS_WITHIN)

        # idle for idle_timeout, the worker exits; the next documents count again
        await poll(lambda: not workers.up(1), within=STARTS_WITHIN)
        assert workers.state == "down"
        assert workers.starts == 1


async def test_a_cancelled_job_kills_its_worker_and_gives_its_token_back(
    tmp_path: Path,
) -> None:
    running = tmp_path / "running"
    async with open_extraction_workers(processes=1, start_after=0) as workers:
        await started(workers)
        pid = await workers.run_sync(worker_pid, None, documents=0)
        assert pid is not None
        assert pid_alive(pid)

        with trio.CancelScope() as scope:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(
                    partial(workers.run_sync, touch_then_sleep, str(running), documents=1)
                )
                await poll(running.exists, within=STARTS_WITHIN)  # the worker runs the job
                # the service's leak check: the job accounts for the token it holds
                assert workers.limiter.borrowed_tokens == workers.jobs_in_flight == 1
                scope.cancel()
        assert scope.cancelled_caught
        assert workers.limiter.borrowed_tokens == workers.jobs_in_flight == 0
        await poll(lambda: not pid_alive(pid), within=STARTS_WITHIN)

        # the worker is gone: documents are extracted here and count toward a new one
        assert not workers.up(1)
        assert workers.state == "starting"
        await poll(lambda: workers.state == "up", within=STARTS_WITHIN)
        assert await workers.run_sync(worker_pid, None, documents=0) not in (None, pid)


async def test_a_worker_killed_during_a_job_means_extracting_here(tmp_path: Path) -> None:
    docs = corpus()
    here = await RuleExtractor().extract_each(docs[:2])
    running = tmp_path / "running"
    async with open_extraction_workers(processes=1, start_after=0) as workers:
        await started(workers)
        pid = await workers.run_sync(worker_pid, None, documents=0)
        assert pid is not None

        results: list[object] = []

        async def job() -> None:
            results.append(await workers.run_sync(touch_then_sleep, str(running), documents=1))

        async with trio.open_nursery() as nursery:
            nursery.start_soon(job)
            await poll(running.exists, within=STARTS_WITHIN)  # the worker runs the job
            os.kill(pid, signal.SIGKILL)  # as an out-of-memory killer would

        assert results == [None]  # lost: the caller extracts itself
        assert workers.state == "down"
        assert workers.documents_sent == 0
        assert workers.limiter.borrowed_tokens == 0
        assert await RuleExtractor(workers).extract_each(docs[:2]) == here


async def test_a_worker_leaves_sigterm_to_the_service() -> None:
    # a service stopped by its process group or control group (timeout, systemd):
    # its workers get the SIGTERM too, and stay until the service closes them
    async with open_extraction_workers(processes=1, start_after=0) as workers:
        await started(workers)
        pid = await workers.run_sync(worker_pid, None, documents=0)
        assert pid is not None
        os.kill(pid, signal.SIGTERM)
        assert await workers.run_sync(worker_pid, None, documents=0) == pid
    assert not pid_alive(pid)


async def test_closing_after_a_worker_was_killed_is_not_an_error(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async with open_extraction_workers(processes=1, start_after=0) as workers:
        await started(workers)
        pid = await workers.run_sync(worker_pid, None, documents=0)
        assert pid is not None
        os.kill(pid, signal.SIGKILL)
        await poll(lambda: not pid_alive(pid), within=STARTS_WITHIN)
    assert "had ended before the close" in caplog.text
