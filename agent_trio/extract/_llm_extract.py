"""Extraction by an LLM: one call per chunk, the answer validated, one retry.

:class:`LlmExtractor` asks a chat-completion callable for strict JSON, validates
it, retries once with the validation error shown to the model, and otherwise
skips the chunk with a logged reason (logger ``agent_trio.ingest``). A fact whose
names are not among the passage's entities, or whose sentence is not in the
passage, is dropped with a logged reason. Errors raised by the callable itself
(upstream outages) propagate to the caller.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field

from pydantic import ValidationError

from agent_trio.document import Chunk, SourceDocument
from agent_trio.extract._identity import distinct_facts, entity_key
from agent_trio.extract._model import Entity, Extraction, Fact
from agent_trio.extract._prompt import (
    RETRY_PROMPT,
    SYSTEM_PROMPT,
    LlmFact,
    LlmOutput,
    describe,
    parse_answer,
)

__all__ = ["Complete", "LlmExtractor"]

# extraction runs as a step of ingestion, and its reasons are logged as ingestion's
logger = logging.getLogger("agent_trio.ingest")

#: an LLM chat completion: messages (``role``, ``content``) in, the answer's text out
Complete = Callable[[list[dict[str, str]]], Awaitable[str]]

_ATTEMPTS = 2


class LlmExtractor:
    """Extraction by an LLM, one call per chunk, through ``complete``.

    ``complete`` gets chat messages and returns the answer's text; its errors
    propagate. An answer that is not valid JSON of the expected shape is retried
    once with the problem stated; a second bad answer skips the chunk.
    """

    def __init__(self, complete: Complete) -> None:
        self._complete = complete

    async def extract(self, doc: SourceDocument, chunks: Sequence[Chunk]) -> Extraction:
        merged = _Merged()
        for chunk in chunks:
            output = await self._ask(doc, chunk)
            if output is not None:
                merged.add(doc, chunk, output)
        return merged.result()

    async def _ask(self, doc: SourceDocument, chunk: Chunk) -> LlmOutput | None:
        messages = [
            {"role": "system", "content": SYSTEM_PROMPT},
            {"role": "user", "content": f"Document: {doc.title}\n\nPassage:\n{chunk.text}"},
        ]
        for attempt in range(1, _ATTEMPTS + 1):
            answer = await self._complete(messages)
            try:
                return parse_answer(answer)
            except ValidationError as exc:
                problem = describe(exc)
            if attempt < _ATTEMPTS:  # show the model its mistake
                messages = [
                    *messages,
                    {"role": "assistant", "content": answer},
                    {"role": "user", "content": RETRY_PROMPT.format(problem=problem)},
                ]
        logger.warning(
            "%s: chunk %d skipped: the model answered %d times without valid JSON (%s)",
            doc.source,
            chunk.index,
            _ATTEMPTS,
            problem,
        )
        return None


@dataclass
class _Merged:
    """The entities and facts of the chunks so far; an entity keeps its first typed name."""

    entities: dict[str, Entity] = field(default_factory=dict)
    facts: list[Fact] = field(default_factory=list)

    def add(self, doc: SourceDocument, chunk: Chunk, output: LlmOutput) -> None:
        names: dict[str, str] = {}
        for item in output.entities:
            key = entity_key(item.name)
            if not key:
                continue
            names[key] = item.name
            known = self.entities.get(key)
            if known is None or (known.type == "other" and item.type != "other"):
                self.entities[key] = Entity(item.name.strip(), key, item.type)
        passage = _squash(chunk.text)
        for fact in output.facts:
            reason = _fact_problem(fact, names, passage)
            if reason is not None:
                logger.info("%s: chunk %d: fact dropped: %s", doc.source, chunk.index, reason)
                continue
            self.facts.append(
                Fact(
                    subject_key=entity_key(fact.subject),
                    object_key=entity_key(fact.object),
                    relation=fact.relation,
                    sentence=_squash(fact.sentence),
                    valid_at=fact.valid_at,
                    invalid_at=fact.invalid_at,
                    chunk_index=chunk.index,
                )
            )

    def result(self) -> Extraction:
        return Extraction(tuple(self.entities.values()), distinct_facts(self.facts))


def _fact_problem(fact: LlmFact, names: dict[str, str], passage: str) -> str | None:
    subject, obj = entity_key(fact.subject), entity_key(fact.object)
    for role, key, name in (("subject", subject, fact.subject), ("object", obj, fact.object)):
        if key not in names:
            return f"{role} {name!r} is not among the entities of the passage"
    if subject == obj:
        return f"subject and object are the same entity {fact.subject!r}"
    if _squash(fact.sentence) not in passage:
        return f"sentence {fact.sentence[:80]!r} is not in the passage"
    return None


def _squash(text: str) -> str:
    return " ".join(text.split())
