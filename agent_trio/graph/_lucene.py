"""User text to a Lucene query that cannot be a syntax error, and score normalisation.

Both engines hand the full-text query string to Lucene's query parser, where
``O'Brien AND (``, an unbalanced quote, a lone ``*`` or ``~`` are syntax errors.
:func:`lucene_query` splits the text at whitespace and quotes every token as a
phrase, escaping only ``\\`` and ``"`` (the two characters that mean something
inside a phrase). Operators become plain words (``"AND"``), wildcards and fuzzy
marks are dropped by the analyser, and the phrases are OR-ed (the parser's
default), so a chunk matching more of the words scores higher.

Common English words ("the", "of", "what", …) are left out unless the text has
nothing else: neither engine's default analyser drops them, they occur in nearly
every chunk, and a query's cost grows with the number of chunks its words occur in
(about 60 ms for a word in each of 20,000 chunks, against 4 ms for a rare word, on
the embedded engine), while they add almost nothing to the ranking. With
``common_alone=False`` a text of nothing but common words is no query at all: at
100,000 chunks such a query matches nearly all of them and takes a second, which
a search that has another side to rank by (hybrid) need not spend.

Lucene scores are unbounded and only comparable within one query, so
:func:`relative_scores` maps them to ``[0, 1]`` by dividing by the best score of
the same query: the top hit scores 1.0, the others keep their proportions.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

__all__ = ["MAX_TERMS", "STOPWORDS", "lucene_query", "relative_scores"]

#: far below Lucene's clause limit (1024); a longer query adds little but cost
MAX_TERMS = 64


def _word_set(text: str) -> frozenset[str]:
    return frozenset(text.split())


#: Lucene's English stop set, and the question words of chat messages
STOPWORDS = _word_set(
    """a an and are as at be but by for if in into is it no not of on or such that the
    their then there these they this to was will with what which who whom whose when
    where why how do does did i me my we our you your he she his her its been has have
    had were am can could would should about tell"""
)
_NOT_WORD = re.compile(r"\W+")


def lucene_query(text: str, *, common_alone: bool = True) -> str | None:
    """A safe Lucene query for ``text``, or ``None`` when it has no word to search for.

    ``common_alone``: whether a text of nothing but common words is searched for them
    (else ``None``).
    """
    tokens = list(dict.fromkeys(t for t in text.split() if any(ch.isalnum() for ch in t)))
    words = [t for t in tokens if _NOT_WORD.sub("", t.casefold()) not in STOPWORDS]
    if not words and common_alone:
        words = tokens
    phrases: list[str] = []
    seen: set[str] = set()
    for token in words:
        folded = token.casefold()
        if folded not in seen:
            seen.add(folded)
            phrases.append('"' + token.replace("\\", "\\\\").replace('"', '\\"') + '"')
    return " ".join(phrases[:MAX_TERMS]) or None


def relative_scores(raw: Sequence[float]) -> list[float]:
    """Each score divided by the largest; all zeros when there is no positive score."""
    top = max(raw, default=0.0)
    if top <= 0.0:
        return [0.0 for _ in raw]
    return [min(1.0, max(0.0, s / top)) for s in raw]
