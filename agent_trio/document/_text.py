"""The structure of a document's text: Markdown headings, sections, paragraphs, sentences.

The chunker cuts along these lines and the rule extractor reads sentence by
sentence, so both see the same sentences. Positions are spans: ``(start, end)``
offsets into the text, each trimmed of surrounding whitespace.
"""

from __future__ import annotations

import re
from typing import NamedTuple

__all__ = [
    "Heading",
    "Section",
    "Span",
    "markdown_headings",
    "paragraphs",
    "sections",
    "sentence_spans",
    "text_sentences",
]

Span = tuple[int, int]

_HEADING = re.compile(r" {0,3}(#{1,6})(?:[ \t]+(.*?))?(?:[ \t]+#+)?[ \t]*")
_FENCE = re.compile(r" {0,3}(?:```|~~~)")
_BLANK_LINES = re.compile(r"\n[ \t]*\n\s*")
_LINE_ITEM = re.compile(r"\n(?=[ \t]*(?:[-*+]|\d{1,3}[.)])[ \t]|[ \t]*\|)")
_SENTENCE_END = re.compile(r"[.!?…]+[\"'”’)\]]*\s+")
_LAST_WORD = re.compile(r"[\w.]+$")
_ABBREVIATION = re.compile(
    r"(?:Mr|Mrs|Ms|Dr|Prof|Sr|Jr|St|Mt|vs|etc|approx|No|Fig|Vol|e\.g|i\.e"
    r"|Jan|Feb|Mar|Apr|Jun|Jul|Aug|Sep|Sept|Oct|Nov|Dec|(?:[A-Za-z]\.)*[A-Za-z])"
)


class Heading(NamedTuple):
    """An ATX heading: its level (1-6), its title and the span of its line."""

    level: int
    title: str
    start: int
    end: int


def markdown_headings(text: str) -> list[Heading]:
    """Every ATX heading of ``text`` outside fenced code blocks, in order."""
    headings: list[Heading] = []
    in_fence = False
    offset = 0
    for line in text.splitlines(keepends=True):
        bare = line.rstrip("\r\n")
        if _FENCE.match(bare):
            in_fence = not in_fence
        elif not in_fence and (match := _HEADING.fullmatch(bare)):
            title = (match.group(2) or "").strip()
            if title:
                headings.append(Heading(len(match.group(1)), title, offset, offset + len(bare)))
        offset += len(line)
    return headings


def sentence_spans(text: str, start: int = 0, end: int | None = None) -> list[Span]:
    """Spans of the sentences of ``text[start:end]``, each trimmed of whitespace.

    A sentence ends at ``.``, ``!``, ``?`` or ``…`` (and closing quotes or brackets)
    followed by whitespace, unless the next word starts in lower case or the word
    before is a common abbreviation or an initial (``Dr.``, ``e.g.``, ``J.``).
    """
    stop = len(text) if end is None else end
    spans: list[Span] = []
    begin = start
    for match in _SENTENCE_END.finditer(text, start, stop):
        after = match.end()
        if after < stop and text[after].islower():
            continue
        if _is_abbreviation(text, begin, match.start()):
            continue
        _append_trimmed(text, spans, begin, match.end())
        begin = after
    _append_trimmed(text, spans, begin, stop)
    return spans


def _is_abbreviation(text: str, begin: int, punct: int) -> bool:
    word = _LAST_WORD.search(text, max(begin, punct - 12), punct)
    return word is not None and _ABBREVIATION.fullmatch(word.group()) is not None


def _append_trimmed(text: str, spans: list[Span], start: int, end: int) -> None:
    while start < end and text[start].isspace():
        start += 1
    while end > start and text[end - 1].isspace():
        end -= 1
    if start < end:
        spans.append((start, end))


class Section(NamedTuple):
    """A run of text from one heading (or the start) to the next, and its headings."""

    start: int
    end: int
    headings: list[Heading]


def sections(text: str, headings: list[Heading]) -> list[Section]:
    """The sections of ``text``; a section with nothing but headings joins the next one."""
    bounds = [0, *(h.start for h in headings), len(text)]
    found: list[Section] = []
    pending: Section | None = None
    for i in range(len(headings) + 1):
        own = headings[i - 1 : i] if i > 0 else []
        section = Section(bounds[i], bounds[i + 1], own)
        if pending is not None:
            section = section._replace(start=pending.start, headings=pending.headings + own)
        body_start = own[0].end if own else section.start
        if not text[body_start : section.end].strip() and i < len(headings):
            pending = section
            continue
        found.append(section)
        pending = None
    return found


def paragraphs(text: str, section: Section) -> list[tuple[Span, list[Span]]]:
    """Paragraphs of a section with their sentence spans; heading lines stand alone."""
    blocks: list[Span] = []
    cursor = section.start
    for heading in section.headings:
        blocks.extend(_split_spans(text, cursor, heading.start, _BLANK_LINES))
        blocks.append((heading.start, heading.end))
        cursor = heading.end
    blocks.extend(_split_spans(text, cursor, section.end, _BLANK_LINES))
    blocks = [line for block in blocks for line in _split_spans(text, *block, _LINE_ITEM)]
    return [((s, e), sentence_spans(text, s, e)) for s, e in blocks]


def _split_spans(text: str, start: int, end: int, separator: re.Pattern[str]) -> list[Span]:
    spans: list[Span] = []
    begin = start
    for match in separator.finditer(text, start, end):
        _append_trimmed(text, spans, begin, match.start())
        begin = match.end()
    _append_trimmed(text, spans, begin, end)
    return spans


def text_sentences(text: str) -> list[Span]:
    """Sentence spans of ``text`` without its heading lines; list items stand alone."""
    headings = markdown_headings(text)
    heading_spans = {(h.start, h.end) for h in headings}
    whole = Section(0, len(text), headings)
    return [
        sentence
        for block, sentences in paragraphs(text, whole)
        if block not in heading_spans
        for sentence in sentences
    ]
