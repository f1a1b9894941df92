"""Which relation the words between two names state, by verb cues.

The first cue found wins; a passive ``… by`` after it, or a cue such as ``raised``
("Kestrel raised €5m from Moraine": Moraine INVESTED_IN Kestrel), runs the relation
from the second name to the first. Before a place, ``in`` or ``near`` means
LOCATED_IN; a person ``of``, ``at``, ``for`` or ``with`` an organization WORKS_AT
it; with no cue the relation is RELATED_TO.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from agent_trio.extract._dates import END_CUE, START_VERB
from agent_trio.extract._model import EntityType

__all__ = ["RELATED_TO", "passive_relation", "relation", "states_relation"]

#: the relation of two entities that the text names together without saying how
RELATED_TO = "RELATED_TO"


@dataclass(frozen=True, slots=True)
class _Cue:
    relation: str
    pattern: re.Pattern[str]
    reverse: bool = False


def _cue(relation: str, words: str, *, reverse: bool = False) -> _Cue:
    return _Cue(relation, re.compile(rf"\b(?:{words})\b"), reverse)


_CUES = (
    _cue("ACQUIRED", r"acquir(?:e|es|ed|ing)|bought|buys|purchas(?:e|es|ed)|took over|takeover of"),
    _cue("MERGED_WITH", r"merged with|merger with|merges with"),
    _cue("FOUNDED", r"(?:co-?)?found(?:ed|s|ing)|(?:co-?)?founders? of|establish(?:ed|es)"),
    _cue(
        "INVESTED_IN",
        r"raised|secured|closed (?:a|its|the)|round led by|funding from|investment from",
        reverse=True,
    ),
    _cue(
        "INVESTED_IN",
        r"invest(?:ed|s|ing)?(?: [^\s.;]+){0,5} in|investment in|backed|funded|participated in"
        r"|(?:co-)?led (?:the|a|an|its|their) [^.;]*?(?:round|investment)",
    ),
    _cue(
        "PARTNERED_WITH",
        r"partner(?:ed|s|ing)? with|partnership with|teamed up with"
        r"|collaborat(?:e|es|ed|ing) with|alliance with|agreement with",
    ),
    _cue(
        "LEADS",
        r"ceo of|chief executive of|cto of|head of|heads|leads|runs|president of|chair of"
        r"|director of|managing director of|vice president of|vp of",
    ),
    _cue(
        "WORKS_AT",
        r"join(?:ed|s|ing)|works? (?:at|for)|worked (?:at|for)|employed (?:at|by)|hired by"
        r"|left|leaves|leaving|resigned from|departed|stepped down",
    ),
    _cue("HIRED", r"hired|hires|appointed|recruited"),
    _cue(
        "LAUNCHED",
        r"launch(?:ed|es)?|releas(?:ed|es)|unveil(?:ed|s)|introduc(?:ed|es)|ship(?:ped|s)"
        r"|debut(?:ed|s)|rolled out",
    ),
    _cue("DEVELOPED", r"develop(?:ed|s)|buil(?:t|ds)|design(?:ed|s)|creat(?:ed|es)|makes|made"),
    _cue("SPOKE_AT", r"spoke at|speaks at|presented at|keynote at|talk at|exhibited at"),
    _cue(
        "LOCATED_IN",
        r"based in|headquartered in|located in|held in|took place in|offices? in|opened [^.;]*in",
    ),
    _cue("HOSTED", r"host(?:ed|s)|organi[sz](?:ed|es)"),
    _cue("USES", r"uses|used|deploy(?:ed|s)|adopt(?:ed|s)|install(?:ed|s)"),
    _cue("COMPETES_WITH", r"compet(?:es|ed|ing) with|competitor of|rival of|rivals"),
)
#: whether any cue is there at all (most text between two names has none)
_ANY_CUE = re.compile("|".join(cue.pattern.pattern for cue in _CUES))
_PASSIVE_BY = re.compile(r"\s+by\b")
_ENDS_WITH_PLACE_PREPOSITION = re.compile(r"\b(?:in|near)(?:\s+the)?\s*$")
_ENDS_WITH_MEMBERSHIP = re.compile(r"\b(?:at|for|of|with)(?:\s+the)?\s*$")


def relation(between: str, subject: EntityType, obj: EntityType) -> tuple[str, bool]:
    """The relation stated by the text between two entities, and whether it runs backwards."""
    text = between.casefold()
    if obj == "place" and _ENDS_WITH_PLACE_PREPOSITION.search(text):
        return "LOCATED_IN", False  # "… founded in Lisbon", "held in Rotterdam"
    if _ANY_CUE.search(text) is not None:
        for cue in _CUES:  # the first cue in this order wins, wherever it is in the text
            match = cue.pattern.search(text)
            if match is not None:
                return cue.relation, cue.reverse or bool(_PASSIVE_BY.match(text, match.end()))
    if subject == "person" and obj == "organization" and _ENDS_WITH_MEMBERSHIP.search(text):
        return "WORKS_AT", False  # "Daniel Osei of Arden Capital"
    return RELATED_TO, False


def passive_relation(verb: str) -> str | None:
    """The relation of a passive verb (``founded`` in "was founded by"), if it has one."""
    return next((c.relation for c in _CUES if c.pattern.fullmatch(verb)), None)


def states_relation(text: str) -> bool:
    """Whether ``text`` has a verb that starts another relation (ending ones don't count)."""
    folded = END_CUE.sub(" ", text.casefold())
    return bool(START_VERB.search(folded)) or any(c.pattern.search(folded) for c in _CUES)
