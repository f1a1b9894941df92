"""Replacing a document on the real engine: all of it, in one transaction, or nothing."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from typing import Any

import pytest
import trio
import trio.testing

from agent_trio import GraphConstraintError, GraphQueryError
from agent_trio.graph import (
    ChunkRecord,
    DocumentVersion,
    EntityRecord,
    FactRecord,
    GraphGateway,
    KnowledgeStore,
    MentionRecord,
    Statement,
)
from tests.support.checks import assert_limiters_free, pending_driver_tasks

from .kb_support import Snapshot, axis, build_version, snapshot, union

pytestmark = pytest.mark.engine


class CountingGateway:
    """The real gateway, counting the statements of each transaction."""

    def __init__(self, gateway: GraphGateway) -> None:
        self._gateway = gateway
        self.sent: list[int] = []

    async def transaction(self, statements: Sequence[Statement]) -> list[list[dict[str, Any]]]:
        statements = list(statements)
        self.sent.append(len(statements))
        return await self._gateway.transaction(self._as_sent(statements))

    def _as_sent(self, statements: list[Statement]) -> list[Statement]:
        return statements

    def __getattr__(self, name: str) -> Any:
        return getattr(self._gateway, name)


class FailingGateway(CountingGateway):
    """The real gateway, with a failing statement slipped into every transaction."""

    def __init__(self, gateway: GraphGateway, position: int) -> None:
        super().__init__(gateway)
        self._position = position

    def _as_sent(self, statements: list[Statement]) -> list[Statement]:
        statements.insert(min(self._position, len(statements)), Statement("RETURN 1 / 0 AS x"))
        return statements


async def test_replace_document_writes_everything(
    store: KnowledgeStore, gateway: GraphGateway
) -> None:
    v1 = build_version("doc-a", "v1", 5)
    await store.replace_document(*v1.args())
    assert await snapshot(gateway) == v1.expected()
    assert await store.document_hash("doc-a") == "hash-doc-a-v1"
    assert await store.document_hash("doc-unknown") is None
    version = await store.document_version("doc-a")
    assert version is not None
    assert version.content_hash == "hash-doc-a-v1"
    assert (version.chunk_count, version.entity_count, version.fact_count) == (
        len(v1.chunks),
        len({e.key for e in v1.entities}),
        len(v1.facts),
    )
    assert await store.document_version("doc-unknown") is None
    both = await store.document_versions(["doc-unknown", "doc-a", "doc-a"])
    assert both == {"doc-a": version}
    assert await store.document_versions([]) == {}


async def test_rewrite_leaves_nothing_of_the_old_version(
    store: KnowledgeStore, gateway: GraphGateway
) -> None:
    v1 = build_version("doc-a", "v1", 6, people=4)
    other = build_version("doc-b", "b", 2, people=1)
    await store.replace_document(*v1.args())
    await store.replace_document(*other.args())
    created = await store.get_document("doc-a")
    assert created is not None
    v2 = build_version("doc-a", "v2", 3, people=2)
    await store.replace_document(*v2.args())
    # v1's people are gone with v1; Acme stays (v2 and doc-b mention it)
    assert await snapshot(gateway) == union(v2.expected(), other.expected())
    again = await store.get_document("doc-a")
    assert again is not None
    assert again.created_at == created.created_at
    assert again.updated_at >= created.updated_at
    assert [c.id for c in again.chunks] == [c.id for c in v2.chunks]


async def test_rewrite_with_the_same_ids_is_not_a_duplicate(
    store: KnowledgeStore, gateway: GraphGateway
) -> None:
    v1 = build_version("doc-a", "v1", 4)
    await store.replace_document(*v1.args())
    await store.replace_document(*v1.args())
    assert await snapshot(gateway) == v1.expected()


@pytest.mark.parametrize("position", [0, 3, 4, 5, 99])
async def test_a_failure_mid_transaction_leaves_the_old_version(
    store: KnowledgeStore, gateway: GraphGateway, position: int
) -> None:
    v1 = build_version("doc-a", "v1", 4)
    await store.replace_document(*v1.args())
    failing = FailingGateway(gateway, position)
    broken = KnowledgeStore(failing, store.dialect, dimensions=store.dimensions)  # type: ignore[arg-type]
    with pytest.raises(GraphQueryError):
        await broken.replace_document(*build_version("doc-a", "v2", 600, people=5).args())
    assert failing.sent[0] > 5  # several statements were sent
    assert await snapshot(gateway) == v1.expected()
    assert gateway.limiter.statistics().borrowed_tokens == 0


async def test_a_chunk_id_of_another_document_is_refused_whole(
    store: KnowledgeStore, gateway: GraphGateway
) -> None:
    a = build_version("doc-a", "v1", 3)
    b = build_version("doc-b", "v1", 2)
    await store.replace_document(*a.args())
    await store.replace_document(*b.args())
    clash = build_version("doc-b", "v2", 2)
    clash.chunks.append(ChunkRecord(a.chunks[0].id, 2, "a borrowed id", 2, axis(3)))
    with pytest.raises(GraphConstraintError):
        await store.replace_document(*clash.args())
    assert await snapshot(gateway) == union(a.expected(), b.expected())


async def test_several_documents_are_replaced_in_one_transaction_of_six_statements(
    store: KnowledgeStore, gateway: GraphGateway
) -> None:
    a1, b1, c1 = (build_version(f"doc-{x}", "v1", 3, people=2) for x in "abc")
    for v in (a1, b1, c1):
        await store.replace_document(*v.args())
    a2 = build_version("doc-a", "v2", 4, people=1)
    b2 = build_version("doc-b", "v2", 1, people=3)
    d1 = build_version("doc-d", "v1", 600, people=2)  # more chunks than one statement takes
    versions = [DocumentVersion(*v.args()) for v in (a2, b2, d1)]
    # all of them or none: a failure after the last statement leaves every old version
    failing = FailingGateway(gateway, 99)
    broken = KnowledgeStore(failing, store.dialect, dimensions=store.dimensions)  # type: ignore[arg-type]
    with pytest.raises(GraphQueryError):
        await broken.replace_documents(versions)
    # three removals, then the writes packed by 500 rows: the documents; 500 chunks; the
    # other 105 chunks with the entities, mentions and facts
    assert failing.sent == [3 + 3]
    assert await snapshot(gateway) == union(a1.expected(), b1.expected(), c1.expected())
    await store.replace_documents(versions)
    # a1's and b1's people are gone with them; c1's stay, and Acme (all mention it)
    assert await snapshot(gateway) == union(
        a2.expected(), b2.expected(), c1.expected(), d1.expected()
    )
    for v in (a2, b2, d1):
        stored = await store.document_version(v.document.id)
        assert stored is not None
        assert stored.content_hash == v.document.content_hash
        assert stored.chunk_count == len(v.chunks)
        assert stored.fact_count == len(v.facts)


async def test_new_documents_are_written_by_one_statement_whatever_they_lack(
    store: KnowledgeStore, gateway: GraphGateway
) -> None:
    full = build_version("doc-a", "v1", 3, people=2)
    lone = EntityRecord(name="Lone Harbour Trust", type="organization")
    bare = build_version("doc-b", "v1", 1, people=0)  # chunks, no facts
    no_chunks = DocumentVersion(
        dataclasses.replace(bare.document, id="doc-c", source="notes/doc-c.md"),
        entities=[lone],  # what follows the missing chunks is written all the same
    )
    counting = CountingGateway(gateway)
    spied = KnowledgeStore(counting, store.dialect, dimensions=store.dimensions)  # type: ignore[arg-type]
    await spied.replace_documents([DocumentVersion(*full.args())], absent=True)
    await spied.replace_documents([no_chunks], absent=True)
    await spied.replace_documents([DocumentVersion(*bare.args())], absent=True)
    assert counting.sent == [1, 1, 1]
    assert await snapshot(gateway) == union(
        full.expected(),
        bare.expected(),
        Snapshot({("doc-c", bare.document.content_hash)}, set(), {lone.key}, set(), set()),
    )
    stored = await store.document_version("doc-c")
    assert stored is not None
    assert (stored.chunk_count, stored.entity_count, stored.fact_count) == (0, 1, 0)


async def test_a_document_twice_in_one_transaction_is_refused(
    store: KnowledgeStore, gateway: GraphGateway
) -> None:
    v1, v2 = build_version("doc-a", "v1", 2), build_version("doc-a", "v2", 2)
    other = build_version("doc-b", "v1", 2)
    with pytest.raises(ValueError, match="'doc-a' appears twice"):
        await store.replace_documents([DocumentVersion(*v.args()) for v in (v1, other, v2)])
    clash = build_version("doc-c", "v1", 1)
    clash.chunks[0] = ChunkRecord(other.chunks[0].id, 0, "borrowed", 1, axis(2))
    with pytest.raises(ValueError, match="appears twice"):
        await store.replace_documents([DocumentVersion(*v.args()) for v in (other, clash)])
    await store.replace_documents([])  # nothing to do
    assert await snapshot(gateway) == Snapshot(set(), set(), set(), set(), set())


async def test_inconsistent_records_are_refused_before_anything_is_sent(
    store: KnowledgeStore, gateway: GraphGateway
) -> None:
    v = build_version("doc-a", "v1", 2)
    chunk = v.chunks[0]
    acme = v.entities[0]
    cases: list[tuple[Any, ...]] = [
        (v.document, [chunk, chunk], [], [], []),
        (v.document, [ChunkRecord("c", 0, "t", 1, [1.0, 0.0])], [], [], []),
        (v.document, [chunk], [], [FactRecord(acme.key, "nobody", "R", "f", chunk.id)], []),
        (v.document, [chunk], [acme], [FactRecord(acme.key, acme.key, "R", "f", "nowhere")], []),
        (v.document, [chunk], [acme], [], [MentionRecord("nowhere", acme.key)]),
        (v.document, [chunk], [], [], [MentionRecord(chunk.id, "nobody")]),
    ]
    for args in cases:
        with pytest.raises(ValueError, match=r"appears twice|dimension|not among"):
            await store.replace_document(*args)
    assert await snapshot(gateway) == Snapshot(set(), set(), set(), set(), set())


def test_records_check_their_values() -> None:
    with pytest.raises(ValueError, match="all zeros"):
        ChunkRecord("c", 0, "t", 1, [0.0, 0.0])
    with pytest.raises(ValueError, match="NaN"):
        ChunkRecord("c", 0, "t", 1, [float("nan"), 1.0])
    with pytest.raises(ValueError, match="valid_at"):
        FactRecord("a", "b", "R", "f", "c", valid_at="last tuesday")
    with pytest.raises(ValueError, match="normalises to nothing"):
        EntityRecord(name="   ")
    fact = FactRecord("a", "b", "R", "f", "c", valid_at="2024-05-01T12:00:00+02:00")
    assert fact.valid_at == "2024-05-01T10:00:00.000Z"
    assert FactRecord("a", "b", "R", "f", "c", valid_at="2024-05-01").valid_at == "2024-05-01"
    assert fact.uuid == FactRecord("a", "b", "R", "f", "c").uuid  # derived, stable
    assert fact.uuid != FactRecord("a", "b", "R", "another sentence", "c").uuid
    assert EntityRecord(name="  The ACME   Corp. ").key == "acme"
    assert EntityRecord(name="AT&T's").key == "at&t"
    assert EntityRecord(name="ACME Corp").id == EntityRecord(name="acme corp").id


async def test_delete_all_removes_every_node_but_keeps_the_schema(
    store: KnowledgeStore, gateway: GraphGateway
) -> None:
    for i in range(3):
        await store.replace_document(*build_version(f"doc-{i}", "v1", 4).args())
    deleted = await store.delete_all()
    assert deleted == 3 + 3 * 4 + 4  # documents, chunks, Acme and three people
    assert await snapshot(gateway) == Snapshot(set(), set(), set(), set(), set())
    assert await store.dialect.vector_dimensions(gateway) == store.dimensions
    v = build_version("doc-a", "v1", 2)
    await store.replace_document(*v.args())  # still writable: the schema is intact
    assert await snapshot(gateway) == v.expected()


async def test_a_replacement_cut_at_every_boundary_is_old_or_new_at_once(
    store: KnowledgeStore, gateway: GraphGateway, loop: Any
) -> None:
    """Cut before each statement and the commit, at the boundary or once the statement
    is sent: right after the cancelled call, the graph holds the old version or the
    new one, never a mixture; and the next writer, queued on the write limiter, starts
    only when nothing of the cut one runs on the engine any more."""
    v1 = build_version("doc-a", "v1", 3)
    v2 = build_version("doc-a", "v2", 210, people=6)
    other = build_version("doc-b", "v1", 5)  # names Acme Corp too
    await store.replace_document(*v1.args())
    boundaries = 0

    def count(index: int, total: int) -> None:
        nonlocal boundaries
        boundaries += 1

    gateway.on_statement = count
    await store.replace_document(*v2.args())
    gateway.on_statement = None
    assert boundaries > 4  # several batches, then the commit
    await store.replace_document(*v1.args())
    token = trio.lowlevel.current_trio_token()

    for in_flight in (False, True):
        for cut in range(1, boundaries + 1):
            second_started: list[int] = []
            with trio.CancelScope() as scope:
                gateway.on_statement = cutting_hook(
                    cut,
                    scope.cancel
                    if not in_flight
                    else lambda s=scope: token.run_sync_soon(s.cancel),
                    after=lambda into=second_started: into.append(len(pending_driver_tasks(loop))),
                )
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(second_writer, store, other)
                    await store.replace_document(*v2.args())
            gateway.on_statement = None
            label = f"cut {cut} of {boundaries}, {'in flight' if in_flight else 'at once'}"
            assert scope.cancelled_caught, label
            state = await snapshot(gateway)
            assert state in (
                union(v1.expected(), other.expected()),
                union(v2.expected(), other.expected()),
            ), label
            if not in_flight:
                assert state == union(v1.expected(), other.expected()), label
            elif cut == boundaries:  # the commit was on its way: it landed before we returned
                assert state == union(v2.expected(), other.expected()), label
            assert second_started == [1], label
            assert_limiters_free(gateway.limiter, store.write_limiter)
            assert pending_driver_tasks(loop) == []
            await gateway.query("MATCH (n) DETACH DELETE n")
            await store.replace_document(*v1.args())


def cutting_hook(
    cut: int, cancel: Callable[[], None], *, after: Callable[[], None]
) -> Callable[[int, int], None]:
    """Calls ``cancel`` at the ``cut``-th boundary, and ``after`` at the first statement
    of the transaction that follows."""
    seen = 0
    cut_at_index = -1

    def hook(index: int, total: int) -> None:
        nonlocal seen, cut_at_index
        seen += 1
        if seen == cut:
            cancel()
            cut_at_index = index
        elif cut_at_index >= 0 and index == 0:
            after()

    return hook


async def second_writer(store: KnowledgeStore, version: Any) -> None:
    """Writes ``version`` once the first writer holds the write limiter; not cancelled."""
    with trio.CancelScope(shield=True), trio.fail_after(60):
        await trio.testing.wait_all_tasks_blocked()
        await store.replace_document(*version.args())


async def test_concurrent_replacements_sharing_entities_all_succeed(
    store: KnowledgeStore, gateway: GraphGateway
) -> None:
    # every version names the same entities: unserialised, they race to MERGE them
    versions = [build_version(f"doc-{i}", "v1", 10) for i in range(5)]
    async with trio.open_nursery() as nursery:
        for v in versions:
            nursery.start_soon(store.replace_document, *v.args())
    assert await snapshot(gateway) == union(*(v.expected() for v in versions))
    assert store.write_limiter.statistics().borrowed_tokens == 0
