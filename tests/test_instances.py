"""Several instances of the service against one graph server, as real processes.

The engine runs as a server of its own (``python -m agent_trio engine``), the path a
Neo4j server or cluster takes: each instance reaches it through ``NEO4J_URI`` and
``ARCADEDB_HTTP_URL``. Everything an instance knows is in the graph, so a session
started on one continues on another, and a document ingested through one is found
through the other. An API's per-minute limit shared by N instances is respected by
configuration: each gets the limit divided by N (docs/operations.md).

The embeddings API is the loopback fake of ``tests/support`` (16 dimensions); there
is no LLM (extractive answers).
"""

from __future__ import annotations

import os
import re
import selectors
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import trio

from tests.support.fake_embeddings import FakeEmbeddings
from tests.support.fake_embeddings import serve as serve_embeddings
from tests.support.metrics import sample_value
from tests.support.server import HANG, poll_health, running_server
from tests.support.service import engine_pids

pytestmark = [pytest.mark.engine, pytest.mark.slow]

_SETTING = re.compile(r"^([A-Z0-9_]+)=(.*)$")


@dataclass(frozen=True)
class StandaloneEngine:
    process: subprocess.Popen[bytes]
    data_dir: Path
    #: what an instance needs to reach it, as the engine printed it (and the password)
    env: dict[str, str]


def _read_settings(process: subprocess.Popen[bytes]) -> dict[str, str]:
    """The ``NAME=value`` lines the engine prints once it is ready (bounded by HANG)."""
    assert process.stdout is not None
    fd = process.stdout.fileno()
    output = b""
    deadline = time.monotonic() + HANG
    with selectors.DefaultSelector() as selector:
        selector.register(fd, selectors.EVENT_READ)
        while b"ARCADEDB_HTTP_URL=" not in output or not output.endswith(b"\n"):
            assert time.monotonic() < deadline, "the engine did not say it was ready"
            if not selector.select(timeout=1.0):
                assert process.poll() is None, "the engine exited while starting"
                continue
            chunk = os.read(fd, 4096)
            assert chunk, "the engine closed its output while starting"
            output += chunk
    lines = output.decode().splitlines()
    return {m[1]: m[2] for line in lines if (m := _SETTING.match(line.strip()))}


@pytest.fixture(scope="module")
def standalone_engine(tmp_path_factory: pytest.TempPathFactory) -> Iterator[StandaloneEngine]:
    """``python -m agent_trio engine`` on free ports, for this module's tests; at the
    end it must stop on SIGTERM, exit 0 and leave no engine process."""
    root = tmp_path_factory.mktemp("standalone")
    data_dir = root / "engine-data"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("NEO4J_", "ARCADEDB_"))}
    env["AGENT_DATA_DIR"] = str(data_dir)
    with (root / "engine.log").open("w") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "agent_trio", "engine", "--bolt-port", "0", "--http-port", "0"],
            cwd=root,
            env=env,
            stdout=subprocess.PIPE,
            stderr=log,
        )
    try:
        settings = _read_settings(process)
        password = (data_dir / "engine-password").read_text().strip()
        yield StandaloneEngine(process, data_dir, {**settings, "NEO4J_PASSWORD": password})
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=HANG) == 0
        assert engine_pids(data_dir) == []
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        assert process.stdout is not None
        process.stdout.close()


def instance_env(engine: StandaloneEngine, embeddings_url: str, **extra: str) -> dict[str, str]:
    return {
        **engine.env,
        "EMBEDDING_PROVIDER": "openai",
        "EMBEDDING_BASE_URL": embeddings_url,
        "EMBEDDING_MODEL": "fake",
        "EMBEDDING_DIMENSIONS": "16",
        "EMBEDDING_RATE_LIMIT_PER_MINUTE": "0",
        **extra,
    }


@asynccontextmanager
async def instances(tmp_path: Path, count: int, env: dict[str, str]) -> AsyncIterator[list[str]]:
    """``count`` servers (hypercorn) started side by side on the same graph; their URLs."""
    async with AsyncExitStack() as stack:
        servers = []
        for n in range(count):
            home = tmp_path / f"instance-{n}"
            home.mkdir()
            servers.append(await stack.enter_async_context(running_server(home, env=env)))
        client = await stack.enter_async_context(httpx.AsyncClient(timeout=HANG))
        with trio.fail_after(HANG):
            async with trio.open_nursery() as nursery:
                for process, url, _ in servers:
                    nursery.start_soon(poll_health, client, url, process)
        yield [url for _, url, _ in servers]
        for _, _, data_dir in servers:
            assert not data_dir.exists()  # with NEO4J_URI set, nothing is kept locally
        for process, _, _ in servers:
            process.send_signal(signal.SIGTERM)
        with trio.fail_after(HANG):
            for process, _, _ in servers:
                assert await process.wait() == 0


async def test_a_session_and_a_document_are_shared_by_two_instances(
    tmp_path: Path, standalone_engine: StandaloneEngine
) -> None:
    fake = FakeEmbeddings(dimensions=16)
    async with trio.open_nursery() as nursery:
        embeddings_url = await nursery.start(serve_embeddings, fake)
        env = instance_env(standalone_engine, embeddings_url)
        async with (
            instances(tmp_path, 2, env) as (first, second),
            httpx.AsyncClient(timeout=HANG) as client,
        ):
            # both created the schema, at the same time, on the same server: both are up
            for url in (first, second):
                health = (await client.get(f"{url}/health")).json()
                assert health["checks"]["graph"]["status"] == "ok"
                assert health["checks"]["graph"]["embedded"] is False

            # a document ingested through the first is found through the second
            document = {
                "title": "Quillfeather tides",
                "source": "tides.md",
                "content": "The Quillfeather estuary floods twice a day. Its tides are "
                "measured at the Varnhold gauge, which the harbour office reads at dawn.",
            }
            created = await client.post(f"{first}/documents", json=document)
            assert created.status_code == 201, created.text
            doc_id = created.json()["id"]
            found = await client.post(
                f"{second}/search/hybrid", json={"query": "Quillfeather estuary tides"}
            )
            assert found.status_code == 200, found.text
            assert doc_id in [r["document_id"] for r in found.json()["results"]]
            assert (await client.get(f"{second}/documents/{doc_id}")).status_code == 200

            # a session started on the first continues on the second
            session = "shared-session"
            one = await chat(client, first, session, "Where are the Quillfeather tides measured?")
            two = await chat(client, second, session, "And who reads the Varnhold gauge?")
            assert one["session_id"] == two["session_id"] == session
            for url in (first, second):
                stored = (await client.get(f"{url}/sessions/{session}")).json()
                assert [(m["role"], m["status"]) for m in stored["messages"]] == [
                    ("user", "complete"),
                    ("assistant", "complete"),
                ] * 2
                assert stored["messages"][2]["content"] == "And who reads the Varnhold gauge?"
        nursery.cancel_scope.cancel()


async def chat(client: httpx.AsyncClient, url: str, session: str, message: str) -> dict[str, Any]:
    response = await client.post(f"{url}/chat", json={"message": message, "session_id": session})
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def test_a_shared_per_minute_limit_divided_between_instances_is_respected(
    tmp_path: Path, standalone_engine: StandaloneEngine
) -> None:
    """The API allows 20 requests a minute for the key both instances use; each is
    configured with 20 / 2. More searches than that arrive at both at once: the API
    sees its 20 and not one 429, and the rest wait in each instance for the minute."""
    api_limit, count = 20, 2
    fake = FakeEmbeddings(dimensions=16, rate_limit=api_limit)
    async with trio.open_nursery() as nursery:
        embeddings_url = await nursery.start(serve_embeddings, fake)
        env = instance_env(
            standalone_engine,
            embeddings_url,
            EMBEDDING_RATE_LIMIT_PER_MINUTE=str(api_limit // count),
            EMBEDDING_BATCH_SIZE="1",  # one request per query: the requests are the demand
        )
        async with (
            instances(tmp_path, count, env) as urls,
            httpx.AsyncClient(timeout=HANG) as client,
        ):
            before = len(fake.requests)  # startup probes, if any, count against the limit
            async with trio.open_nursery() as searches:
                for url in urls:
                    for n in range(api_limit):  # twice the share of each instance
                        searches.start_soon(search, client, url, f"query {n} for {url}")
                with trio.fail_after(HANG):
                    for url in urls:  # until each has used its share and the rest wait
                        await poll_metrics(client, url, share=api_limit // count)
                searches.cancel_scope.cancel()
            assert fake.counts.get("429", 0) == 0, fake.stats()
            assert len(fake.requests) - before <= api_limit
            assert len(fake.accepted) <= api_limit
        nursery.cancel_scope.cancel()


async def search(client: httpx.AsyncClient, url: str, query: str) -> None:
    await client.post(f"{url}/search/vector", json={"query": query})


async def poll_metrics(client: httpx.AsyncClient, url: str, *, share: int) -> None:
    """Until the instance's embedding rate window is full and requests wait for it."""
    while True:
        text = (await client.get(f"{url}/metrics")).text
        in_window = sample_value(text, _EMBEDDING.format("agent_trio_upstream_rate_in_window"))
        waiting = sample_value(text, _EMBEDDING.format("agent_trio_upstream_rate_waiting"))
        assert sample_value(text, _EMBEDDING.format("agent_trio_upstream_rate_limit")) == share
        assert in_window <= share
        if in_window == share and waiting > 0:
            return
        await trio.sleep(0.1)


#: a gauge of the embedding upstream, by name
_EMBEDDING = '{}{{upstream="embedding"}}'


async def test_a_second_engine_on_the_same_data_directory_exits_1_in_one_line(
    standalone_engine: StandaloneEngine,
) -> None:
    env = dict(os.environ, AGENT_DATA_DIR=str(standalone_engine.data_dir))
    command = [sys.executable, "-m", "agent_trio", "engine", "--bolt-port", "0", "--http-port", "0"]
    with trio.fail_after(HANG):
        result = await trio.run_process(
            command, env=env, capture_stdout=True, capture_stderr=True, check=False
        )
    assert result.returncode == 1
    assert result.stdout == b""  # no settings: nothing to reach
    lines = result.stderr.decode().strip().splitlines()
    assert len(lines) == 1, lines
    assert lines[0].startswith("agent-trio engine: ")
    assert str(standalone_engine.data_dir) in lines[0]


async def test_documents_posted_through_both_instances_at_once_are_all_stored(
    tmp_path: Path, standalone_engine: StandaloneEngine
) -> None:
    """Documents that name the same people and places, posted side by side through
    two instances: each instance writes one document at a time, the two together do
    not, and every document must still be stored whole."""
    fake = FakeEmbeddings(dimensions=16)
    per_instance = 8
    async with trio.open_nursery() as nursery:
        embeddings_url = await nursery.start(serve_embeddings, fake)
        env = instance_env(standalone_engine, embeddings_url)
        async with (
            instances(tmp_path, 2, env) as urls,
            httpx.AsyncClient(timeout=HANG) as client,
        ):
            answers: dict[str, httpx.Response] = {}

            async def post(url: str, n: int) -> None:
                source = f"shared-{n}-{url.rsplit(':', 1)[1]}.md"
                content = (
                    f"Report {n}. Ada Lovelace met Charles Babbage in London in 1833. "
                    f"Babbage showed Lovelace the Difference Engine at his house in London. "
                    f"Note {n} of {source}."
                )
                answers[source] = await client.post(
                    f"{url}/documents", json={"source": source, "content": content}
                )

            with trio.fail_after(HANG):
                async with trio.open_nursery() as posts:
                    for n in range(per_instance):
                        for url in urls:
                            posts.start_soon(post, url, n)
            failed = {
                s: (r.status_code, r.text) for s, r in answers.items() if r.status_code != 201
            }
            assert failed == {}
            listed = (await client.get(f"{urls[0]}/documents", params={"limit": 100})).json()
            sources = {d["source"] for d in listed["documents"]}
            assert set(answers) <= sources
        nursery.cancel_scope.cancel()
