"""The extraction prompt: what the model is asked for, and how its answer is read.

The answer must be one JSON object of entities and facts. Reading it forgives
what a model commonly gets wrong without changing the meaning: a code fence or
text around the object, a type synonym ("company"), a relation not in
UPPER_SNAKE_CASE, a date-time or a year-month for a date.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from agent_trio.extract._dates import normalise_iso
from agent_trio.extract._model import ENTITY_TYPES, EntityType
from agent_trio.extract._relations import RELATED_TO

__all__ = [
    "RETRY_PROMPT",
    "SYSTEM_PROMPT",
    "LlmFact",
    "LlmOutput",
    "describe",
    "parse_answer",
]

SYSTEM_PROMPT = """\
You extract a knowledge graph from one passage of a document.
Answer with a single JSON object and nothing else, of this shape:
{"entities": [{"name": "...", "type": "person|organization|product|place|event|other"}],
 "facts": [{"subject": "...", "object": "...", "relation": "...", "sentence": "...",
            "valid_at": "YYYY-MM-DD or null", "invalid_at": "YYYY-MM-DD or null"}]}
Rules:
- entities: the named people, organizations, products, places and events in the passage,
  names written as in the passage.
- facts: relationships between two of those entities that the passage states. subject and
  object are names from "entities". relation is a short verb in UPPER_SNAKE_CASE, such as
  FOUNDED, ACQUIRED, WORKS_AT, LEADS, LAUNCHED, PARTNERED_WITH, INVESTED_IN, LOCATED_IN or
  RELATED_TO. sentence is the sentence of the passage that states the fact, copied exactly.
- valid_at is the date from which the fact holds and invalid_at the date on which it stopped
  holding, only when the passage says so; otherwise null. A month alone means its first day,
  a year alone January 1.
- State nothing that the passage does not say."""

#: the follow-up after an invalid answer; ``{problem}`` says what was wrong
RETRY_PROMPT = (
    "That answer is not valid: {problem}. Reply again with only the JSON object described above."
)

_TYPE_SYNONYMS: Mapping[str, EntityType] = MappingProxyType(
    {
        "organisation": "organization",
        "company": "organization",
        "org": "organization",
        "location": "place",
        "city": "place",
        "country": "place",
        "people": "person",
    }
)
_FENCE = re.compile(r"^\s*```(?:json)?\s*|\s*```\s*$")


class _LlmEntity(BaseModel):
    """An entity as the model names it; an unknown type is "other"."""

    model_config = ConfigDict(extra="ignore")

    name: str = Field(min_length=1, max_length=300)
    type: EntityType = "other"

    @field_validator("type", mode="before")
    @classmethod
    def _known_type(cls, value: Any) -> str:
        text = str(value).strip().casefold() if value is not None else "other"
        text = _TYPE_SYNONYMS.get(text, text)
        return text if text in ENTITY_TYPES else "other"


class LlmFact(BaseModel):
    """A fact as the model states it, by entity names, with ISO dates or none."""

    model_config = ConfigDict(extra="ignore")

    subject: str = Field(min_length=1)
    object: str = Field(min_length=1)
    relation: str = RELATED_TO
    sentence: str = Field(min_length=1)
    valid_at: str | None = None
    invalid_at: str | None = None

    @field_validator("relation")
    @classmethod
    def _upper_snake(cls, value: str) -> str:
        snake = re.sub(r"[^A-Za-z0-9]+", "_", value).strip("_").upper()[:40]
        return snake or RELATED_TO

    @field_validator("valid_at", "invalid_at", mode="before")
    @classmethod
    def _iso_date(cls, value: Any) -> str | None:
        if value is None or (isinstance(value, str) and value.strip().casefold() in {"", "null"}):
            return None
        return normalise_iso(str(value).strip())


class LlmOutput(BaseModel):
    """A whole valid answer."""

    model_config = ConfigDict(extra="ignore")

    entities: list[_LlmEntity] = Field(default_factory=list)
    facts: list[LlmFact] = Field(default_factory=list)


def parse_answer(answer: str) -> LlmOutput:
    """Validate an answer; a code fence or text around the object is tolerated.

    Raises :class:`pydantic.ValidationError` when it is not the expected JSON.
    """
    text = _FENCE.sub("", answer)
    first, last = text.find("{"), text.rfind("}")
    if first != -1 and last > first:
        text = text[first : last + 1]
    return LlmOutput.model_validate_json(text)


def describe(error: ValidationError) -> str:
    """The first few problems of ``error``, each with where in the answer it is."""
    parts = []
    for item in error.errors(include_url=False)[:8]:
        where = ".".join(str(p) for p in item["loc"])
        parts.append(f"{where}: {item['msg']}" if where else item["msg"])
    return "; ".join(parts)
