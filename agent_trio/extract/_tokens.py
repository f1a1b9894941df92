"""A sentence as the word tokens that the extraction rules read."""

from __future__ import annotations

import re
from typing import NamedTuple

__all__ = ["Token", "capitalised", "tokens"]

_TOKEN = re.compile(r"[^\W_](?:[\w'’.&-]*[^\W_])?|&")
_APOSTROPHES = ("'", "’")
_POSSESSIVE_S = ("'s", "’s")


class Token(NamedTuple):
    """A word at ``start:end`` of its sentence; ``fold`` is it in lower case.

    A possessive ``'s`` is not part of the word; ``possessive`` says it followed.
    A named tuple: a sentence makes dozens, and a frozen dataclass took a third
    of the time of tokenising to build them.
    """

    start: int
    end: int
    text: str
    fold: str
    possessive: bool


#: builds a Token from a tuple without the named tuple's keyword-handling ``__new__``
_new_token = tuple.__new__


def tokens(sentence: str) -> list[Token]:
    """The words of ``sentence`` in order, and ``&`` on its own."""
    found: list[Token] = []
    append = found.append
    for match in _TOKEN.finditer(sentence):
        start, end = match.span()
        text = match.group()
        if end - start > 2 and text.endswith(_POSSESSIVE_S):
            end -= 2
            text = text[:-2]
            possessive = True
        else:
            possessive = sentence.startswith(_APOSTROPHES, end)
        append(_new_token(Token, (start, end, text, text.casefold(), possessive)))
    return found


def capitalised(token: Token) -> bool:
    """Whether ``token`` starts with a capital, or mixes digits and capitals (``X2``)."""
    text = token.text
    if text[0].isupper():
        return True
    if text.islower():  # most words: no capital anywhere
        return False
    return any(c.isdigit() for c in text) and any(c.isupper() for c in text)
