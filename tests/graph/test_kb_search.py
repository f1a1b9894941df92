"""The searcher on the real engine: vector, hybrid fusion, graph facts, entities."""

from __future__ import annotations

import pytest

from agent_trio import ConfigError
from agent_trio.graph import (
    ChunkRecord,
    DocumentRecord,
    EntityRecord,
    FactRecord,
    KnowledgeStore,
    MentionRecord,
)
from agent_trio.search import Searcher

from .kb_support import DIMENSIONS, TOPICS, TopicEmbedder, axis, topic_vector

pytestmark = pytest.mark.engine

ROCKET, OCEAN = TOPICS.index("rocket"), TOPICS.index("ocean")


def near_rocket(weight: float, other: int) -> list[float]:
    vector = [0.0] * DIMENSIONS
    vector[ROCKET], vector[other] = weight, 1.0 - weight
    return vector


async def write_rocket_corpus(store: KnowledgeStore) -> None:
    """Chunks on which the vector and the word rankings of "rocket" disagree.

    ``both`` is second in both lists; ``vec`` is first by vector and absent by
    words; ``txt`` is first by words (the word thrice) and far by vector.
    """
    doc = DocumentRecord("doc-r", "Rockets", "r.md", "…", "hr", {})
    chunks = [
        ChunkRecord("vec", 0, "orbital thrust notes", 3, axis(ROCKET)),
        ChunkRecord("both", 1, "rocket launch schedule", 3, near_rocket(0.95, OCEAN)),
        ChunkRecord("txt", 2, "rocket rocket rocket", 3, axis(OCEAN)),
    ]
    chunks += [
        ChunkRecord(f"near-{i}", 3 + i, "misc filler words", 3, near_rocket(0.9 - i / 20, 1 + i))
        for i in range(6)
    ]
    await store.replace_document(doc, chunks)


async def test_vector_search_embeds_the_query(store: KnowledgeStore) -> None:
    await write_rocket_corpus(store)
    embedder = TopicEmbedder()
    results = await Searcher(store, embedder).vector("rocket", 2)
    assert [r.chunk_id for r in results] == ["vec", "both"]
    assert results[0].score == pytest.approx(1.0, abs=1e-4)
    assert embedder.calls == 1
    assert set(results[0].to_api()) == {
        "chunk_id",
        "document_id",
        "content",
        "score",
        "metadata",
        "document_title",
        "document_source",
    }


async def test_hybrid_prefers_what_both_searches_rank_high(store: KnowledgeStore) -> None:
    await write_rocket_corpus(store)
    searcher = Searcher(store, TopicEmbedder())
    rrf = await searcher.hybrid("rocket", 5)
    assert rrf[0].chunk_id == "both"
    assert rrf[0].score == pytest.approx((2 / 62) / (2 / 61))
    assert {r.chunk_id for r in rrf[1:3]} == {"vec", "txt"}
    assert [r.score for r in rrf] == sorted((r.score for r in rrf), reverse=True)

    weighted = await searcher.hybrid("rocket", 5, text_weight=0.5)
    assert weighted[0].chunk_id == "both"
    assert all(0.0 <= r.score <= 1.0 for r in weighted)
    by_vector = await searcher.vector("rocket", 5)
    only_vector = await searcher.hybrid("rocket", 5, text_weight=0.0)
    assert [r.chunk_id for r in only_vector] == [r.chunk_id for r in by_vector]
    assert [r.score for r in only_vector] == pytest.approx([r.score for r in by_vector])
    only_text = await searcher.hybrid("rocket", 2, text_weight=1.0)
    assert [r.chunk_id for r in only_text] == ["txt", "both"]
    assert only_text[0].score == 1.0
    with pytest.raises(ValueError, match="text_weight"):
        await searcher.hybrid("rocket", 5, text_weight=1.5)


async def test_hybrid_with_no_word_match_is_vector_order(store: KnowledgeStore) -> None:
    await write_rocket_corpus(store)
    searcher = Searcher(store, TopicEmbedder())
    fused = await searcher.hybrid("ocean", 2)  # no chunk has the word
    vector = await searcher.vector("ocean", 2)
    assert [r.chunk_id for r in fused] == [r.chunk_id for r in vector] == ["txt", "both"]
    assert fused[0].score == pytest.approx(0.5)  # first in one of two rankings


async def test_hybrid_has_no_full_text_side_for_common_words_alone(store: KnowledgeStore) -> None:
    await write_rocket_corpus(store)
    doc = DocumentRecord("doc-w", "Words", "w.md", "…", "hw", {})
    await store.replace_document(
        doc, [ChunkRecord("what", 0, "what is it and who is it", 6, axis(TOPICS.index("cat")))]
    )
    searcher = Searcher(store, TopicEmbedder())
    # searched alone, common words still find the chunk that has them ...
    assert [r.chunk_id for r in await searcher.fulltext("what is it", 3)] == ["what"]
    # ... but in hybrid they do not take part: every chunk (ten, all among the vector
    # candidates) is in one ranking only, so none scores above a one-ranking first
    # ("what", first by words too, would)
    fused = await searcher.hybrid("what is it", 10)
    assert len(fused) == 10
    assert max(r.score for r in fused) == pytest.approx(0.5)


# -- facts ---------------------------------------------------------------------------

ALICE, ACME, BOB, ZURICH = (
    EntityRecord("Alice", "person"),
    EntityRecord("Acme Corp", "organization"),
    EntityRecord("Bob", "person"),
    EntityRecord("Zurich", "place"),
)
SENTENCES = [
    "Alice founded Acme Corp in 2001 with a rocket.",
    "Bob has worked at Acme Corp since 2010, building music software.",
    "Acme Corp is based in Zurich by the river.",
    "Alice lived in Zurich from 1999 to 2005, near the mountain.",
]


def fact(
    subject: EntityRecord, relation: str, obj: EntityRecord, chunk: int, **dates: str
) -> FactRecord:
    return FactRecord(subject.key, obj.key, relation, SENTENCES[chunk], f"g-{chunk}", **dates)


FOUNDED = fact(ALICE, "FOUNDED", ACME, 0, valid_at="2001-03-01")
WORKS_AT = fact(BOB, "WORKS_AT", ACME, 1, valid_at="2010-01-01")
BASED_IN = fact(ACME, "BASED_IN", ZURICH, 2)
LIVED_IN = fact(ALICE, "LIVED_IN", ZURICH, 3, valid_at="1999-06-01", invalid_at="2005-01-01")


async def write_people(store: KnowledgeStore) -> None:
    doc = DocumentRecord("doc-g", "People", "people.md", " ".join(SENTENCES), "hg", {})
    chunks = [
        ChunkRecord(f"g-{i}", i, text, 10, topic_vector(text)) for i, text in enumerate(SENTENCES)
    ]
    mentions = [MentionRecord("g-0", ALICE.key), MentionRecord("g-0", ACME.key)]
    await store.replace_document(
        doc, chunks, [ALICE, ACME, BOB, ZURICH], [FOUNDED, WORKS_AT, BASED_IN, LIVED_IN], mentions
    )


async def test_graph_search_finds_facts_by_name_and_through_chunks(store: KnowledgeStore) -> None:
    await write_people(store)
    results = await Searcher(store, TopicEmbedder()).graph("What did Alice do?", 10)
    by_uuid = {r.uuid: r for r in results}
    # Alice's own facts by name, newest first on equal score
    assert [r.uuid for r in results[:2]] == [FOUNDED.uuid, LIVED_IN.uuid]
    assert results[0].score == results[1].score == 1.0
    assert (results[1].valid_at, results[1].invalid_at) == ("1999-06-01", "2005-01-01")
    assert results[0].source_node_uuid == ALICE.id
    assert results[0].target_node_uuid == ACME.id
    assert (results[0].source_name, results[0].relation) == ("Alice", "FOUNDED")
    # the others through the chunks that mention Alice's entities, ranked lower
    assert set(by_uuid) == {FOUNDED.uuid, LIVED_IN.uuid, WORKS_AT.uuid, BASED_IN.uuid}
    assert all(0.0 <= r.score < 1.0 for r in results[2:])
    assert results[0].to_api() == {
        "fact": SENTENCES[0],
        "uuid": FOUNDED.uuid,
        "valid_at": "2001-03-01",
        "invalid_at": None,
        "source_node_uuid": ALICE.id,
        "target_node_uuid": ACME.id,
    }


async def test_graph_search_through_chunks_alone(store: KnowledgeStore) -> None:
    await write_people(store)
    results = await Searcher(store, TopicEmbedder()).graph("music", 10)
    # no entity is named "music": the best chunk (g-1, about music) leads to Acme and Bob
    assert results[0].uuid == WORKS_AT.uuid
    assert 0.0 < results[0].score <= 1.0
    assert {r.uuid for r in results} >= {WORKS_AT.uuid, FOUNDED.uuid, BASED_IN.uuid}


async def test_timeline_orders_facts_by_date(store: KnowledgeStore) -> None:
    await write_people(store)
    searcher = Searcher(store, TopicEmbedder())
    timeline = await searcher.timeline("acme corp")
    assert [r.uuid for r in timeline] == [FOUNDED.uuid, WORKS_AT.uuid, BASED_IN.uuid]
    assert [r.valid_at for r in timeline] == ["2001-03-01", "2010-01-01", None]
    assert [r.uuid for r in await searcher.timeline("Alice")] == [LIVED_IN.uuid, FOUNDED.uuid]
    assert await searcher.timeline("Nobody Known") == []


async def test_relationships_by_depth(store: KnowledgeStore) -> None:
    await write_people(store)
    searcher = Searcher(store, TopicEmbedder())
    one = await searcher.relationships("bob", 1)
    assert one is not None
    assert one.entity.name == "Bob"
    assert [f.uuid for f in one.facts] == [WORKS_AT.uuid]
    assert [e.name for e in one.neighbours] == ["Acme Corp"]
    assert one.neighbours[0].type == "organization"
    two = await searcher.relationships("bob", 2)
    assert two is not None
    assert {f.uuid for f in two.facts} == {WORKS_AT.uuid, FOUNDED.uuid, BASED_IN.uuid}
    assert {e.name for e in two.neighbours} == {"Acme Corp", "Alice", "Zurich"}
    three = await searcher.relationships("Bob", 3)
    assert three is not None
    assert {f.uuid for f in three.facts} == {
        f.uuid for f in (FOUNDED, WORKS_AT, BASED_IN, LIVED_IN)
    }
    acme = await searcher.relationships("ACME Corp.", 1)  # the same key
    assert acme is not None
    assert acme.entity.id == ACME.id
    zurich = await searcher.relationships("Zurich city", 1)  # not a key: by its words
    assert zurich is not None
    assert zurich.entity.id == ZURICH.id
    assert await searcher.relationships("Nobody Known", 1) is None
    with pytest.raises(ValueError, match="depth"):
        await searcher.relationships("Bob", 4)


async def test_searcher_refuses_an_embedder_of_other_dimensions(store: KnowledgeStore) -> None:
    class Wide(TopicEmbedder):
        dimensions = DIMENSIONS + 1

    with pytest.raises(ConfigError, match="EMBEDDING_DIMENSIONS"):
        Searcher(store, Wide())


async def test_graph_search_gives_each_statement_once(store: KnowledgeStore) -> None:
    # one sentence relating three entities: three facts, one statement
    sentence = "Carol and Dave founded Orbit Ltd in 2019."
    carol, dave, orbit = (
        EntityRecord("Carol", "person"),
        EntityRecord("Dave", "person"),
        EntityRecord("Orbit Ltd", "organization"),
    )
    other = "Orbit Ltd opened an office in Oslo in 2015."
    oslo = EntityRecord("Oslo", "place")
    doc = DocumentRecord("doc-o", "Orbit", "orbit.md", f"{sentence} {other}", "ho", {})
    chunks = [
        ChunkRecord("o-0", 0, sentence, 8, topic_vector(sentence)),
        ChunkRecord("o-1", 1, other, 8, topic_vector(other)),
    ]
    facts = [
        FactRecord(carol.key, dave.key, "RELATED_TO", sentence, "o-0", valid_at="2019-05-01"),
        FactRecord(carol.key, orbit.key, "FOUNDED", sentence, "o-0", valid_at="2019-05-01"),
        FactRecord(dave.key, orbit.key, "FOUNDED", sentence, "o-0", valid_at="2019-05-01"),
        FactRecord(orbit.key, oslo.key, "OPENED", other, "o-1", valid_at="2015-03-01"),
    ]
    await store.replace_document(doc, chunks, [carol, dave, orbit, oslo], facts)
    searcher = Searcher(store, TopicEmbedder())

    results = await searcher.graph("Orbit Ltd", 10)
    assert sorted(r.fact for r in results) == sorted([sentence, other])
    # the timeline still lists every fact
    assert len(await searcher.timeline("Orbit Ltd")) == 3
    # the 2019 statement ranks first three times over; a limit of 2 is still
    # filled with two statements, not two copies of one
    assert sorted(r.fact for r in await searcher.graph("Orbit Ltd", 2)) == sorted([sentence, other])
