"""Reading the knowledge store on the real engine: documents, vector and full-text search."""

from __future__ import annotations

import math

import pytest
import trio

from agent_trio.graph import ChunkRecord, DocumentRecord, KnowledgeStore

from .kb_support import DIMENSIONS, axis, build_version

pytestmark = pytest.mark.engine


async def test_list_and_get_documents(store: KnowledgeStore) -> None:
    for i, n in enumerate((2, 5, 3)):
        await store.replace_document(*build_version(f"doc-{i}", "v1", n).args())
        await trio.sleep(0.005)  # distinct created_at
    page, total = await store.list_documents(limit=2, offset=0)
    rest, total_again = await store.list_documents(limit=2, offset=2)
    assert total == total_again == 3
    assert [d.id for d in page] == ["doc-2", "doc-1"]  # newest first
    assert [d.id for d in rest] == ["doc-0"]
    assert [d.chunk_count for d in page + rest] == [3, 5, 2]
    first = page[0]
    assert first.title == "Title v1"
    assert first.source == "notes/doc-2.md"
    assert first.metadata == {"version": "v1", "tags": ["t1", "t2"]}
    assert first.created_at.endswith("Z")
    assert (await store.list_documents(limit=10, offset=3)) == ([], 3)

    doc = await store.get_document("doc-1")
    assert doc is not None
    assert doc.content == "The content of doc-1, version v1."
    assert doc.content_hash == "hash-doc-1-v1"
    assert [c.index for c in doc.chunks] == [0, 1, 2, 3, 4]
    assert doc.chunks[2].metadata == {"position": 2}
    assert doc.chunks[2].text.startswith("trio notes")
    assert doc.chunk_count == 5
    assert await store.get_document("doc-unknown") is None


async def test_a_document_without_chunks(store: KnowledgeStore) -> None:
    empty = DocumentRecord("doc-e", "Empty", "e.md", "", "h", {})
    await store.replace_document(empty, [])
    doc = await store.get_document("doc-e")
    assert doc is not None
    assert doc.chunks == ()
    (summary,), total = await store.list_documents(limit=5, offset=0)
    assert (summary.chunk_count, total) == (0, 1)


async def write_axis_chunks(store: KnowledgeStore) -> None:
    """Document ``doc-v`` with one chunk per axis: chunk ``ax-i`` points along axis i."""
    doc = DocumentRecord("doc-v", "Vectors", "v.md", "…", "hv", {"kind": "doc"})
    chunks = [
        ChunkRecord(f"ax-{i}", i, f"text {i}", 2, axis(i), {"axis": i}) for i in range(DIMENSIONS)
    ]
    await store.replace_document(doc, chunks)


async def test_vector_search_finds_the_nearest_chunk(store: KnowledgeStore) -> None:
    await write_axis_chunks(store)
    query = [0.0] * DIMENSIONS
    query[5], query[9] = 0.9, 0.3  # mostly axis 5, a little axis 9
    hits = await store.vector_search(query, 3)
    assert [h.chunk_id for h in hits[:2]] == ["ax-5", "ax-9"]
    cos5 = 0.9 / math.hypot(0.9, 0.3)
    assert hits[0].score == pytest.approx((1 + cos5) / 2, abs=1e-4)
    assert hits[0].raw_score == pytest.approx(hits[0].score, abs=1e-6)
    assert hits[2].score == pytest.approx(0.5, abs=1e-4)  # orthogonal
    assert hits[0].document_title == "Vectors"
    assert hits[0].document_source == "v.md"
    assert hits[0].metadata == {"kind": "doc", "axis": 5}  # the chunk's over the document's

    opposite = await store.vector_search([-x for x in axis(7)], DIMENSIONS)
    assert opposite[-1].chunk_id == "ax-7"
    assert opposite[-1].score == pytest.approx(0.0, abs=1e-4)
    assert all(0.0 <= h.score <= 1.0 for h in opposite)
    assert await store.vector_search([0.0] * DIMENSIONS, 3) == []
    with pytest.raises(ValueError, match="dimensions"):
        await store.vector_search([1.0, 0.0], 3)


HOSTILE = [
    "O'Brien AND (",
    '"',
    '"unterminated phrase',
    "*",
    "~",
    "fox~2 AND NOT",
    "title:fox",
    "[1 TO 5]",
    "{x}",
    "a\\",
    "\\\\",
    '+-&&||!(){}[]^"~*?:\\/',
    "AND OR NOT",
    "",
    "   ",
    "fo*",
    "x" * 3000,
    " ".join(f"w{i}" for i in range(5000)),
]


async def test_fulltext_takes_any_text(store: KnowledgeStore) -> None:
    doc = DocumentRecord("doc-t", "Text", "t.md", "…", "ht", {})
    texts = [
        "Conan O'Brien hosts a show about the fox",
        "the quick brown fox jumps over the lazy dog",
        "nothing relevant here at all",
    ]
    chunks = [ChunkRecord(f"t-{i}", i, t, 5, axis(i)) for i, t in enumerate(texts)]
    await store.replace_document(doc, chunks)
    for text in HOSTILE:
        hits = await store.fulltext_search(text, 5)
        assert all(0.0 <= h.score <= 1.0 for h in hits), text
    obrien = await store.fulltext_search("O'Brien AND (", 5)
    assert obrien[0].chunk_id == "t-0"
    assert obrien[0].score == 1.0
    fox = await store.fulltext_search("lazy fox", 5)
    assert [h.chunk_id for h in fox] == ["t-1", "t-0"]
    assert fox[0].score == 1.0 > fox[1].score > 0.0
    assert await store.fulltext_search("*", 5) == []


async def test_write_and_read_unicode_and_quotes(store: KnowledgeStore) -> None:
    text = 'Zoë\'s «café» — 東京 "quoted" \\ back\\slash 🚀'
    doc = DocumentRecord("doc-u", text, "ü.md", text, "hu", {"note": text, "n": [1, None]})
    await store.replace_document(doc, [ChunkRecord("u-0", 0, text, 9, axis(0), {"k": text})])
    stored = await store.get_document("doc-u")
    assert stored is not None
    assert (stored.title, stored.content, stored.chunks[0].text) == (text, text, text)
    assert stored.metadata == {"note": text, "n": [1, None]}
    assert stored.chunks[0].metadata == {"k": text}
    hits = await store.fulltext_search("café 東京", 3)
    assert [h.chunk_id for h in hits] == ["u-0"]
