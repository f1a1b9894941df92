"""How extracted things are identified: an entity by its key, a fact by what it states.

Both extractors use these, so the same name found by rules or by a model, in any
document, addresses the same entity.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable

from agent_trio.ingest._lexicon import LEGAL_FORMS
from agent_trio.ingest._model import Fact

__all__ = ["distinct_facts", "entity_key"]

_KEY_PUNCTUATION = re.compile(r"[^\w\s&+-]")
_POSSESSIVE = re.compile(r"['’]s?$")


def entity_key(name: str) -> str:
    """The normalised form of an entity name that identifies it across documents.

    Case, accents' composition, punctuation, a leading "the", a possessive and a
    trailing legal form (Inc, GmbH, Ltd …) do not matter: ``"Corvid Systems GmbH"``
    and ``"corvid systems"`` have the same key.
    """
    text = unicodedata.normalize("NFKC", name).casefold().strip()
    text = _POSSESSIVE.sub("", text)
    words = _KEY_PUNCTUATION.sub(" ", text).split()
    if len(words) > 1 and words[0] == "the":
        words = words[1:]
    while len(words) > 1 and words[-1] in LEGAL_FORMS:
        words = words[:-1]
    return " ".join(words)


def distinct_facts(facts: Iterable[Fact]) -> tuple[Fact, ...]:
    """``facts`` in order, keeping the first of those that state the same thing.

    Two facts state the same thing when they relate the same subject and object
    the same way in the same sentence; the first one found keeps its dates and chunk.
    """
    distinct: dict[tuple[str, str, str, str], Fact] = {}
    for fact in facts:
        distinct.setdefault((fact.subject_key, fact.object_key, fact.relation, fact.sentence), fact)
    return tuple(distinct.values())
