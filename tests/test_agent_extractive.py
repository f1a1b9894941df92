"""The extractive answer, composed from search results (no engine: results built here)."""

from __future__ import annotations

from agent_trio.agent import compose_answer
from agent_trio.agent._extractive import NOTHING_FOUND
from agent_trio.graph import ChunkHit
from agent_trio.search import GraphResult


def chunk(n: int, text: str, score: float, title: str = "Doc") -> ChunkHit:
    return ChunkHit(f"c{n}", f"d{n}", text, score, score, {}, f"{title} {n}", f"docs/{n}.md")


def fact(text: str, valid_at: str | None = None) -> GraphResult:
    return GraphResult(text, text, valid_at, None, "a", "b", "rel", "A", "B", None, None, 0.5)


ACQUISITION = chunk(
    1,
    "# Corvid Systems acquires Kestrel Labs\n\n"
    "Corvid, a German company based in Munich, makes software for factory\n"
    "and energy plant monitoring. Corvid Systems acquired Kestrel Labs on 15 June 2022,\n"
    "paying 180 million euros in cash and shares.\n\n"
    "## What changes\n\n- Kestrel Labs becomes Corvid Telemetry.\n",
    0.9,
    "Acquisition",
)
GLOSSARY = chunk(2, "SCADA: supervisory control and data acquisition. It records data.", 0.7)


def test_the_best_matching_sentence_opens_the_answer() -> None:
    answer = compose_answer("Who acquired Kestrel Labs?", [GLOSSARY, ACQUISITION], [])
    assert answer.text.startswith("Corvid Systems acquired Kestrel Labs on 15 June 2022")
    assert "#" not in answer.text
    assert "Quoted from Acquisition 1." in answer.text
    assert "extractive" in answer.text
    assert answer.quoted[0].chunk_id == "c1"


def test_related_facts_follow_unless_quoted() -> None:
    facts = [
        fact("Corvid Systems acquired Kestrel Labs on 15 June 2022.", "2022-06-15"),
        fact("Ines Marlow leads Corvid Telemetry.", "2022-07-01"),
        fact("Halvorsen Energy runs offshore wind farms."),
    ]
    answer = compose_answer("What did Corvid do with Kestrel?", [ACQUISITION], facts)
    assert "Related facts:\n- Ines Marlow leads Corvid Telemetry. (2022-07-01)" in answer.text
    assert answer.text.count("acquired Kestrel Labs") == 1
    assert "Halvorsen" not in answer.text  # shares no word with the question


def test_nothing_relevant_is_said_plainly() -> None:
    answer = compose_answer("zzz qqq", [ACQUISITION], [fact("Ines Marlow leads Corvid.")])
    assert answer.text == NOTHING_FOUND
    assert answer.quoted == ()
    assert compose_answer("anything", [], []).text == NOTHING_FOUND
