"""Entity and fact extraction: the rule extractor, and the LLM extractor with a fake model.

The fake ``complete`` callables stand in for the third-party LLM API; they record the
messages they get so the retry prompt can be checked.
"""

from __future__ import annotations

import json
import logging
import random
from collections.abc import Sequence

import pytest

from agent_trio import UpstreamUnavailable
from agent_trio.document import Chunk, SourceDocument
from agent_trio.extract import Extraction, Extractor, LlmExtractor, RuleExtractor, entity_key
from agent_trio.ingest import chunk_text, parse_document

FactRow = tuple[str, str, str, str | None, str | None]


async def _extract(text: str, *, size: int = 1000) -> Extraction:
    doc = parse_document("test.md", text)
    return await RuleExtractor().extract(doc, chunk_text(doc.content, size=size, overlap=100))


def _rows(extraction: Extraction) -> set[FactRow]:
    return {
        (f.subject_key, f.relation, f.object_key, f.valid_at, f.invalid_at)
        for f in extraction.facts
    }


def _types(extraction: Extraction) -> dict[str, str]:
    return {e.key: e.type for e in extraction.entities}


@pytest.mark.parametrize(
    ("name", "key"),
    [
        ("Corvid Systems GmbH", "corvid systems"),
        ("corvid  systems", "corvid systems"),
        ("The Orion Bank", "orion bank"),
        ("Nova Dynamics, Inc.", "nova dynamics"),
        ("Kestrel's", "kestrel"),
        ("QX-7", "qx-7"),
        ("Zürich", "zürich"),
        ("Inc", "inc"),
    ],
)
def test_entity_key_normalises_case_punctuation_and_legal_forms(name: str, key: str) -> None:
    assert entity_key(name) == key


@pytest.mark.parametrize(
    ("when", "iso"),
    [
        ("on 2021-03-03", "2021-03-03"),
        ("on March 3, 2021", "2021-03-03"),
        ("on March 3rd 2021", "2021-03-03"),
        ("on 3 March 2021", "2021-03-03"),
        ("on the 3rd of March, 2021", "2021-03-03"),
        ("in March 2021", "2021-03-01"),
        ("in Sept. 2021", "2021-09-01"),
        ("in 2019", "2019-01-01"),
        ("in Q3 2020", "2020-07-01"),
        ("between 4 and 6 May 2022", "2022-05-04"),
        ("on 31 February 2021", None),
        ("for 2019 euros", None),
    ],
)
async def test_dates_in_a_sentence_date_its_facts(when: str, iso: str | None) -> None:
    extraction = await _extract(f"Orion Bank acquired Nova Dynamics {when}.")
    assert _rows(extraction) == {("orion bank", "ACQUIRED", "nova dynamics", iso, None)}


@pytest.mark.parametrize(
    ("sentence", "row"),
    [
        (
            "Helga Brandt worked at Orion Bank from 2015 until June 2019.",
            ("helga brandt", "WORKS_AT", "orion bank", "2015-01-01", "2019-06-01"),
        ),
        (
            "Helga Brandt left Orion Bank in 2020.",
            ("helga brandt", "WORKS_AT", "orion bank", None, "2020-01-01"),
        ),
        (
            "Helga Brandt joined Orion Bank on 2 May 2016.",
            ("helga brandt", "WORKS_AT", "orion bank", "2016-05-02", None),
        ),
        (
            "Helga Brandt worked for Orion Bank from March 2014 to April 2018.",
            ("helga brandt", "WORKS_AT", "orion bank", "2014-03-01", "2018-04-01"),
        ),
        (
            "In May 2021, Orion Bank partnered with Nova Dynamics.",
            ("orion bank", "PARTNERED_WITH", "nova dynamics", "2021-05-01", None),
        ),
        (
            "Orion Bank sponsored Nova Dynamics, but the deal ended on 1 April 2020.",
            ("orion bank", "RELATED_TO", "nova dynamics", None, "2020-04-01"),
        ),
        (
            "Until March 2020, Helga Brandt worked at Orion Bank.",
            ("helga brandt", "WORKS_AT", "orion bank", None, "2020-03-01"),
        ),
        (
            "In 2019 Orion Bank acquired Nova Dynamics.",
            ("orion bank", "ACQUIRED", "nova dynamics", "2019-01-01", None),
        ),
    ],
)
async def test_start_and_end_dates(sentence: str, row: FactRow) -> None:
    assert _rows(await _extract(sentence)) == {row}


async def test_a_date_after_another_verb_is_not_the_facts_date() -> None:
    extraction = await _extract(
        "Helga Brandt founded Nova Dynamics, which shipped its first robot in 2019."
    )
    assert _rows(extraction) == {("helga brandt", "FOUNDED", "nova dynamics", None, None)}


@pytest.mark.parametrize(
    ("sentence", "row"),
    [
        (
            "Orion Bank partnered with Nova Dynamics.",
            ("orion bank", "PARTNERED_WITH", "nova dynamics"),
        ),
        ("Orion Bank invested in Nova Dynamics.", ("orion bank", "INVESTED_IN", "nova dynamics")),
        (
            "Nova Dynamics raised 5 million euros from Orion Bank.",
            ("orion bank", "INVESTED_IN", "nova dynamics"),
        ),
        ("Helga Brandt founded Nova Dynamics.", ("helga brandt", "FOUNDED", "nova dynamics")),
        (
            "Nova Dynamics launched the Zephyr X2 drone.",
            ("nova dynamics", "LAUNCHED", "zephyr x2"),
        ),
        (
            "Helga Brandt, chief executive of Nova Dynamics, spoke first.",
            ("helga brandt", "LEADS", "nova dynamics"),
        ),
        (
            "Nova Dynamics is headquartered in Tromsø.",
            ("nova dynamics", "LOCATED_IN", "tromsø"),
        ),
        (
            "Nova Dynamics was bought by Orion Bank.",
            ("orion bank", "ACQUIRED", "nova dynamics"),
        ),
        ("Helga Brandt met Orion Bank.", ("helga brandt", "RELATED_TO", "orion bank")),
    ],
)
async def test_relation_comes_from_the_verb_between_entities(
    sentence: str, row: tuple[str, str, str]
) -> None:
    facts = {(f.subject_key, f.relation, f.object_key) for f in (await _extract(sentence)).facts}
    assert facts == {row}


async def test_passive_agents_relate_to_the_clause_subject() -> None:
    extraction = await _extract(
        "Nova Dynamics was founded in Tromsø in 2016 by Helga Brandt and Marcus Lind."
    )
    rows = _rows(extraction)
    assert ("helga brandt", "FOUNDED", "nova dynamics", "2016-01-01", None) in rows
    assert ("marcus lind", "FOUNDED", "nova dynamics", "2016-01-01", None) in rows
    assert ("nova dynamics", "LOCATED_IN", "tromsø", "2016-01-01", None) in rows


async def test_passive_clause_after_text_that_changes_length_when_folded() -> None:
    extraction = await _extract(
        "Weißwald Straße Holdings was founded in Tromsø by Helga Brandt in 2019."
    )
    assert ("helga brandt", "FOUNDED", "weisswald strasse holdings", "2019-01-01", None) in _rows(
        extraction
    )


async def test_entity_types_from_cues() -> None:
    extraction = await _extract(
        "Dr. Helga Brandt joined Nova Dynamics GmbH in Tromsø. "
        "Nova Dynamics launched the Zephyr X2 at the Arctic Robotics Summit. "
        "Orion Bank CEO Marcus Lind said the deal was good. "
        "Ellen Park, the chief financial officer, agreed."
    )
    assert _types(extraction) == {
        "helga brandt": "person",
        "nova dynamics": "organization",
        "tromsø": "place",
        "zephyr x2": "product",
        "arctic robotics summit": "event",
        "orion bank": "organization",
        "marcus lind": "person",
        "ellen park": "person",
    }


async def test_sentence_starts_headings_and_adjectives_are_not_entities() -> None:
    extraction = await _extract(
        "# Quarterly Results Overview\n\n"
        "However, Orion Bank grew. Yesterday Orion Bank hired staff. "
        "Engineers reviewed the numbers. In March, Helga Brandt spoke to a Norwegian "
        "newspaper. She thanked the Series A investors."
    )
    assert set(_types(extraction)) == {"orion bank", "helga brandt"}


async def test_short_names_resolve_to_the_full_name() -> None:
    extraction = await _extract(
        "Helga Brandt joined Nova Dynamics in 2015. Nova shipped drones to Orion Bank. "
        "Brandt left Nova in 2020."
    )
    assert set(_types(extraction)) == {"helga brandt", "nova dynamics", "orion bank"}
    assert ("helga brandt", "WORKS_AT", "nova dynamics", None, "2020-01-01") in _rows(extraction)
    names = {e.key: e.name for e in extraction.entities}
    assert names["nova dynamics"] == "Nova Dynamics"


async def test_ambiguous_short_name_stays_separate() -> None:
    extraction = await _extract(
        "Nova Dynamics hired staff. Nova Robotics hired staff too. Orion Bank met Nova."
    )
    assert "nova" in _types(extraction)


async def test_list_items_and_overlapping_chunks_give_one_fact_each() -> None:
    text = "Intro sentence here.\n\n" + "\n".join(
        f"- Orion Bank acquired Firm{i} Labs in {2000 + i}." for i in range(12)
    )
    doc = parse_document("list.md", text)
    chunks = chunk_text(doc.content, size=120, overlap=60)
    assert len(chunks) > 3
    extraction = await RuleExtractor().extract(doc, chunks)
    assert len(extraction.facts) == 12
    for fact in extraction.facts:
        assert not fact.sentence.startswith("-")
        assert fact.sentence in chunks[fact.chunk_index].text
        assert fact.valid_at == f"{2000 + int(fact.object_key[4:-5])}-01-01"


async def test_rule_extraction_is_deterministic() -> None:
    text = (
        "Helga Brandt founded Nova Dynamics in Tromsø in 2016. Orion Bank invested in "
        "Nova Dynamics on 4 March 2019. Nova Dynamics launched the Zephyr X2 in 2020."
    )
    first, second = await _extract(text), await _extract(text)
    assert first == second
    assert len(first.facts) >= 3


def _tokens(text: str) -> list[str]:
    return text.split(" ")


SOUP = _tokens(
    "Acme Corp the The in In by was acquired founded left until March 3, 2021 2021-02-30 Q4 "
    "Dr. CEO of & and 's ’ Ltd. Zürich ß İstanbul QX-7 Oslo-based , . ! ? # - “ ” ( ) who "
    "said Summit Park Labs Inc von de Bank England ' – Series A \n \n\n"
)


async def test_rule_extractor_is_consistent_on_arbitrary_text() -> None:
    rng = random.Random(11)
    for _ in range(150):
        text = " ".join(rng.choice(SOUP) for _ in range(rng.randint(0, 250)))
        doc = parse_document("soup.md", text)
        chunks = chunk_text(doc.content, size=rng.choice([30, 300]), overlap=20)
        extraction = await RuleExtractor().extract(doc, chunks)
        keys = {e.key for e in extraction.entities}
        assert len(keys) == len(extraction.entities)
        for fact in extraction.facts:
            assert fact.subject_key in keys
            assert fact.object_key in keys
            assert fact.subject_key != fact.object_key
            assert fact.relation.isupper()
            assert fact.sentence in " ".join(chunks[fact.chunk_index].text.split())


async def test_no_chunks_no_entities() -> None:
    doc = parse_document("empty.md", "")
    assert await RuleExtractor().extract(doc, []) == Extraction()


# -- the LLM extractor ---------------------------------------------------------------

PASSAGE = (
    "Helga Brandt founded Nova Dynamics in Tromsø in 2016.\n"
    "Orion Bank acquired Nova Dynamics on 4 March 2021."
)

GOOD = {
    "entities": [
        {"name": "Helga Brandt", "type": "person"},
        {"name": "Nova Dynamics", "type": "Company"},
        {"name": "Tromsø", "type": "location"},
        {"name": "Orion Bank", "type": "bank"},
    ],
    "facts": [
        {
            "subject": "Helga Brandt",
            "object": "Nova Dynamics",
            "relation": "founded",
            "sentence": "Helga Brandt founded Nova Dynamics in Tromsø in 2016.",
            "valid_at": "2016",
            "invalid_at": None,
        },
        {
            "subject": "Orion Bank",
            "object": "Nova Dynamics",
            "relation": "acquired company",
            "sentence": "Orion Bank acquired Nova Dynamics on 4 March 2021.",
            "valid_at": "2021-03-04T09:00:00+09:00",
        },
    ],
}


class FakeModel:
    """Answers each call with the next scripted reply and records the messages."""

    def __init__(self, *replies: str) -> None:
        self.replies = list(replies)
        self.calls: list[list[dict[str, str]]] = []

    async def __call__(self, messages: list[dict[str, str]]) -> str:
        self.calls.append([dict(m) for m in messages])
        return self.replies.pop(0)


def _doc_and_chunks(text: str = PASSAGE) -> tuple[SourceDocument, Sequence[Chunk]]:
    doc = parse_document("llm.md", text)
    return doc, chunk_text(doc.content, size=1000, overlap=0)


async def test_either_extractor_serves_through_the_protocol() -> None:
    """Used as an ``Extractor``, each finds the passage's acquisition, keyed alike."""
    passage = "Orion Bank acquired Nova Dynamics on 4 March 2021."
    reply = {
        "entities": [
            {"name": "Orion Bank", "type": "organization"},
            {"name": "Nova Dynamics", "type": "organization"},
        ],
        "facts": [
            {
                "subject": "Orion Bank",
                "object": "Nova Dynamics",
                "relation": "acquired",
                "sentence": passage,
                "valid_at": "2021-03-04",
            }
        ],
    }
    extractors: list[Extractor] = [RuleExtractor(), LlmExtractor(FakeModel(json.dumps(reply)))]
    doc, chunks = _doc_and_chunks(passage)
    for extractor in extractors:
        extraction = await extractor.extract(doc, chunks)
        keys = {e.name: e.key for e in extraction.entities}
        assert {"Orion Bank", "Nova Dynamics"} <= set(keys), extractor
        [fact] = [f for f in extraction.facts if f.subject_key == keys["Orion Bank"]]
        assert fact.object_key == keys["Nova Dynamics"], extractor
        assert fact.relation == "ACQUIRED", extractor
        assert (fact.valid_at or "").startswith("2021-03-04"), extractor


async def test_llm_good_json_is_validated_and_normalised() -> None:
    model = FakeModel("```json\n" + json.dumps(GOOD) + "\n```")
    doc, chunks = _doc_and_chunks()
    extraction = await LlmExtractor(model).extract(doc, chunks)

    assert len(model.calls) == 1
    assert [m["role"] for m in model.calls[0]] == ["system", "user"]
    assert PASSAGE in model.calls[0][1]["content"]
    assert _types(extraction) == {
        "helga brandt": "person",
        "nova dynamics": "organization",
        "tromsø": "place",
        "orion bank": "other",
    }
    assert _rows(extraction) == {
        ("helga brandt", "FOUNDED", "nova dynamics", "2016-01-01", None),
        ("orion bank", "ACQUIRED_COMPANY", "nova dynamics", "2021-03-04", None),
    }
    assert {f.chunk_index for f in extraction.facts} == {0}


async def test_llm_fact_with_unknown_entity_or_foreign_sentence_is_dropped(
    caplog: pytest.LogCaptureFixture,
) -> None:
    answer = {
        "entities": GOOD["entities"],
        "facts": [
            {
                "subject": "Someone Else",
                "object": "Nova Dynamics",
                "relation": "FOUNDED",
                "sentence": "Helga Brandt founded Nova Dynamics in Tromsø in 2016.",
            },
            {
                "subject": "Orion Bank",
                "object": "Nova Dynamics",
                "relation": "ACQUIRED",
                "sentence": "Orion Bank bought Nova Dynamics for a large sum.",
            },
            {
                "subject": "Orion Bank",
                "object": "orion bank",
                "relation": "IS",
                "sentence": "Orion Bank acquired Nova Dynamics on 4 March 2021.",
            },
            {
                "subject": "orion bank",
                "object": "NOVA DYNAMICS",
                "relation": "ACQUIRED",
                "sentence": "Orion  Bank acquired Nova Dynamics\non 4 March 2021.",
            },
        ],
    }
    doc, chunks = _doc_and_chunks()
    with caplog.at_level(logging.INFO, logger="agent_trio.ingest"):
        extraction = await LlmExtractor(FakeModel(json.dumps(answer))).extract(doc, chunks)

    assert _rows(extraction) == {("orion bank", "ACQUIRED", "nova dynamics", None, None)}
    assert extraction.facts[0].sentence == "Orion Bank acquired Nova Dynamics on 4 March 2021."
    messages = [r.getMessage() for r in caplog.records]
    assert any("'Someone Else' is not among the entities" in m for m in messages)
    assert any("is not in the passage" in m for m in messages)
    assert any("same entity" in m for m in messages)


async def test_llm_garbage_then_good_is_retried_with_the_error() -> None:
    model = FakeModel("Sure! Here are the entities: Helga, Nova.", json.dumps(GOOD))
    doc, chunks = _doc_and_chunks()
    extraction = await LlmExtractor(model).extract(doc, chunks)

    assert len(model.calls) == 2
    retry = model.calls[1]
    assert [m["role"] for m in retry] == ["system", "user", "assistant", "user"]
    assert retry[2]["content"] == "Sure! Here are the entities: Helga, Nova."
    assert "not valid" in retry[3]["content"]
    assert "JSON" in retry[3]["content"]
    assert len(extraction.facts) == 2


async def test_llm_invalid_date_is_a_validation_error_that_is_retried() -> None:
    bad = json.loads(json.dumps(GOOD))
    bad["facts"][0]["valid_at"] = "sometime in spring"
    model = FakeModel(json.dumps(bad), json.dumps(GOOD))
    doc, chunks = _doc_and_chunks()
    extraction = await LlmExtractor(model).extract(doc, chunks)

    assert "facts.0.valid_at" in model.calls[1][3]["content"]
    assert "not an ISO-8601 date" in model.calls[1][3]["content"]
    assert len(extraction.facts) == 2


async def test_llm_garbage_twice_skips_the_chunk_with_a_logged_reason(
    caplog: pytest.LogCaptureFixture,
) -> None:
    model = FakeModel("not json", '{"entities": "also wrong"}')
    doc, chunks = _doc_and_chunks()
    with caplog.at_level(logging.WARNING, logger="agent_trio.ingest"):
        extraction = await LlmExtractor(model).extract(doc, chunks)

    assert extraction == Extraction()
    assert len(model.calls) == 2
    [record] = [r for r in caplog.records if r.name == "agent_trio.ingest"]
    assert record.levelno == logging.WARNING
    assert "llm.md: chunk 0 skipped" in record.getMessage()
    assert "entities" in record.getMessage()


async def test_llm_one_bad_chunk_does_not_lose_the_others() -> None:
    text = PASSAGE + "\n\n" + "Filler sentence number one. " * 40
    doc = parse_document("two.md", text)
    chunks = chunk_text(doc.content, size=400, overlap=0)
    assert len(chunks) >= 2
    replies = [json.dumps(GOOD)] + ["garbage", "garbage"] * (len(chunks) - 1)
    extraction = await LlmExtractor(FakeModel(*replies)).extract(doc, chunks)
    assert len(extraction.facts) == 2
    assert len(extraction.entities) == 4


async def test_llm_upstream_errors_propagate() -> None:
    async def down(messages: list[dict[str, str]]) -> str:
        raise UpstreamUnavailable("LLM API unreachable", upstream="llm")

    doc, chunks = _doc_and_chunks()
    with pytest.raises(UpstreamUnavailable):
        await LlmExtractor(down).extract(doc, chunks)
