"""Chunking: size bound, coverage in order, overlap bound, structure, termination.

The property tests run the chunker over generated Markdown documents (fixed seeds)
with sizes from 1 character up and overlaps from 0 to far beyond the size.
"""

from __future__ import annotations

import itertools
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import pytest

from agent_trio.document import Chunk, markdown_headings, sentence_spans
from agent_trio.ingest import chunk_text, estimate_tokens
from agent_trio.ingest._chunker import MIN_PIECE, fit_chunks


def _words(text: str) -> tuple[str, ...]:
    return tuple(text.split())


VOCABULARY = _words(
    "the gateway records vibration data while turbines spin offshore and the team reviews "
    "alerts each morning café naïve Zürich 東京 data-driven e.g. Dr. Smith U.S. approx. 3.5 "
    "percent Acme Inc. No. 7 co-op"
)


@dataclass
class Generated:
    text: str = ""
    headings: list[tuple[int, tuple[str, ...]]] = field(default_factory=list)
    paragraphs: list[tuple[int, int]] = field(default_factory=list)


def _sentence(rng: random.Random, words: int) -> str:
    chosen = [rng.choice(VOCABULARY) for _ in range(words)]
    return " ".join(chosen).capitalize() + rng.choice([".", ".", "!", "?", "…"])


def _generate(rng: random.Random, *, headings: bool = True, lists: bool = True) -> Generated:
    doc = Generated()
    stack: list[tuple[int, str]] = []
    for _ in range(rng.randint(0, 14)):
        roll = rng.random()
        if headings and roll < 0.18:
            level = rng.randint(1, 4)
            title = f"Part {rng.randint(1, 999)}"
            stack = [h for h in stack if h[0] < level] + [(level, title)]
            doc.headings.append((len(doc.text), tuple(t for _, t in stack)))
            block = "#" * level + " " + title
        elif lists and roll < 0.28:
            block = "\n".join(f"- {_sentence(rng, rng.randint(1, 6))}" for _ in range(3))
        elif roll < 0.33:
            block = "```\n# not a heading\ncode line\n```"
        elif roll < 0.38:
            block = "x" * rng.randint(1, 3000)  # one very long word
        elif roll < 0.43:
            block = " ".join(rng.choice(VOCABULARY) for _ in range(rng.randint(50, 400)))
        else:
            sentences = [_sentence(rng, rng.randint(1, 25)) for _ in range(rng.randint(1, 8))]
            block = rng.choice([" ", "  ", "\n"]).join(sentences)
        start = len(doc.text)
        doc.text += block
        if not block.startswith("#"):
            doc.paragraphs.append((start, len(doc.text)))
        doc.text += rng.choice(["\n\n", "\n\n\n", "\n \n", "\n\t\n"])
    return doc


def _check_invariants(text: str, chunks: list[Chunk], size: int, overlap: int) -> None:
    covered = bytearray(len(text))
    previous: Chunk | None = None
    for i, chunk in enumerate(chunks):
        assert chunk.index == i
        assert chunk.text == text[chunk.start : chunk.end]
        assert chunk.text
        assert chunk.text == chunk.text.strip()
        assert len(chunk.text) <= size
        assert chunk.token_estimate == estimate_tokens(chunk.text)
        if previous is not None:
            assert chunk.start > previous.start
            assert chunk.end > previous.end  # every chunk brings new text
            assert previous.end - chunk.start <= min(overlap, size // 2)
        covered[chunk.start : chunk.end] = b"\x01" * (chunk.end - chunk.start)
        previous = chunk
    missing = [i for i, c in enumerate(text) if not c.isspace() and not covered[i]]
    assert not missing, f"uncovered text at {missing[:5]}"


SIZES = [1, 2, 7, 40, 100, 333, 1000]


def _overlaps(size: int) -> list[int]:
    return sorted({0, 1, size // 3, max(0, size - 1), size, size * 3, 10**9})


@pytest.mark.parametrize(("sizes", "documents"), [(SIZES[:3], 10), (SIZES[3:], 60)])
def test_generated_documents_hold_every_invariant(sizes: list[int], documents: int) -> None:
    rng = random.Random(20240601)
    for _ in range(documents):
        doc = _generate(rng)
        for size in sizes:
            for overlap in _overlaps(size):
                chunks = chunk_text(doc.text, size=size, overlap=overlap)
                _check_invariants(doc.text, chunks, size, overlap)


def test_chunking_is_deterministic() -> None:
    rng = random.Random(7)
    for _ in range(40):
        text = _generate(rng).text
        size = rng.choice(SIZES[2:])
        overlap = rng.randint(0, size)
        assert chunk_text(text, size=size, overlap=overlap) == chunk_text(
            text, size=size, overlap=overlap
        )


def test_paragraphs_that_fit_are_never_split() -> None:
    rng = random.Random(99)
    checked = 0
    for _ in range(150):
        doc = _generate(rng, headings=False, lists=False)
        for size in (100, 333, 1000):
            chunks = chunk_text(doc.text, size=size, overlap=size // 4)
            for start, end in doc.paragraphs:
                if end - start <= size:
                    checked += 1
                    assert any(c.start <= start and end <= c.end for c in chunks)
    assert checked > 500


def test_chunks_stay_in_their_section_with_the_heading_path() -> None:
    rng = random.Random(31337)
    for _ in range(150):
        doc = _generate(rng)
        for size in (40, 333, 1000):
            chunks = chunk_text(doc.text, size=size, overlap=size // 3)
            for chunk in chunks:
                inside = [h for h in doc.headings if chunk.start <= h[0] < chunk.end]
                # a heading inside a chunk only follows other headings, never text
                before_last = doc.text[chunk.start : inside[-1][0]] if inside else ""
                assert all(line.startswith("#") for line in before_last.split("\n") if line.strip())
                earlier = [path for start, path in doc.headings if start < chunk.end]
                assert chunk.heading_path == (earlier[-1] if earlier else ())


def test_headings_open_a_new_chunk_and_set_the_path() -> None:
    text = (
        "Preamble sentence.\n\n"
        "# Guide\n\n"
        "## Install\n\n"
        "Run the installer. Then restart.\n\n"
        "## Use\n"
        "Open the app.\n\n"
        "# Appendix\n\n"
        "```\n# a comment, not a heading\n```"
    )
    chunks = chunk_text(text, size=1000, overlap=100)
    assert [(c.heading_path, c.text) for c in chunks] == [
        ((), "Preamble sentence."),
        (("Guide", "Install"), "# Guide\n\n## Install\n\nRun the installer. Then restart."),
        (("Guide", "Use"), "## Use\nOpen the app."),
        (("Appendix",), "# Appendix\n\n```\n# a comment, not a heading\n```"),
    ]
    assert chunks[1].context_text.startswith("Guide > Install\n\n# Guide")
    assert chunks[0].context_text == "Preamble sentence."


def test_headings_stay_with_the_text_that_follows_them() -> None:
    text = "# Title\n\n## Part\n\n" + "A sentence of some length here. " * 4
    chunks = chunk_text(text, size=80, overlap=0)
    assert chunks[0].text.startswith("# Title\n\n## Part\n\nA sentence")
    assert not any(c.text.endswith("## Part") for c in chunks)


def test_overlap_carries_trailing_sentences() -> None:
    sentences = [f"Sentence number {i} is here." for i in range(30)]
    text = " ".join(sentences)
    chunks = chunk_text(text, size=120, overlap=60)
    assert len(chunks) > 3
    for previous, chunk in itertools.pairwise(chunks):
        shared = text[chunk.start : previous.end]
        assert shared, "consecutive chunks share their boundary sentences"
        assert shared in sentences or shared == previous.text[-len(shared) :]
        assert chunk.text.startswith(shared)
    without = chunk_text(text, size=120, overlap=0)
    assert all(b.start > a.end for a, b in itertools.pairwise(without))
    assert len(without) < len(chunks)


def test_empty_and_blank_text_give_no_chunks() -> None:
    assert chunk_text("", size=100, overlap=10) == []
    assert chunk_text(" \n\t\n  ", size=100, overlap=10) == []


def test_a_single_huge_word_is_sliced_quickly() -> None:
    word = "y" * 100_000
    started = time.process_time()  # CPU time: the work done, however busy the machine
    chunks = chunk_text(word, size=1000, overlap=10**9)
    assert time.process_time() - started < 2
    assert [len(c.text) for c in chunks] == [1000] * 100
    assert "".join(c.text for c in chunks) == word


def test_long_sentence_splits_at_words() -> None:
    words = [f"w{i:03d}" for i in range(300)]
    text = " ".join(words)
    chunks = chunk_text(text, size=50, overlap=0)
    assert all(len(c.text) <= 50 for c in chunks)
    assert " ".join(c.text for c in chunks).split() == words  # no word cut in two


def test_large_document_is_fast_and_bounded() -> None:
    section = "# Section\n\n" + ("A plain sentence about turbines and data. " * 40 + "\n\n") * 5
    text = section * 200  # about 1.7 MB
    started = time.process_time()  # CPU time: the work done, however busy the machine
    chunks = chunk_text(text, size=1000, overlap=200)
    assert time.process_time() - started < 10
    assert len(chunks) < 3 * len(text) / 1000


@pytest.mark.parametrize(("size", "overlap"), [(0, 0), (-5, 0), (10, -1)])
def test_invalid_size_or_overlap_is_refused(size: int, overlap: int) -> None:
    with pytest.raises(ValueError, match="chunk"):
        chunk_text("text", size=size, overlap=overlap)


def test_token_estimate_is_about_four_characters_per_token() -> None:
    assert estimate_tokens("") == 0
    assert estimate_tokens("abc") == 1
    assert estimate_tokens("x" * 400) == 100


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Dr. Smith arrived. He left.", ["Dr. Smith arrived.", "He left."]),
        ("It works! Does it? yes it does.", ["It works!", "Does it? yes it does."]),
        ("See e.g. the manual. Then go.", ["See e.g. the manual.", "Then go."]),
        ('He said "Stop." Then he left.', ['He said "Stop."', "Then he left."]),
        ("Version 3.5 shipped. Fine", ["Version 3.5 shipped.", "Fine"]),
        ("No punctuation at all", ["No punctuation at all"]),
        ("  ", []),
    ],
)
def test_sentence_spans(text: str, expected: list[str]) -> None:
    assert [text[s:e] for s, e in sentence_spans(text)] == expected


def test_markdown_headings_ignore_code_and_need_a_space() -> None:
    text = "# One\n#NoSpace\n```\n## In code\n```\n   ### Indented ###\n####### Seven"
    assert [(h.level, h.title) for h in markdown_headings(text)] == [(1, "One"), (3, "Indented")]


# -- fitting chunks to what an embedding model reads ---------------------------------

FIT_DOC = (
    "# Parts list\n\nIntro line for the parts.\n\n## Codes\n\n"
    + " ".join(f"AX-{n:04d}/B{n % 7}" for n in range(120))
    + "\n\n## Notes\n\nA short closing note about the parts and where they are kept."
)


def _at_most_words(limit: int) -> Callable[[Chunk], bool]:
    return lambda chunk: len(chunk.text.split()) <= limit


def test_chunks_that_fit_are_kept_as_they_are() -> None:
    chunks = chunk_text(FIT_DOC, size=1000, overlap=100)
    asked: list[Chunk] = []
    assert fit_chunks(FIT_DOC, chunks, lambda chunk: asked.append(chunk) is None) == chunks
    assert asked == chunks  # each asked once


def test_a_chunk_the_model_would_not_read_whole_is_cut_until_every_piece_fits() -> None:
    chunks = chunk_text(FIT_DOC, size=1000, overlap=0)
    assert not all(_at_most_words(40)(c) for c in chunks)
    fitted = fit_chunks(FIT_DOC, chunks, _at_most_words(40))
    assert all(_at_most_words(40)(c) for c in fitted)
    assert [c.index for c in fitted] == list(range(len(fitted)))
    for chunk in fitted:
        assert chunk.text == FIT_DOC[chunk.start : chunk.end]
        assert chunk.token_estimate == estimate_tokens(chunk.text)
    # the pieces of a cut chunk cover it in order, every word once
    assert [w for c in fitted for w in c.text.split()] == FIT_DOC.split()
    assert all(a.end <= b.start for a, b in itertools.pairwise(fitted))
    # each piece keeps the heading path it sits under
    codes = [c for c in fitted if "AX-0100/B2" in c.text]
    assert [c.heading_path for c in codes] == [("Parts list", "Codes")]
    assert fitted[-1].heading_path == ("Parts list", "Notes")


def test_pieces_are_not_cut_below_a_minimum_whatever_fits_says() -> None:
    chunks = chunk_text(FIT_DOC, size=1000, overlap=0)
    fitted = fit_chunks(FIT_DOC, chunks, lambda chunk: False)
    assert all(len(c.text) <= MIN_PIECE for c in fitted)
    assert len(fitted) < len(FIT_DOC.split()) / 2  # not cut down to single words
    assert [w for c in fitted for w in c.text.split()] == FIT_DOC.split()
