"""Structure-aware chunking of a document's content.

The content is cut, coarsest first, into

1. sections at Markdown ATX headings (``#`` … ``######``, outside fenced code); a
   section that holds nothing but its heading is joined to the next one;
2. paragraphs at blank lines, with the heading line and each list item or table row
   as a paragraph of its own;
3. sentences;
4. for a sentence longer than ``size``: runs of whole words, and for a word longer
   than ``size``: slices of ``size`` characters.

The first three cuts are :mod:`agent_trio.document`'s, so the rule extractor reads
the same sentences.

The smallest pieces (units) are packed in order into chunks of at most ``size``
characters. A paragraph that fits in a chunk of its own is not split: the chunk is
closed before it instead, unless that chunk holds only headings, which stay with
the text after them. A chunk never spans two sections; its heading path is that of
the last heading before its end.

Each chunk's ``text`` is exactly ``content[start:end]`` with no surrounding
whitespace, so offsets and provenance stay exact; the heading path is kept beside
the text (:attr:`Chunk.context_text` prefixes it for embedding) rather than inside
it, which would break that identity and count against ``size``.

An embedding model may read fewer tokens than ``size`` characters hold (1000
characters of dense text, such as numbers, codes or tables, can be 500 tokens):
:func:`fit_chunks` cuts each chunk the model would not read whole again, at half its
length and without overlap, until each piece fits.

Overlap: the next chunk of the same section starts with the trailing units of the
previous chunk that fit in ``overlap`` characters, dropped from the front as needed
to make room. ``overlap`` is capped at ``size // 2``, so any value (0, or larger
than ``size``) is accepted, every chunk brings new text and the number of chunks
stays proportional to the length of the content.
"""

from __future__ import annotations

import bisect
import dataclasses
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from agent_trio.document import Chunk, Heading, Span, markdown_headings, paragraphs, sections

__all__ = ["MIN_PIECE", "chunk_text", "estimate_tokens", "fit_chunks"]

_WORD = re.compile(r"\S+")


def estimate_tokens(text: str) -> int:
    """A rough token count (about four characters per token), at least 1 for text."""
    return (len(text) + 3) // 4


def chunk_text(text: str, *, size: int, overlap: int) -> list[Chunk]:
    """Cut ``text`` into chunks of at most ``size`` characters (see the module doc)."""
    if size < 1:
        raise ValueError(f"chunk size must be at least 1, got {size}")
    if overlap < 0:
        raise ValueError(f"chunk overlap must not be negative, got {overlap}")
    packer = _Packer(size=size, overlap=min(overlap, size // 2))
    headings = markdown_headings(text)
    for section in sections(text, headings):
        heading_spans = {(h.start, h.end) for h in section.headings}
        for block, sentences in paragraphs(text, section):
            units = [u for s in sentences for u in _units(text, s, size)]
            packer.add_paragraph(units, heading=block in heading_spans)
        packer.end_section()
    slicer = _Slicer(text, headings)
    return [slicer.chunk(i, start, end) for i, (start, end) in enumerate(packer.chunks)]


class _Slicer:
    """Makes the :class:`Chunk` of a span of ``text``, under its heading path."""

    def __init__(self, text: str, headings: list[Heading]) -> None:
        self._text = text
        self._starts = [h.start for h in headings]
        self._paths = [(), *_heading_paths(headings)]

    def chunk(self, index: int, start: int, end: int) -> Chunk:
        text = self._text[start:end]
        return Chunk(
            index=index,
            text=text,
            token_estimate=estimate_tokens(text),
            heading_path=self._paths[bisect.bisect_left(self._starts, end)],
            start=start,
            end=end,
        )


#: a piece this short is not cut again, whatever ``fits`` says (its heading path
#: alone may be what does not fit)
MIN_PIECE = 100


def fit_chunks(text: str, chunks: Sequence[Chunk], fits: Callable[[Chunk], bool]) -> list[Chunk]:
    """``chunks`` of ``text``, each one ``fits`` rejects chunked again; renumbered.

    A rejected chunk is cut with :func:`chunk_text` at half its length and no
    overlap, and each piece is asked again, until it fits or is at most
    :data:`MIN_PIECE` characters long. Chunks that fit are kept as they are.
    """
    slicer: _Slicer | None = None
    out: list[Chunk] = []
    for chunk in chunks:
        if fits(chunk):
            out.append(chunk)
            continue
        if slicer is None:
            slicer = _Slicer(text, markdown_headings(text))
        out.extend(_cut_to_fit(text, chunk, fits, slicer))
    if len(out) == len(chunks):
        return out
    return [dataclasses.replace(chunk, index=i) for i, chunk in enumerate(out)]


def _cut_to_fit(
    text: str, chunk: Chunk, fits: Callable[[Chunk], bool], slicer: _Slicer
) -> list[Chunk]:
    out: list[Chunk] = []
    pending = [(chunk.start, chunk.end, True)]  # (start, end, already refused by fits)
    while pending:
        start, end, refused = pending.pop()
        candidate = slicer.chunk(chunk.index, start, end)
        if end - start <= MIN_PIECE or (not refused and fits(candidate)):
            out.append(candidate)
            continue
        parts = chunk_text(text[start:end], size=(end - start) // 2, overlap=0)
        if len(parts) < 2:
            out.append(candidate)
            continue
        pending.extend((start + p.start, start + p.end, False) for p in reversed(parts))
    return out


def _heading_paths(headings: list[Heading]) -> list[tuple[str, ...]]:
    """For each heading, the titles of it and the headings it sits under."""
    paths: list[tuple[str, ...]] = []
    stack: list[Heading] = []
    for heading in headings:
        stack = [h for h in stack if h.level < heading.level] + [heading]
        paths.append(tuple(h.title for h in stack))
    return paths


def _units(text: str, span: Span, size: int) -> list[Span]:
    """The span itself when it fits, else runs of whole words, else slices of a word."""
    start, end = span
    if end - start <= size:
        return [span]
    units: list[Span] = []
    run: Span | None = None
    for match in _WORD.finditer(text, start, end):
        word_start, word_end = match.span()
        if run is not None and word_end - run[0] <= size:
            run = (run[0], word_end)
            continue
        if run is not None:
            units.append(run)
        while word_end - word_start > size:
            units.append((word_start, word_start + size))
            word_start += size
        run = (word_start, word_end)
    if run is not None:
        units.append(run)
    return units


@dataclass
class _Packer:
    """Packs units into chunk spans; each emitted chunk holds at least one new unit."""

    size: int
    overlap: int
    chunks: list[Span] = field(default_factory=list)
    _units: list[Span] = field(default_factory=list)
    _fresh: int = 0
    _fresh_text: int = 0

    def add_paragraph(self, units: list[Span], *, heading: bool) -> None:
        """Add a paragraph: whole in a new chunk if it fits in one, else unit by unit.

        A chunk that so far holds only headings is never closed before a paragraph:
        headings stay with the text that follows them.
        """
        if not units:
            return
        start, end = units[0][0], units[-1][1]
        only_headings = self._fresh > 0 and self._fresh_text == 0
        if end - start <= self.size and not self._fits(end) and not only_headings:
            self._close()
            self._trim_to(end)
        for unit in units:
            if not self._fits(unit[1]):
                self._close()
                self._trim_to(unit[1])
            self._units.append(unit)
            self._fresh += 1
            self._fresh_text += not heading

    def end_section(self) -> None:
        """Close the last chunk of a section; no overlap reaches into the next one."""
        self._close()
        self._units = []

    def _fits(self, end: int) -> bool:
        return not self._units or end - self._units[0][0] <= self.size

    def _trim_to(self, end: int) -> None:
        drop = 0
        while drop < len(self._units) and end - self._units[drop][0] > self.size:
            drop += 1
        del self._units[:drop]

    def _close(self) -> None:
        """Emit the current chunk if it has new text; keep the overlap as the next start."""
        if self._fresh:
            self.chunks.append((self._units[0][0], self._units[-1][1]))
        last_end = self._units[-1][1] if self._units else 0
        keep = len(self._units)
        while keep > 0 and last_end - self._units[keep - 1][0] <= self.overlap:
            keep -= 1
        self._units = self._units[keep:]
        self._fresh = 0
        self._fresh_text = 0
