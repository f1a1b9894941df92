"""How extracted things are identified: an entity by its key, a fact by what it states.

Both extractors use these, so the same name found by rules or by a model, in any
document, addresses the same entity. The key is the graph's own
(:func:`agent_trio.graph.entity_key`), so extraction and storage cannot disagree.
"""

from __future__ import annotations

from collections.abc import Iterable

from agent_trio.extract._model import Fact
from agent_trio.graph import entity_key

__all__ = ["distinct_facts", "entity_key"]


def distinct_facts(facts: Iterable[Fact]) -> tuple[Fact, ...]:
    """``facts`` in order, keeping the first of those that state the same thing.

    Two facts state the same thing when they relate the same subject and object
    the same way in the same sentence; the first one found keeps its dates and chunk.
    """
    distinct: dict[tuple[str, str, str, str], Fact] = {}
    for fact in facts:
        distinct.setdefault((fact.subject_key, fact.object_key, fact.relation, fact.sentence), fact)
    return tuple(distinct.values())
