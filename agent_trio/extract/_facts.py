"""Dated facts from the names of each sentence.

A sentence with two or more entities gives a fact per pair of neighbouring
entities, related by the words between them; a passive clause ("X was founded by
A and B") adds a fact per agent after ``by``. A fact's dates come from its own
part of the sentence, else from dates that open the sentence: a date that
closes (``until``, ``left`` …) is its ``invalid_at``, any other its ``valid_at``.
"""

from __future__ import annotations

import re

from agent_trio.extract._dates import DateMention, sentence_dates
from agent_trio.extract._identity import distinct_facts
from agent_trio.extract._model import EntityType, Fact
from agent_trio.extract._names import Mention, Sentence
from agent_trio.extract._relations import passive_relation, relation, states_relation

__all__ = ["sentence_facts"]

_PASSIVE = re.compile(r"\b(?:was|were|is|are|been|being)\s+(?:\w+ly\s+)?([a-z-]+)\b", re.I)
_AGENT = re.compile(r"\bby\s*$", re.I)
_COORDINATION = re.compile(r"\s*(?:,\s*)?(?:and\s+|or\s+)?", re.I)

#: a name and the key of the entity it names
_Named = tuple[Mention, str]


def sentence_facts(
    sentences: list[Sentence],
    kept: set[int],
    aliases: dict[str, str],
    types: dict[str, EntityType],
) -> tuple[Fact, ...]:
    """The distinct facts of ``sentences``, from their mentions whose ``id`` is ``kept``.

    ``aliases`` maps a mention's key to its entity's key; ``types`` gives each
    entity's type.
    """
    facts: list[Fact] = []
    for sentence in sentences:
        ordered = _distinct_neighbours([m for m in sentence.mentions if id(m) in kept], aliases)
        if len(ordered) < 2:
            continue
        dates = sentence_dates(sentence.text)
        facts += [
            _neighbour_fact(sentence, ordered, i, dates, types) for i in range(len(ordered) - 1)
        ]
        facts += _passive_facts(sentence, ordered, dates)
    return distinct_facts(facts)


def _distinct_neighbours(mentions: list[Mention], aliases: dict[str, str]) -> list[_Named]:
    ordered: list[_Named] = []
    for mention in sorted(mentions, key=lambda m: m.start):
        key = aliases.get(mention.key, mention.key)
        if not ordered or ordered[-1][1] != key:
            ordered.append((mention, key))
    return ordered


def _neighbour_fact(
    sentence: Sentence,
    ordered: list[_Named],
    i: int,
    dates: list[DateMention],
    types: dict[str, EntityType],
) -> Fact:
    (left, left_key), (right, right_key) = ordered[i], ordered[i + 1]
    between = sentence.text[left.end : right.start]
    stated, reverse = relation(between, types[left_key], types[right_key])
    scope_end = ordered[i + 2][0].start if i + 2 < len(ordered) else len(sentence.text)
    bounds = (left.end, right.start, right.end, scope_end)
    scoped = _fact_dates(sentence.text, dates, bounds, first_name=ordered[0][0].start)
    subject, obj = (right_key, left_key) if reverse else (left_key, right_key)
    return _fact(sentence, (subject, stated, obj), scoped)


def _passive_facts(
    sentence: Sentence, ordered: list[_Named], dates: list[DateMention]
) -> list[Fact]:
    """Facts of a passive clause: "Kestrel Labs was founded in Lisbon by Ines Marlow and …".

    The agents after ``by`` (and those joined to them by "and" or a comma) relate to
    the sentence's first entity, even when other names stand between them.
    """
    text = sentence.text
    (subject, subject_key), rest = ordered[0], ordered[1:]
    verb = _PASSIVE.search(text, subject.end)
    if verb is None:
        return []
    stated = passive_relation(verb.group(1).casefold())
    if stated is None:
        return []
    facts = []
    previous_end, agent = verb.end(), False
    for i, (mention, key) in enumerate(rest):
        if mention.start < verb.end():
            continue
        gap = text[previous_end : mention.start]
        agent = bool(_AGENT.search(gap)) or (agent and bool(_COORDINATION.fullmatch(gap)))
        previous_end = mention.end
        if agent and key != subject_key:
            scope_end = rest[i + 1][0].start if i + 1 < len(rest) else len(text)
            bounds = (subject.end, mention.start, mention.end, scope_end)
            scoped = _fact_dates(text, dates, bounds, first_name=subject.start)
            facts.append(_fact(sentence, (key, stated, subject_key), scoped))
    return facts


def _fact(sentence: Sentence, triple: tuple[str, str, str], dates: list[DateMention]) -> Fact:
    """The fact (subject, relation, object) of ``sentence``, dated by the first of ``dates``."""
    subject, stated, obj = triple
    valid_at = next((d.iso for d in dates if not d.closes), None)
    invalid_at = next((d.iso for d in dates if d.closes), None)
    return Fact(subject, obj, stated, sentence.text, valid_at, invalid_at, sentence.chunk_index)


def _fact_dates(
    text: str,
    dates: list[DateMention],
    bounds: tuple[int, int, int, int],
    *,
    first_name: int,
) -> list[DateMention]:
    """Dates between the two names, else after the second in the same clause, else leading.

    A date after the second name belongs to the fact unless a verb that starts
    something else comes first ("X founded Y, which launched a product in 2021");
    a verb that ends something closes the fact ("X joined Y and left in 2021").
    Failing both, the dates that open the sentence, before its first name
    (``first_name``), date every fact in it ("In May 2021, …").
    """
    left_end, right_start, right_end, scope_end = bounds
    inside = [d for d in dates if left_end <= d.start < right_start]
    if inside:
        return inside
    after = [
        d
        for d in dates
        if right_end <= d.start < scope_end and not states_relation(text[right_end : d.start])
    ]
    return after or [d for d in dates if d.start < first_name]
