"""The ingestion pipeline on the real engine, with a fake embedding API.

Expected counts are computed from the documents with the reader, chunker and rule
extractor, then compared with what the pipeline reports and what the graph holds.
"""

from __future__ import annotations

import dataclasses
import gc
import shutil
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import trio
import trio.testing

from agent_trio import IngestError, UpstreamRejected
from agent_trio.document import Chunk, SourceDocument
from agent_trio.extract import (
    Entity,
    Extraction,
    Extractor,
    RuleExtractor,
    open_extraction_workers,
)
from agent_trio.graph import ChunkRecord, DocumentRecord, Statement, StoredVersion
from agent_trio.ingest import (
    DocumentOutcome,
    Ingestor,
    chunk_text,
    embedding_text,
    iter_paths,
    parse_document,
    read_document,
)
from agent_trio.service import embedding_config
from agent_trio.upstream import Embedder, open_embedder
from tests._kb import (
    DIMENSIONS,
    KnowledgeBase,
    embedding_settings,
    ingest_database,
    kb,
    open_fake_embedder,
)
from tests.retrieval_questions import CORPUS_DIR
from tests.support.chat import poll
from tests.support.checks import (
    assert_limiters_free,
    cut_at,
    living_tasks,
    pending_driver_tasks,
)
from tests.support.fake_embeddings import FakeEmbeddings, hashed_vector

pytestmark = pytest.mark.engine
__all__ = ["ingest_database", "kb"]  # fixtures used by name

CHUNK_SIZE = 1000
CHUNK_OVERLAP = 200


@dataclass(frozen=True)
class Expected:
    """What ingesting one file must store, computed without the pipeline."""

    id: str
    source: str
    chunks: list[str]
    entities: set[str]
    facts: int


async def expected_for(path: Path, size: int = CHUNK_SIZE) -> Expected:
    doc = read_document(path)
    chunks = chunk_text(doc.content, size=size, overlap=CHUNK_OVERLAP)
    extraction = await RuleExtractor().extract(doc, chunks)
    return Expected(
        doc.document_id,
        doc.source,
        [c.text for c in chunks],
        {e.key for e in extraction.entities},
        len(extraction.facts),
    )


async def expected_corpus(folder: Path) -> dict[str, Expected]:
    return {e.id: e for e in [await expected_for(p) for p in iter_paths([folder])]}


@asynccontextmanager
async def ingestor_on(
    kb: KnowledgeBase,
    tmp_path: Path,
    fake: FakeEmbeddings,
    *,
    extractor: Extractor | None = None,
    **settings: object,
) -> AsyncIterator[tuple[Ingestor, Embedder]]:
    values = embedding_settings(tmp_path, **settings)
    async with open_fake_embedder(values, fake) as embedder:
        ingestor = Ingestor(
            kb.store,
            embedder,
            extractor or RuleExtractor(),
            chunk_size=CHUNK_SIZE,
            chunk_overlap=CHUNK_OVERLAP,
        )
        yield ingestor, embedder


async def stored_chunks(kb: KnowledgeBase, document_id: str) -> list[str]:
    rows = await kb.gateway.query(
        "MATCH (c:Chunk)-[:PART_OF]->(d:Document {id: $id}) RETURN c.text AS text, "
        "c.index AS index ORDER BY c.index",
        {"id": document_id},
    )
    return [r["text"] for r in rows]


async def stored_facts(kb: KnowledgeBase, document_id: str) -> int:
    rows = await kb.gateway.query(
        "MATCH ()-[r:RELATES_TO]->() WHERE r.document_id = $id RETURN count(r) AS n",
        {"id": document_id},
    )
    return int(rows[0]["n"])


async def assert_whole(kb: KnowledgeBase, expected: dict[str, Expected]) -> set[str]:
    """Every stored document has exactly its expected chunks and facts; return their ids."""
    rows = await kb.gateway.query("MATCH (d:Document) RETURN d.id AS id, d.chunk_count AS n")
    for row in rows:
        want = expected[row["id"]]
        assert row["n"] == len(want.chunks), want.source
        assert await stored_chunks(kb, row["id"]) == want.chunks, want.source
        assert await stored_facts(kb, row["id"]) == want.facts, want.source
    return {row["id"] for row in rows}


def copy_corpus(tmp_path: Path) -> Path:
    folder = tmp_path / "corpus"
    shutil.copytree(CORPUS_DIR, folder)
    return folder


# -- a whole corpus -----------------------------------------------------------------


async def test_ingesting_the_corpus_stores_every_document_whole(
    kb: KnowledgeBase, tmp_path: Path
) -> None:
    expected = await expected_corpus(CORPUS_DIR)
    fake = FakeEmbeddings()
    async with ingestor_on(kb, tmp_path, fake) as (ingestor, _):
        summary = await ingestor.ingest_paths([CORPUS_DIR])

    assert summary.failed == []
    assert summary.documents == len(expected) == 12
    assert summary.chunks == sum(len(e.chunks) for e in expected.values())
    assert summary.entities == sum(len(e.entities) for e in expected.values())
    assert summary.facts == sum(e.facts for e in expected.values())
    assert summary.skipped == 0
    assert await assert_whole(kb, expected) == set(expected)
    assert await kb.count("Entity") == len(set().union(*(e.entities for e in expected.values())))
    assert fake.texts == summary.chunks  # every chunk embedded once


async def test_documents_extracted_in_a_worker_process_are_stored_the_same(
    kb: KnowledgeBase, tmp_path: Path
) -> None:
    expected = await expected_corpus(CORPUS_DIR)
    async with open_extraction_workers(processes=1, start_after=0) as workers:
        assert not workers.up(1)  # start them
        await poll(lambda: workers.state == "up", within=60)
        extractor = RuleExtractor(workers)
        async with ingestor_on(kb, tmp_path, FakeEmbeddings(), extractor=extractor) as (
            ingestor,
            _,
        ):
            summary = await ingestor.ingest_paths([CORPUS_DIR], clean=True)

        assert workers.documents_sent == 12  # every document went to the worker
    assert summary.failed == []
    assert summary.documents == 12
    assert summary.entities == sum(len(e.entities) for e in expected.values())
    assert summary.facts == sum(e.facts for e in expected.values())
    assert await assert_whole(kb, expected) == set(expected)
    assert await kb.count("Entity") == len(set().union(*(e.entities for e in expected.values())))


def answer_when_quiet(fake: FakeEmbeddings, kb: KnowledgeBase) -> None:
    """Make ``fake`` hold each request until the rest of the pipeline can do nothing
    more: every task blocked, no file read in a thread, no graph call running (so the
    reader waits on a full queue, or is done). A slow API, whatever the speed of
    everything else."""

    async def hold(number: int, request: httpx.Request) -> None:
        while True:
            await trio.testing.wait_all_tasks_blocked()
            threads = trio.to_thread.current_default_thread_limiter().borrowed_tokens
            if threads == 0 and kb.gateway.limiter.borrowed_tokens == 0:
                return
            await trio.sleep(0.001)  # a thread or the engine is still at work: poll

    fake.script = hold


async def test_documents_waiting_for_the_embedder_share_one_request(
    kb: KnowledgeBase, tmp_path: Path
) -> None:
    # One worker and a slow API: while a request is answered, the reader queues the
    # other documents, and the worker takes them up together.
    fake = FakeEmbeddings()
    answer_when_quiet(fake, kb)
    async with ingestor_on(kb, tmp_path, fake) as (ingestor, _):
        ingestor.embed_workers = 1
        summary = await ingestor.ingest_paths([CORPUS_DIR])

    assert summary.failed == []
    assert summary.documents == 12
    assert fake.texts == summary.chunks
    assert len(fake.requests) < summary.documents / 2
    assert max(len(batch) for batch in fake.batches) <= ingestor.batch_texts


async def test_chunks_are_cut_to_what_the_embedder_reads_whole(
    kb: KnowledgeBase, tmp_path: Path
) -> None:
    # an embedder that reads 300 characters: the 1000-character chunks are cut again
    content = "# Inventory\n\n" + " ".join(f"Part {n} is kept in bay {n % 9}." for n in range(60))
    fake = FakeEmbeddings()
    async with open_embedder(
        embedding_config(embedding_settings(tmp_path)),
        transport=fake.transport(),
        max_text_chars=300,
    ) as embedder:
        ingestor = Ingestor(
            kb.store, embedder, RuleExtractor(), chunk_size=CHUNK_SIZE, chunk_overlap=0
        )
        outcome = await ingestor.ingest(parse_document("inventory.md", content))
        truncated = embedder.statistics().counters["texts_truncated"]

    assert len(chunk_text(content, size=CHUNK_SIZE, overlap=0)) < outcome.chunk_count
    stored = await stored_chunks(kb, outcome.id)
    assert len(stored) == outcome.chunk_count
    assert all(len(text) <= 300 for batch in fake.batches for text in batch)
    assert truncated == 0  # nothing cut off: every chunk was sent whole
    assert " ".join(stored).split() == content.split()  # in order, each word once


def test_a_chunk_is_embedded_under_its_headings_each_said_once() -> None:
    content = (
        "# Guide\n\nIntro to the guide.\n\n## Setup\n\n"
        + "Install the tool first. " * 12
        + "\n\nThen run it."
    )
    intro, setup, rest = chunk_text(content, size=200, overlap=0)
    assert embedding_text(intro) == intro.text == "# Guide\n\nIntro to the guide."
    assert setup.text.startswith("## Setup\n\nInstall")
    assert embedding_text(setup) == "Guide\n\n" + setup.text
    assert not rest.text.startswith("#")
    assert embedding_text(rest) == "Guide > Setup\n\n" + rest.text
    (plain,) = chunk_text("No headings here.", size=300, overlap=0)
    assert embedding_text(plain) == "No headings here."


async def test_stored_chunks_carry_their_embedding_and_provenance(
    kb: KnowledgeBase, tmp_path: Path
) -> None:
    path = CORPUS_DIR / "kestrel-labs-founding.md"
    doc = read_document(path)
    chunks = chunk_text(doc.content, size=CHUNK_SIZE, overlap=CHUNK_OVERLAP)
    nested = next(c for c in chunks if len(c.heading_path) > 1)
    async with ingestor_on(kb, tmp_path, FakeEmbeddings()) as (ingestor, _):
        await ingestor.ingest_paths([path])

    hits = await kb.store.vector_search(hashed_vector(embedding_text(nested), DIMENSIONS), 1)
    assert hits[0].chunk_id == f"{doc.document_id}:{nested.index}"
    assert hits[0].raw_score == pytest.approx(1.0, abs=1e-4)
    assert hits[0].metadata["heading_path"] == list(nested.heading_path)
    assert hits[0].metadata["char_start"] == nested.start
    assert hits[0].metadata["author"] == doc.metadata["author"]  # the front matter's
    # facts and mentions made it too: the founders are linked to the company
    timeline = await kb.store.entity_timeline("Kestrel Labs")
    assert any("Ines Marlow" in f.fact for f in timeline)


# -- idempotence --------------------------------------------------------------------


async def test_reingesting_unchanged_documents_embeds_and_writes_nothing(
    kb: KnowledgeBase, tmp_path: Path
) -> None:
    fake = FakeEmbeddings()
    async with ingestor_on(kb, tmp_path, fake) as (ingestor, _):
        first = await ingestor.ingest_paths([CORPUS_DIR])
        before, _ = await kb.store.list_documents(100, 0)
        requests, replacements = len(fake.requests), kb.store.replacements
        second = await ingestor.ingest_paths([CORPUS_DIR])
        after, _ = await kb.store.list_documents(100, 0)

    assert second.skipped == first.documents == 12
    assert (second.documents, second.chunks, second.failed) == (0, 0, [])
    assert len(fake.requests) == requests  # nothing embedded
    assert kb.store.replacements == replacements  # nothing written
    assert {d.id: d.updated_at for d in after} == {d.id: d.updated_at for d in before}


async def test_documents_waiting_for_the_check_share_one_query(
    kb: KnowledgeBase, tmp_path: Path
) -> None:
    fake = FakeEmbeddings()
    async with ingestor_on(kb, tmp_path, fake) as (ingestor, _):
        await ingestor.ingest_paths([CORPUS_DIR])
        steps, store = ingestor._steps, kb.store
        prepared: list[str] = []
        prepare_file, versions_of = steps.prepare_file_in_thread, store.document_versions

        async def counted(path: Path) -> Any:
            # counted when the reader's task has its document back (a count in the
            # thread could run ahead of the task, which then still has to send it)
            result = await prepare_file(path)
            prepared.append(path.name)
            return result

        groups: list[list[str]] = []

        async def held_versions(ids: Sequence[str]) -> dict[str, StoredVersion]:
            groups.append(list(ids))
            if len(groups) == 1:  # the others are read meanwhile, and wait for the check
                with trio.fail_after(30):
                    while len(prepared) < 12:  # noqa: ASYNC110 - a bounded poll of a count
                        await trio.sleep(0.01)
                await trio.testing.wait_all_tasks_blocked()
            return await versions_of(ids)

        steps.prepare_file_in_thread = counted  # type: ignore[method-assign]
        store.document_versions = held_versions  # type: ignore[method-assign]
        second = await ingestor.ingest_paths([CORPUS_DIR])

    assert second.skipped == 12
    # the first query took what the readers had ready; one more for all that waited
    assert len(groups) == 2
    assert len(groups[0]) <= 3 < len(groups[1])
    assert len(set(groups[0] + groups[1])) == 12


#: the corpus document the tests below change, and the text of a new version of it:
#: it names an entity that no corpus document names
SUMMIT = "gridedge-summit-2021.md"
ZEPHYR = "# Zephyr\n\nOrla Quinn joined Zephyr Analytics in Oslo in May 2022.\n"


async def test_a_changed_document_is_replaced_and_its_old_version_is_gone(
    kb: KnowledgeBase, tmp_path: Path
) -> None:
    folder = copy_corpus(tmp_path)
    target = folder / SUMMIT
    async with ingestor_on(kb, tmp_path, FakeEmbeddings()) as (ingestor, _):
        await ingestor.ingest_paths([folder])
        old = await expected_for(target)
        assert await kb.store.find_entity("GridEdge Summit") is not None
        target.write_text(f"---\ntitle: Zephyr notes\n---\n\n{ZEPHYR}", encoding="utf-8")
        summary = await ingestor.ingest_paths([folder])

    new = await expected_for(target)
    assert (summary.documents, summary.skipped, summary.failed) == (1, 11, [])
    assert new.id == old.id
    assert await stored_chunks(kb, new.id) == new.chunks != old.chunks
    assert await stored_facts(kb, new.id) == new.facts
    stored = await kb.store.get_document(new.id)
    assert stored is not None
    assert stored.title == "Zephyr notes"
    assert await kb.store.find_entity("Zephyr Analytics") is not None
    # no other document names the summit: its entity left with the old version
    assert await kb.store.find_entity("GridEdge Summit") is None
    assert await kb.count("Document") == 12


def record_transactions(kb: KnowledgeBase) -> list[list[str]]:
    """The statements (their text) of each transaction the gateway runs from now on."""
    seen: list[list[str]] = []
    run = kb.gateway.transaction

    async def recorded(statements: Sequence[Statement]) -> list[list[dict[str, Any]]]:
        seen.append([st.query for st in statements])
        return await run(statements)

    kb.gateway.transaction = recorded  # type: ignore[method-assign]
    return seen


def removes_old_versions(statements: list[str]) -> bool:
    return any("DELETE" in text for text in statements)


async def test_new_documents_are_written_without_looking_for_old_versions(
    kb: KnowledgeBase, tmp_path: Path
) -> None:
    folder = copy_corpus(tmp_path)
    target = folder / SUMMIT
    transactions = record_transactions(kb)
    async with ingestor_on(kb, tmp_path, FakeEmbeddings()) as (ingestor, _):
        first = await ingestor.ingest_paths([folder])
        fresh = list(transactions)
        target.write_text(f"{target.read_text(encoding='utf-8')}\nOne more line.\n")
        transactions.clear()
        second = await ingestor.ingest_paths([folder])

    assert first.documents == 12
    assert fresh
    assert not any(removes_old_versions(t) for t in fresh)
    assert (second.documents, second.skipped) == (1, 11)
    assert len(transactions) == 1
    assert removes_old_versions(transactions[0])
    await assert_whole(kb, await expected_corpus(folder))


async def test_a_document_stored_after_the_check_is_replaced_whole(
    kb: KnowledgeBase, tmp_path: Path
) -> None:
    folder = copy_corpus(tmp_path)
    target = folder / SUMMIT
    async with ingestor_on(kb, tmp_path, FakeEmbeddings()) as (ingestor, _):
        await ingestor.ingest_paths([folder])
        target.write_text(ZEPHYR, encoding="utf-8")

        async def nothing_stored(ids: Sequence[str]) -> dict[str, StoredVersion]:
            return {}  # as if each version were written by someone else after the check

        kb.store.document_versions = nothing_stored  # type: ignore[method-assign]
        transactions = record_transactions(kb)
        summary = await ingestor.ingest_paths([folder])

    # each group's try left out the removals and failed whole on the taken chunk ids;
    # then each of its documents alone, in full
    assert not removes_old_versions(transactions[0])
    assert len([t for t in transactions if removes_old_versions(t)]) == 12
    assert (summary.documents, summary.failed) == (12, [])
    assert len(await assert_whole(kb, await expected_corpus(folder))) == 12
    assert await kb.count("Document") == 12
    assert await kb.store.find_entity("Zephyr Analytics") is not None


async def test_changing_the_chunk_size_reingests(kb: KnowledgeBase, tmp_path: Path) -> None:
    path = CORPUS_DIR / "kestrel-labs-founding.md"
    doc = read_document(path)
    async with open_fake_embedder(embedding_settings(tmp_path), FakeEmbeddings()) as embedder:
        first = Ingestor(kb.store, embedder, RuleExtractor(), chunk_size=1000, chunk_overlap=0)
        small = Ingestor(kb.store, embedder, RuleExtractor(), chunk_size=300, chunk_overlap=0)
        assert (await first.ingest(doc)).status == "written"
        assert (await first.ingest(doc)).status == "unchanged"
        outcome = await small.ingest(doc)
    assert outcome.status == "written"
    assert outcome.chunk_count == len(chunk_text(doc.content, size=300, overlap=0))
    assert len(await stored_chunks(kb, doc.document_id)) == outcome.chunk_count


async def test_clean_deletes_every_document_first(kb: KnowledgeBase, tmp_path: Path) -> None:
    other = tmp_path / "other"
    other.mkdir()
    (other / "note.md").write_text("# Note\n\nPetra Lund founded Aurora Works.\n")
    async with ingestor_on(kb, tmp_path, FakeEmbeddings()) as (ingestor, _):
        await ingestor.ingest_paths([CORPUS_DIR])
        summary = await ingestor.ingest_paths([other], clean=True)
    summaries, total = await kb.store.list_documents(100, 0)
    assert (summary.documents, total) == (1, 1)
    assert summaries[0].source == (other / "note.md").as_posix()
    assert await kb.count("Chunk") == summaries[0].chunk_count


# -- one document -------------------------------------------------------------------


async def test_one_document_is_written_then_unchanged(kb: KnowledgeBase, tmp_path: Path) -> None:
    doc = parse_document("api/notes.md", "# Notes\n\nLena Vogt joined Corvid Systems in 2020.")
    extraction = await RuleExtractor().extract(doc, chunk_text(doc.content, size=1000, overlap=0))
    assert extraction.facts  # the outcome counts something
    async with ingestor_on(kb, tmp_path, FakeEmbeddings()) as (ingestor, _):
        written = await ingestor.ingest(doc)
        again = await ingestor.ingest(doc)
        with pytest.raises(IngestError, match=r"api/empty\.md: no text to ingest"):
            await ingestor.ingest(parse_document("api/empty.md", "---\ntitle: x\n---\n"))
    counts = (1, len(extraction.entities), len(extraction.facts))
    assert written == DocumentOutcome(doc.document_id, "api/notes.md", "written", *counts)
    assert again == DocumentOutcome(doc.document_id, "api/notes.md", "unchanged", *counts)
    assert await stored_facts(kb, doc.document_id) == len(extraction.facts)
    assert await kb.count("Document") == 1


async def test_one_document_stored_after_the_check_is_replaced_whole(
    kb: KnowledgeBase, tmp_path: Path
) -> None:
    old = parse_document("api/notes.md", "# Notes\n\nLena Vogt joined Corvid Systems.\n\n" * 40)
    new = parse_document("api/notes.md", "# Notes\n\nOrla Quinn joined Zephyr Analytics.")

    async def nothing_stored(ids: Sequence[str]) -> dict[str, StoredVersion]:
        return {}  # as if the old version were written by someone else after the check

    async with ingestor_on(kb, tmp_path, FakeEmbeddings()) as (ingestor, _):
        await ingestor.ingest(old)
        transactions = record_transactions(kb)
        kb.store.document_versions = nothing_stored  # type: ignore[method-assign]
        written = await ingestor.ingest(new)

    # the write without removals failed whole (the chunk ids are taken), then in full
    assert [removes_old_versions(t) for t in transactions] == [False, True]
    assert written.status == "written"
    assert written.chunk_count == 1
    assert len(await stored_chunks(kb, new.document_id)) == 1
    assert await kb.store.find_entity("Lena Vogt") is None
    assert await kb.store.find_entity("Orla Quinn") is not None


async def test_one_document_lets_upstream_errors_through(kb: KnowledgeBase, tmp_path: Path) -> None:
    doc = parse_document("api/poison.md", "POISON pill.")
    async with ingestor_on(kb, tmp_path, FakeEmbeddings(reject="POISON")) as (ingestor, _):
        with pytest.raises(UpstreamRejected):
            await ingestor.ingest(doc)
    assert await kb.count("Document") == 0


# -- failures -----------------------------------------------------------------------


def write_mixed_folder(tmp_path: Path) -> Path:
    folder = tmp_path / "mixed"
    folder.mkdir()
    (folder / "a-good.md").write_text("# A\n\nIda Berg founded Nordlys Labs in 2019.\n")
    (folder / "b-bad.md").write_text("---\ntitle: [unclosed\n---\n\nText.\n")
    (folder / "c-empty.md").write_text("---\ntitle: Only front matter\n---\n")
    (folder / "d-good.txt").write_text("Jonas Alm joined Nordlys Labs in 2021.\n")
    return folder


async def test_a_failing_document_is_named_and_the_others_are_ingested(
    kb: KnowledgeBase, tmp_path: Path
) -> None:
    folder = write_mixed_folder(tmp_path)
    async with ingestor_on(kb, tmp_path, FakeEmbeddings()) as (ingestor, _):
        summary = await ingestor.ingest_paths([folder])
    assert summary.documents == 2
    assert [source for source, _ in summary.failed] == [
        (folder / "b-bad.md").as_posix(),
        (folder / "c-empty.md").as_posix(),
    ]
    assert summary.failed[0][1].startswith("malformed front matter at line 2")
    assert summary.failed[1][1].startswith("no text to ingest")
    sources = {d.source for d in (await kb.store.list_documents(10, 0))[0]}
    assert sources == {(folder / "a-good.md").as_posix(), (folder / "d-good.txt").as_posix()}


def write_poisoned_folder(tmp_path: Path) -> Path:
    """Six documents; the fourth, ``doc-3.md``, says POISON."""
    folder = tmp_path / "docs"
    folder.mkdir()
    for i in range(6):
        marker = " POISON" if i == 3 else ""
        (folder / f"doc-{i}.md").write_text(f"# Doc {i}\n\nPlain text number {i}.{marker}\n")
    return folder


async def test_a_rejected_text_fails_only_its_document(kb: KnowledgeBase, tmp_path: Path) -> None:
    folder = write_poisoned_folder(tmp_path)
    fake = FakeEmbeddings(reject="POISON")
    async with ingestor_on(kb, tmp_path, fake) as (ingestor, _):
        summary = await ingestor.ingest_paths([folder])
    assert summary.documents == 5
    assert [s for s, _ in summary.failed] == [(folder / "doc-3.md").as_posix()]
    assert "400" in summary.failed[0][1]
    assert await kb.count("Document") == 5


class UnstorableEntity(RuleExtractor):
    """The rule extractor, but a document that says POISON gets an entity whose name
    normalises to nothing: its records cannot be built."""

    async def extract(self, doc: SourceDocument, chunks: Sequence[Chunk]) -> Extraction:
        found = await super().extract(doc, chunks)
        if "POISON" not in doc.content:
            return found
        return dataclasses.replace(found, entities=(*found.entities, Entity("!!!", "", "other")))


async def test_a_document_that_cannot_be_stored_fails_alone(
    kb: KnowledgeBase, tmp_path: Path
) -> None:
    folder = write_poisoned_folder(tmp_path)
    extractor = UnstorableEntity()
    async with ingestor_on(kb, tmp_path, FakeEmbeddings(), extractor=extractor) as (ingestor, _):
        summary = await ingestor.ingest_paths([folder])
    assert summary.documents == 5
    assert [s for s, _ in summary.failed] == [(folder / "doc-3.md").as_posix()]
    assert "cannot be stored" in summary.failed[0][1]
    assert "normalises to nothing" in summary.failed[0][1]
    assert await kb.count("Document") == 5


async def test_an_embedding_outage_fails_every_document_with_its_reason(
    kb: KnowledgeBase, tmp_path: Path
) -> None:
    fake = FakeEmbeddings(status=503)
    async with ingestor_on(kb, tmp_path, fake, upstream_max_attempts=1) as (ingestor, _):
        summary = await ingestor.ingest_paths([CORPUS_DIR])
    assert summary.documents == 0
    assert len(summary.failed) == 12
    assert all(reason.startswith("embedding upstream") for _, reason in summary.failed)
    # the first documents to reach the embedder carry the status; later ones fail fast
    # (several readers: which documents come first is not the order of their names)
    reasons = [reason for _, reason in summary.failed]
    assert any("HTTP 503" in reason for reason in reasons)
    assert any("circuit breaker open" in reason for reason in reasons)
    assert await kb.count("Document") == 0


async def test_missing_paths_are_refused_before_anything_is_done(
    kb: KnowledgeBase, tmp_path: Path
) -> None:
    fake = FakeEmbeddings()
    async with ingestor_on(kb, tmp_path, fake) as (ingestor, _):
        await ingestor.ingest_paths([CORPUS_DIR])
        with pytest.raises(IngestError, match="no such file or folder"):
            await ingestor.ingest_paths([tmp_path / "missing"], clean=True)
    assert await kb.count("Document") == 12  # --clean did not run


# -- concurrency --------------------------------------------------------------------


@dataclass
class InFlight:
    """A progress that tracks documents taken up and not finished yet."""

    current: int = 0
    most: int = 0
    finished: int = 0

    def started(self, total: int) -> None:
        pass

    def document_started(self, source: str) -> None:
        self.current += 1
        self.most = max(self.most, self.current)

    def document_finished(self, outcome: DocumentOutcome) -> None:
        self.current -= 1
        self.finished += 1

    def document_failed(self, source: str, reason: str) -> None:
        self.current -= 1


async def test_stages_overlap_and_the_reader_stays_a_bounded_distance_ahead(
    kb: KnowledgeBase, tmp_path: Path
) -> None:
    folder = tmp_path / "many"
    folder.mkdir()
    for i in range(80):
        (folder / f"note-{i:02}.md").write_text(f"Note {i} says hello to reader {i}.\n")
    settings = {"embedding_max_concurrency": 2, "embedding_batch_size": 2}
    fake = FakeEmbeddings()
    answer_when_quiet(fake, kb)  # each request waits until the reader has filled its room
    progress = InFlight()
    async with ingestor_on(kb, tmp_path, fake, **settings) as (ingestor, embedder):
        ingestor.read_ahead = 4
        stages = ingestor.stages
        summary = await ingestor.ingest_paths([folder], progress=progress)

    assert summary.documents == progress.finished == 80
    assert (stages.embed_workers, stages.batch_texts) == (3, 2)
    assert stages.write_room() == 16
    assert stages.max_in_flight() == 3 + 4 + 5 + 4 + 3 * 2 + 16 + 16 + 1 < 80
    assert stages.embed_workers < progress.most <= stages.max_in_flight()
    assert fake.max_in_flight == embedder.limiter.total_tokens == 2  # the limiter throttles
    assert max(len(b) for b in fake.batches) == 2


async def test_documents_waiting_for_the_writer_share_one_transaction(
    kb: KnowledgeBase, tmp_path: Path
) -> None:
    folder = tmp_path / "many"
    folder.mkdir()
    for i in range(40):
        (folder / f"note-{i:02}.md").write_text(f"Note {i} says hello to reader {i}.\n")
    fake = FakeEmbeddings()

    async def hold_the_first(count: int) -> None:
        # the first transaction waits until the workers have embedded all they can:
        # a full room of documents waiting for the writer, and one in each worker
        if count == 1:
            most = len(kb.store.written[0]) + ingestor.stages.write_room() + 3
            with trio.fail_after(30):
                while fake.texts < most:  # noqa: ASYNC110 - a bounded poll of a count
                    await trio.sleep(0.01)
            # what is left of their work runs on the loop (no thread): let it finish
            await trio.testing.wait_all_tasks_blocked()

    kb.store.before_replace = hold_the_first
    settings = {"embedding_max_concurrency": 2, "embedding_batch_size": 1}
    async with ingestor_on(kb, tmp_path, fake, **settings) as (ingestor, _):
        assert ingestor.stages.embed_workers == 3
        summary = await ingestor.ingest_paths([folder])
    assert summary.documents == kb.store.replacements == 40
    assert kb.store.sizes[1] == ingestor.stages.write_documents == 16  # all it may take
    assert max(kb.store.sizes) == 16
    assert kb.store.transactions == len(kb.store.sizes) < 40
    assert await kb.count("Document") == 40
    assert await kb.count("Chunk") == 40


async def test_a_transaction_that_fails_is_retried_one_document_at_a_time(
    kb: KnowledgeBase, tmp_path: Path
) -> None:
    folder = tmp_path / "docs"
    folder.mkdir()
    for i in range(6):
        (folder / f"doc-{i}.md").write_text(f"# Doc {i}\n\nPlain text number {i}.\n")
    # another document already holds the id of doc-5's first chunk: its write breaks
    # the unique key, and so does any transaction it is part of
    poisoned = read_document(folder / "doc-5.md").document_id
    taken = f"{poisoned}:0"
    squatter = parse_document("squatter.md", "Squatter.")
    await kb.store.replace_document(
        DocumentRecord(squatter.document_id, "Squatter", "squatter.md", "Squatter.", "h", {}),
        [ChunkRecord(taken, 0, "Squatter.", 3, hashed_vector("Squatter.", DIMENSIONS), {})],
    )
    kb.store.written.clear()
    kb.store.replacements = 0
    fake = FakeEmbeddings()
    # doc-4 and doc-5 are read only once the first write has begun, so they share the
    # second one: it holds until every document is embedded, extracted and handed on
    first_write = trio.Event()
    embedded: list[str] = []
    extracted: list[str] = []

    async def wait_for_all(count: int) -> None:
        if count == 1:
            first_write.set()
            with trio.fail_after(30):
                while len(embedded) < 6 or len(extracted) < 6:  # noqa: ASYNC110 - a bounded poll of counts
                    await trio.sleep(0.01)
            # no thread is at work now: what is not blocked is handing documents on
            await trio.testing.wait_all_tasks_blocked()

    kb.store.before_replace = wait_for_all
    async with ingestor_on(kb, tmp_path, fake, embedding_batch_size=1) as (ingestor, _):
        steps = ingestor._steps
        prepare_file, embed, extract = steps.prepare_file_in_thread, steps.embed, steps.extract
        extract_each = steps.extract_each

        async def held_back(path: Path) -> Any:
            if path.name in ("doc-4.md", "doc-5.md"):
                await first_write.wait()
            return await prepare_file(path)

        async def counted_embed(group: Sequence[Any]) -> list[list[list[float]]]:
            vectors = await embed(group)
            embedded.extend(p.doc.source for p in group)
            return vectors

        async def counted_extract(prepared: Any) -> Any:
            extraction = await extract(prepared)
            extracted.append(prepared.doc.source)
            return extraction

        steps.prepare_file_in_thread = held_back  # type: ignore[method-assign]
        steps.embed = counted_embed  # type: ignore[method-assign]

        async def counted_extract_each(group: Sequence[Any]) -> Any:
            found = await extract_each(group)  # the rules' path: the group in one call
            if found is not None:
                extracted.extend(p.doc.source for p in group)
            return found

        steps.extract = counted_extract  # type: ignore[method-assign]
        steps.extract_each = counted_extract_each  # type: ignore[method-assign]
        summary = await ingestor.ingest_paths([folder])
    shared = next(ids for ids in kb.store.written if poisoned in ids)
    assert len(shared) > 1  # the shared write failed, then each of its documents went alone
    after = kb.store.written[kb.store.written.index(shared) + 1 :]
    assert after[: len(shared)] == [[i] for i in shared]
    assert summary.documents == 5
    assert [s for s, _ in summary.failed] == [(folder / "doc-5.md").as_posix()]
    assert summary.failed[0][1].startswith("graph database:")
    assert await kb.count("Document") == 6  # five and the squatter


# -- cancellation -------------------------------------------------------------------


async def assert_released(kb: KnowledgeBase, embedder: Embedder, tasks: list[str]) -> None:
    assert_limiters_free(embedder.limiter, kb.gateway.limiter, kb.store.write_limiter)
    assert await living_tasks() == tasks
    assert pending_driver_tasks(kb.loop) == []


CutPoint = Callable[[trio.CancelScope, FakeEmbeddings, KnowledgeBase], None]


def canceller(scope: trio.CancelScope, *, in_flight: bool) -> Callable[[], None]:
    """Cancel at a statement boundary, or once the statement is on its way."""
    if not in_flight:
        return scope.cancel
    token = trio.lowlevel.current_trio_token()
    return lambda: token.run_sync_soon(scope.cancel)


def at_statement(number: int, *, in_flight: bool = False) -> CutPoint:
    """Cancel at the ``number``-th graph statement of the run (reads and writes)."""

    def arm(scope: trio.CancelScope, fake: FakeEmbeddings, kb: KnowledgeBase) -> None:
        kb.gateway.on_statement = cut_at(number, canceller(scope, in_flight=in_flight))

    return arm


def during_write(number: int, boundary: int, *, in_flight: bool = False) -> CutPoint:
    """Cancel the ``number``-th document write at its ``boundary``-th statement
    (from 0; ``-1``: at its commit)."""

    def arm(scope: trio.CancelScope, fake: FakeEmbeddings, kb: KnowledgeBase) -> None:
        cancel = canceller(scope, in_flight=in_flight)

        def hook(index: int, count: int) -> None:
            if index == (count if boundary < 0 else boundary):
                cancel()

        async def before(replacement: int) -> None:
            kb.gateway.on_statement = hook if replacement == number else None

        kb.store.before_replace = before

    return arm


def during_embedding(number: int) -> CutPoint:
    """Cancel while the ``number``-th embedding request is in flight."""

    def arm(scope: trio.CancelScope, fake: FakeEmbeddings, kb: KnowledgeBase) -> None:
        fake.on_request = lambda count: scope.cancel() if count == number else None

    return arm


#: cut points that fall inside a run, by count (statements of the whole run are
#: added once a run has been counted)
CUT_POINTS = {
    "first write, at its first statement": during_write(1, 0),
    "second write, its first statement in flight": during_write(2, 0, in_flight=True),
    # a new document is written by one statement, then committed
    "fifth write, its statement in flight": during_write(5, 0, in_flight=True),
    "fifth write, at its commit": during_write(5, -1),
    "tenth write, its commit in flight": during_write(10, -1, in_flight=True),
    "first embedding request": during_embedding(1),
    "third embedding request": during_embedding(3),
}
#: more cuts at these fractions of the run's graph statements
STATEMENT_FRACTIONS = (0.1, 0.3, 0.6, 0.9)


async def test_cancelling_a_run_leaves_each_document_absent_or_whole(
    kb: KnowledgeBase, tmp_path: Path
) -> None:
    expected = await expected_corpus(CORPUS_DIR)
    fake = FakeEmbeddings()
    async with ingestor_on(kb, tmp_path, fake, embedding_batch_size=4) as (ingestor, embedder):
        # one document per transaction, so that "the n-th write" is the same transaction
        # in every run, however many documents happen to wait for the writer
        ingestor.write_documents = 1
        tasks = await living_tasks()
        statements = 0

        def count(index: int, total: int) -> None:
            nonlocal statements
            statements += 1

        kb.gateway.on_statement = count
        await ingestor.ingest_paths([CORPUS_DIR])
        assert statements > 20
        cuts = dict(CUT_POINTS)
        for f in STATEMENT_FRACTIONS:
            number = int(statements * f)
            cuts[f"statement {number} of {statements}"] = at_statement(number)
            cuts[f"statement {number} of {statements}, in flight"] = at_statement(
                number, in_flight=True
            )
        for name, arm in cuts.items():
            kb.gateway.on_statement = None
            await kb.gateway.query("MATCH (n) DETACH DELETE n")
            kb.store.before_replace, fake.on_request = None, None
            fake.requests.clear()
            kb.store.replacements = 0
            with trio.CancelScope() as scope:
                arm(scope, fake, kb)
                await ingestor.ingest_paths([CORPUS_DIR])
            assert scope.cancelled_caught, name
            await assert_released(kb, embedder, tasks)
            # at once: a cancelled write is done on the engine when the run returns
            stored = await assert_whole(kb, expected)
            assert await assert_whole(kb, expected) == stored, name
        # after all that, a full run completes the corpus
        kb.store.before_replace, fake.on_request, kb.gateway.on_statement = None, None, None
        summary = await ingestor.ingest_paths([CORPUS_DIR])
    gc.collect()  # a socket the driver dropped unclosed would warn here, and fail the test
    assert summary.failed == []
    assert await assert_whole(kb, expected) == set(expected)
