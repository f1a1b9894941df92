"""The sample corpus: it reads cleanly, the retrieval questions stay honest, and the
rule extractor finds its people, organizations and dated facts."""

from __future__ import annotations

from collections import defaultdict

import pytest

from agent_trio.document import SourceDocument
from agent_trio.extract import Extraction, RuleExtractor
from agent_trio.ingest import chunk_text, iter_paths, read_document
from tests.retrieval_questions import CORPUS_DIR, QUESTIONS

PEOPLE = {
    "ines marlow",
    "tobias renner",
    "priya nandakumar",
    "daniel osei",
    "lena vogt",
    "clara moreau",
}
ORGANIZATIONS = {
    "kestrel labs",
    "corvid systems",
    "arden capital",
    "moraine ventures",
    "halvorsen energy",
    "petrel robotics",
}


def _squash(text: str) -> str:
    return " ".join(text.split())


def _corpus() -> list[SourceDocument]:
    return [read_document(path) for path in iter_paths([CORPUS_DIR])]


async def _extract_all(size: int = 1000) -> list[tuple[SourceDocument, Extraction]]:
    results = []
    for doc in _corpus():
        chunks = chunk_text(doc.content, size=size, overlap=200)
        extraction = await RuleExtractor().extract(doc, chunks)
        for fact in extraction.facts:  # provenance: the sentence is in its chunk
            assert fact.sentence in _squash(chunks[fact.chunk_index].text)
        results.append((doc, extraction))
    return results


def test_corpus_documents_read_with_titles_and_front_matter() -> None:
    docs = _corpus()
    assert 10 <= len(docs) <= 12
    for doc in docs:
        assert doc.title
        assert 150 <= len(doc.content.split()) <= 400, doc.source
    with_front_matter = [
        d for d in docs if {"title", "author", "date", "tags"} <= d.metadata.keys()
    ]
    assert len(with_front_matter) >= len(docs) - 2
    assert len({d.document_id for d in docs}) == len(docs)


def test_every_question_names_a_corpus_file_containing_its_phrase() -> None:
    assert len(QUESTIONS) == 10
    for question in QUESTIONS:
        text = (CORPUS_DIR / question.source).read_text(encoding="utf-8")
        assert _squash(question.phrase) in _squash(text), question
        assert _squash(question.phrase).casefold() not in _squash(question.question).casefold()


@pytest.mark.parametrize(("size", "overlap"), [(1000, 200), (400, 100)])
def test_every_phrase_lies_within_one_chunk(size: int, overlap: int) -> None:
    for question in QUESTIONS:
        doc = read_document(CORPUS_DIR / question.source)
        chunks = chunk_text(doc.content, size=size, overlap=overlap)
        assert any(question.phrase in _squash(c.text) for c in chunks), question


async def test_rule_extractor_finds_the_corpus_people_and_organizations() -> None:
    types: dict[str, set[str]] = defaultdict(set)
    for _, extraction in await _extract_all():
        for entity in extraction.entities:
            types[entity.key].add(entity.type)

    for key in PEOPLE:
        assert types[key] == {"person"}, key
    for key in ORGANIZATIONS:
        assert types[key] == {"organization"}, key
    assert types["qx-7"] == {"product"}
    assert types["gridedge summit"] == {"event"}
    assert {"lisbon", "rotterdam", "bergen", "porto"} <= {
        k for k, t in types.items() if "place" in t
    }


async def test_rule_extractor_finds_the_corpus_dated_facts() -> None:
    facts = [fact for _, extraction in await _extract_all() for fact in extraction.facts]
    dated = [f for f in facts if f.valid_at or f.invalid_at]
    assert len(dated) >= 15
    rows = {(f.subject_key, f.relation, f.object_key, f.valid_at, f.invalid_at) for f in facts}
    assert ("corvid systems", "ACQUIRED", "kestrel labs", "2022-06-15", None) in rows
    assert ("ines marlow", "FOUNDED", "kestrel labs", "2017-03-01", None) in rows
    assert ("tobias renner", "FOUNDED", "kestrel labs", "2017-03-01", None) in rows
    assert ("kestrel labs", "LAUNCHED", "qx-7", "2019-09-12", None) in rows
    assert ("priya nandakumar", "WORKS_AT", "corvid systems", "2013-01-01", "2020-03-01") in rows
    assert ("priya nandakumar", "WORKS_AT", "kestrel labs", None, "2023-07-01") in rows
    assert ("priya nandakumar", "WORKS_AT", "halvorsen energy", "2023-08-01", None) in rows
    assert ("arden capital", "INVESTED_IN", "kestrel labs", None, None) in rows


async def test_corpus_extraction_does_not_depend_on_chunk_size_for_key_facts() -> None:
    def acquisitions(results: list[tuple[SourceDocument, Extraction]]) -> set[tuple[str, str]]:
        return {
            (f.subject_key, f.object_key)
            for _, extraction in results
            for f in extraction.facts
            if f.relation == "ACQUIRED"
        }

    assert acquisitions(await _extract_all(size=300)) == acquisitions(await _extract_all())
