"""Answers without a language model (``LLM_PROVIDER=none``): quoted from the documents.

The answerer searches the way ``search_type`` says (``hybrid`` and ``graph`` also
look for facts), then ranks the sentences of the chunks found by how much of the
question they cover — each question word weighted by how rare it is among those
sentences, words compared by their first letters so that *acquire* meets
*acquired* — plus a little for the chunk's own score. The best sentence opens the
answer, so the first sentence answers the question when a document does; up to
two more follow, then facts from the graph that the quotes do not already state,
then a line naming the documents quoted and saying that the answer is extractive.
It streams like an LLM answer: the search as a tool call, the text in pieces, the
sources.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass

import trio

from agent_trio._errors import AgentTrioError
from agent_trio.agent._events import AnswerText, Emit, Source, SourcesFound, ToolUse
from agent_trio.graph import STOPWORDS, ChunkHit
from agent_trio.search import GraphResult, Searcher

__all__ = ["EXTRACTIVE_MODEL", "Answer", "ExtractiveAnswerer", "compose_answer"]

EXTRACTIVE_MODEL = "extractive"

#: chunks and facts searched for
_CHUNKS, _FACTS = 5, 5
#: sentences quoted at most, facts added at most
_QUOTES, _EXTRA_FACTS = 3, 3
#: characters of a word that must agree for two words to count as the same
_STEM = 5
#: words per streamed piece
_PIECE_WORDS = 6

_WORD = re.compile(r"[^\W_][\w'’-]*")
_SENTENCE_END = re.compile(r"(?<=[.!?])[\"”)]?\s+(?=[\"“(]?[A-Z0-9])")
_MARKUP = re.compile(r"^\s*(#+\s.*|[-*_]{3,}\s*|\w[\w ]{0,30}:\s*\[.*\]\s*)$")
_BULLET = re.compile(r"^\s*(?:[-*+]|\d+[.)])\s+")

NOTHING_FOUND = (
    "I found nothing in the knowledge base about that. "
    "Try other words, or add documents that cover it."
)


@dataclass(frozen=True, slots=True)
class _Sentence:
    text: str
    chunk: int  # rank of its chunk (0 = best)
    position: int  # order within the chunk


class ExtractiveAnswerer:
    """Answers from the search results alone (no LLM)."""

    def __init__(self, searcher: Searcher) -> None:
        self._searcher = searcher

    async def run(self, question: str, emit: Emit, *, search_type: str = "hybrid") -> None:
        chunk_tool = "vector_search" if search_type == "vector" else "hybrid_search"
        await emit(ToolUse(chunk_tool, {"query": question, "limit": _CHUNKS}, "search-1"))
        if search_type != "vector":
            await emit(ToolUse("graph_search", {"query": question}, "search-2"))
        chunks: list[ChunkHit] = []
        facts: list[GraphResult] = []
        failures: list[AgentTrioError] = []

        async def find_chunks() -> None:
            search = self._searcher.vector if search_type == "vector" else self._searcher.hybrid
            try:
                chunks.extend(await search(question, _CHUNKS))
            except AgentTrioError as exc:
                failures.append(exc)

        async def find_facts() -> None:
            try:
                facts.extend(await self._searcher.graph(question, _FACTS))
            except AgentTrioError as exc:
                failures.append(exc)

        async with trio.open_nursery() as nursery:
            nursery.start_soon(find_chunks)
            if search_type != "vector":
                nursery.start_soon(find_facts)
        if failures:  # an outage: one error for the caller, not a group of two
            raise failures[0]
        answer = compose_answer(question, chunks, facts)
        if answer.quoted:
            await emit(SourcesFound(tuple(Source.from_chunk(c) for c in answer.quoted)))
        for piece in _pieces(answer.text):
            await emit(AnswerText(piece))


@dataclass(frozen=True, slots=True)
class Answer:
    text: str
    quoted: tuple[ChunkHit, ...]  # the chunks quoted, best first


def compose_answer(
    question: str, chunks: Sequence[ChunkHit], facts: Sequence[GraphResult]
) -> Answer:
    """The extractive answer to ``question`` from the chunks and facts, best first.

    Only sentences and facts that share a word with the question are used.
    """
    sentences = [s for rank, c in enumerate(chunks) for s in _sentences(c.content, rank)]
    ranked = _rank(question, sentences, [c.score for c in chunks])
    quotes = _pick(ranked)
    text = " ".join(s.text for s in quotes)
    wanted = _stems(question)
    extra = [f for f in facts if wanted & _stems(f.fact) and _norm(f.fact) not in _norm(text)][
        :_EXTRA_FACTS
    ]
    quoted = tuple(chunks[i] for i in sorted({s.chunk for s in quotes}))
    if not quotes and not extra:
        return Answer(NOTHING_FOUND, ())
    parts = [text] if text else ["The knowledge base holds these facts:"]
    if extra:
        lines = [
            f"- {f.fact.strip()}" + (f" ({f.valid_at[:10]})" if f.valid_at else "") for f in extra
        ]
        parts.append(("Related facts:\n" if text else "") + "\n".join(lines))
    titles = list(dict.fromkeys(chunks[s.chunk].document_title for s in quotes))
    cited = f"Quoted from {', '.join(titles)}. " if titles else ""
    parts.append(f"({cited}This answer is extractive: no language model is configured.)")
    return Answer("\n\n".join(parts), quoted)


def _dated(valid_at: str | None) -> str:
    return f" ({valid_at[:10]})" if valid_at else ""


def _sentences(content: str, rank: int) -> list[_Sentence]:
    paragraphs: list[str] = []
    current: list[str] = []
    for line in content.splitlines():
        if not line.strip() or _MARKUP.match(line) or _BULLET.match(line):
            paragraphs.append(" ".join(current))
            current = []
            if _BULLET.match(line):
                paragraphs.append(_BULLET.sub("", line))
            continue
        current.append(line.strip())
    paragraphs.append(" ".join(current))
    out: list[_Sentence] = []
    for paragraph in paragraphs:
        for piece in _SENTENCE_END.split(paragraph):
            text = " ".join(piece.split())
            if len(_WORD.findall(text)) >= 3:
                out.append(_Sentence(text, rank, len(out)))
    return out


def _stems(text: str) -> set[str]:
    words = (w.lower().strip("'’-") for w in _WORD.findall(text))
    return {w[:_STEM] for w in words if w and w not in STOPWORDS and (len(w) > 1 or w.isdigit())}


def _rank(
    question: str, sentences: Sequence[_Sentence], chunk_scores: Sequence[float]
) -> list[tuple[float, _Sentence]]:
    wanted = _stems(question)
    if not wanted or not sentences:
        return []
    stems = [_stems(s.text) for s in sentences]
    count = len(sentences)
    weight = {w: math.log(1 + count / (1 + sum(w in s for s in stems))) for w in wanted}
    total = sum(weight.values())
    best = max(chunk_scores, default=1.0) or 1.0
    scored = []
    for sentence, have in zip(sentences, stems, strict=True):
        cover = sum(weight[w] for w in wanted & have) / total
        if cover <= 0:
            continue
        length = len(sentence.text)
        score = cover + 0.15 * chunk_scores[sentence.chunk] / best - (0.1 if length > 350 else 0.0)
        scored.append((score, sentence))
    scored.sort(key=lambda item: (-item[0], item[1].chunk, item[1].position))
    return scored


def _pick(ranked: Sequence[tuple[float, _Sentence]]) -> list[_Sentence]:
    if not ranked:
        return []
    top = ranked[0][0]
    picked: list[_Sentence] = []
    seen: set[str] = set()
    for score, sentence in ranked:
        key = _norm(sentence.text)
        if key in seen or score < 0.5 * top:
            continue
        seen.add(key)
        picked.append(sentence)
        if len(picked) == _QUOTES:
            break
    return picked


def _norm(text: str) -> str:
    return " ".join(_WORD.findall(text.lower()))


def _pieces(text: str) -> list[str]:
    words = re.findall(r"\S+\s*", text)
    return ["".join(words[i : i + _PIECE_WORDS]) for i in range(0, len(words), _PIECE_WORDS)]
