"""What kind of thing a name is: person, organization, product, place, event or other.

Each mention of a name collects weighted votes from cues in and around it:
company suffixes, event words, product codes and launch verbs, titles and roles,
``in <Place>``, an apposition ("Corvid, a German company"). The entity takes the
type with the most votes over all its mentions; a name no cue typed is an
organization beside a sibling organization, else a personal name by its shape.
"""

from __future__ import annotations

from collections import Counter
from typing import NamedTuple

from agent_trio.extract._identity import entity_key
from agent_trio.extract._lexicon import (
    EVENT_WORDS,
    LAUNCH_VERBS,
    NOT_PLACE_BEFORE_IN,
    ORG_NOUNS,
    ORG_PREPOSITIONS,
    ORG_SUFFIXES,
    ORG_VERBS,
    PERSON_VERBS,
    PLACE_NOUNS,
    PLACE_PREPOSITIONS,
    PLACE_SUFFIXES,
    PRODUCT_NOUNS,
    RELATIVES,
    ROLES,
    TITLES,
)
from agent_trio.extract._model import ENTITY_TYPES, EntityType
from agent_trio.extract._tokens import Token, capitalised

__all__ = ["personal", "type_votes", "unmarked_type", "winner"]


class _Context(NamedTuple):
    """A name and the words around it, folded to lower case."""

    words: list[str]
    before: list[str]
    after: list[str]
    following: list[Token]
    comma_after: bool
    possessive: bool


def type_votes(sentence: str, tokens: list[Token], run: list[int]) -> Counter[EntityType]:
    """The votes of the cues around the name made of ``tokens[i] for i in run``."""
    context = _context(sentence, tokens, run)
    votes: Counter[EntityType] = Counter()
    for rule in (_name_cues, _person_cues, _org_cues, _place_cues, _product_cues):
        rule(context, votes)
    return votes


def winner(votes: Counter[EntityType]) -> EntityType:
    """The type with the most votes (ties to the earlier of ENTITY_TYPES), else "other"."""
    best: EntityType = "other"
    most = 0
    for kind in ENTITY_TYPES:
        if votes[kind] > most:
            best, most = kind, votes[kind]
    return best


def unmarked_type(name: str, org_heads: set[str]) -> EntityType:
    """The type of a name that no cue typed: a sibling of an organization, a personal name."""
    words = name.split()
    if len(words) > 1 and entity_key(words[0]) in org_heads:
        return "organization"  # "Corvid Telemetry" beside "Corvid Systems"
    return "person" if _looks_personal(words) else "other"


def personal(key: str, votes: Counter[EntityType]) -> bool:
    """Whether the entity ``key`` is a person: by its votes, or without any by its shape."""
    if votes.total():
        return winner(votes) == "person"
    return _looks_personal(key.split())


def _looks_personal(words: list[str]) -> bool:
    return 2 <= len(words) <= 3 and all(w.isalpha() for w in words)


def _context(sentence: str, tokens: list[Token], run: list[int]) -> _Context:
    last = tokens[run[-1]]
    following = tokens[run[-1] + 1 : run[-1] + 6]
    return _Context(
        words=[tokens[i].fold for i in run],
        before=[t.fold for t in tokens[max(0, run[0] - 4) : run[0]]],
        after=[t.fold for t in following],
        following=following,
        comma_after=sentence.startswith(",", last.end),
        possessive=last.possessive,
    )


#: the votes a rule adds to
_Votes = Counter[EntityType]


def _name_cues(c: _Context, votes: _Votes) -> None:
    if c.words[-1] in ORG_SUFFIXES:
        votes["organization"] += 4
    if any(w in EVENT_WORDS for w in c.words):
        votes["event"] += 4
    if c.words[-1] in PLACE_SUFFIXES or c.words[-1].endswith("-based"):
        votes["place"] += 3
    if any(ch.isdigit() for w in c.words for ch in w):
        votes["product"] += 3


def _person_cues(c: _Context, votes: _Votes) -> None:
    if c.before[-1:] and c.before[-1] in TITLES:
        votes["person"] += 4
    elif c.before[-1:] and c.before[-1] in ROLES:
        votes["person"] += 3
    verb = c.after[0] if c.after else ""
    if verb in PERSON_VERBS and not c.possessive and (verb == "who" or not c.comma_after):
        votes["person"] += 2
    if _apposition(c) == "role":
        votes["person"] += 4  # "Lena Vogt, chief executive of …"


def _org_cues(c: _Context, votes: _Votes) -> None:
    if not c.comma_after and c.after[:1] and c.after[0] in ROLES:
        votes["organization"] += 2  # "Kestrel CEO", "Kestrel's chief executive"
    if c.after[:1] and c.after[0] in ORG_VERBS and not c.possessive:
        votes["organization"] += 1
    if c.before[-1:] and c.before[-1] in ORG_PREPOSITIONS:
        votes["organization"] += 1
    if c.before[-1:] and c.before[-1] in ORG_NOUNS:
        votes["organization"] += 2  # "the growth investor Moraine Ventures"
    if _apposition(c) == "organization":
        votes["organization"] += 2  # "Corvid, a German company …"


def _place_cues(c: _Context, votes: _Votes) -> None:
    before = c.before[:-1] if c.before[-1:] == ["the"] else c.before
    if before[-1:] and before[-1] in PLACE_PREPOSITIONS:
        if len(before) < 2 or before[-2] not in NOT_PLACE_BEFORE_IN:
            votes["place"] += 2
    elif c.before[-1:] == ["from"]:
        votes["place"] += 1
    lower_after = [t.fold for t in c.following[:3] if not capitalised(t)]
    if not c.possessive and any(w in PLACE_NOUNS for w in lower_after):
        votes["place"] += 2  # "the Skarv offshore wind farm"


def _product_cues(c: _Context, votes: _Votes) -> None:
    if any(b in LAUNCH_VERBS for b in c.before[-3:]):
        votes["product"] += 2
    if c.after[:1] and c.after[0] in PRODUCT_NOUNS and not c.possessive:
        votes["product"] += 2


def _apposition(c: _Context) -> str | None:
    """What a phrase after a comma says the name is: "role", "organization" or nothing.

    "Lena Vogt, the chief executive" (role) and "Corvid, a German company"
    (organization); a relative clause ("Kestrel, whose chief …") says neither.
    """
    if not c.comma_after or not c.following or c.after[0] in RELATIVES:
        return None
    for token in c.following[:5]:
        if token.fold in ROLES:
            return "role"
        if token.fold in ORG_NOUNS and not token.possessive:
            return "organization"
    return None
