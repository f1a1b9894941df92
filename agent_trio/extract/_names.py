"""Names in a sentence: runs of capitalised words, each a mention with its type votes.

A name is a run of capitalised words; name particles (``van``, ``de``, ``&``) and
``of`` after a head like ``Bank`` or ``University`` may join them. Roles, months,
periods (``Q3``, ``FY24``), stop words at the edges and runs of department words
are not names; nor is a lone nationality before a common noun ("a German company").
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass

from agent_trio.extract._identity import entity_key
from agent_trio.extract._kinds import type_votes
from agent_trio.extract._lexicon import (
    FUNCTION_WORDS,
    OF_HEADS,
    PARTICLES,
    PERSON_VERBS,
    ROLES,
    SEQUENCE_WORDS,
    STOP,
    TIME_WORDS,
)
from agent_trio.extract._model import EntityType
from agent_trio.extract._tokens import Token, capitalised, tokens

__all__ = ["Mention", "Sentence", "sentence_mentions"]

_INITIAL_CONTEXT = re.compile(r"(?:^|[:;\"“‘(]\s*|\s[–—-]\s)$")
_PERIOD = re.compile(r"\d+|q[1-4]|h[12]|fy\d{2}(?:\d{2})?")  # numbers, quarters, halves
_JOIN = re.compile(r"[ \t]+|[ \t]*\n[ \t]*")
_DEMONYM = re.compile(
    r"[a-z]+(?:ian|ese|ish|ean)|german|french|dutch|swiss|greek|thai|american|african|mexican"
)
_LEADING_NOISE = STOP | PARTICLES | {"of"}
_TRAILING_NOISE = PARTICLES | {"of"}


@dataclass(slots=True)
class Mention:
    """A name at ``start:end`` of its sentence.

    ``initial`` when it is a single word opening the sentence (or a clause), where
    capitalisation says nothing; ``votes`` are its type cues.
    """

    start: int
    end: int
    name: str
    key: str
    initial: bool
    votes: Counter[EntityType]


@dataclass(frozen=True, slots=True)
class Sentence:
    """A sentence of chunk ``chunk_index`` and the names it mentions."""

    chunk_index: int
    text: str
    mentions: tuple[Mention, ...]


def sentence_mentions(sentence: str) -> list[Mention]:
    """The names in ``sentence``, in order, each with the votes of its cues."""
    words = tokens(sentence)
    mentions = []
    for run in _runs(sentence, words):
        first, last = words[run[0]], words[run[-1]]
        name = sentence[first.start : last.end].removesuffix("-based")
        key = entity_key(name)
        if not key or _is_demonym(words, run):
            continue
        initial = len(run) == 1 and _INITIAL_CONTEXT.search(sentence, 0, first.start) is not None
        votes = type_votes(sentence, words, run)
        mentions.append(Mention(first.start, first.start + len(name), name, key, initial, votes))
    return mentions


def _name_word(token: Token) -> bool:
    """A capitalised word that can be part of a name (not a role, month or stop word)."""
    if token.text.islower():  # most words: the quick answer
        return False
    fold = token.fold.removesuffix("-based")
    return (
        capitalised(token)
        and fold not in ROLES
        and fold not in TIME_WORDS
        and not _PERIOD.fullmatch(fold)
    )


def _runs(sentence: str, tokens: list[Token]) -> list[list[int]]:
    """Indexes of maximal runs of name words joined by spaces or name particles."""
    runs: list[list[int]] = []
    current: list[int] = []
    names = [_name_word(token) for token in tokens]
    for i, token in enumerate(tokens):
        if not names[i]:
            if current:
                if _joins_as_particle(sentence, tokens, names, current, i):
                    current.append(i)
                    continue
                _flush_run(runs, current, tokens)
                current = []
            continue
        if current and not _adjacent(sentence, tokens[current[-1]], token):
            _flush_run(runs, current, tokens)
            current = []
        current.append(i)
        if token.possessive or token.fold.endswith("-based"):
            _flush_run(runs, current, tokens)
            current = []
    _flush_run(runs, current, tokens)
    return runs


def _adjacent(sentence: str, left: Token, right: Token) -> bool:
    return not left.possessive and _JOIN.fullmatch(sentence, left.end, right.start) is not None


def _joins_as_particle(
    sentence: str, tokens: list[Token], names: list[bool], run: list[int], i: int
) -> bool:
    token = tokens[i]
    if i + 1 >= len(tokens) or not names[i + 1]:
        return False
    if not _adjacent(sentence, tokens[run[-1]], token):
        return False
    if not _adjacent(sentence, token, tokens[i + 1]):
        return False
    if token.fold == "of":
        return tokens[run[-1]].fold in OF_HEADS
    return token.fold in PARTICLES


def _flush_run(runs: list[list[int]], run: list[int], tokens: list[Token]) -> None:
    while run and tokens[run[0]].fold in _LEADING_NOISE:
        run = run[1:]
    while run and tokens[run[-1]].fold in _TRAILING_NOISE:
        run = run[:-1]
    if not run or all(tokens[i].fold in FUNCTION_WORDS for i in run):
        return
    if tokens[run[0]].fold not in SEQUENCE_WORDS:
        runs.append(run)


def _is_demonym(tokens: list[Token], run: list[int]) -> bool:
    """A lone adjective of nationality before a common noun ("a German company")."""
    if len(run) != 1 or run[0] + 1 >= len(tokens):
        return False
    word, following = tokens[run[0]], tokens[run[0] + 1]
    if capitalised(following) or following.fold in PERSON_VERBS:
        return False
    return bool(_DEMONYM.fullmatch(word.fold))
