"""Retrieval questions about the sample corpus in ``examples/corpus``.

Each question is worded differently from the text that answers it (two also carry a
rare product code), names the file that answers it and a short phrase that the
answering chunk contains. Phrases are compared with runs of whitespace collapsed to
one space, since the text wraps lines. A hybrid search over the ingested corpus is
expected to return a chunk of ``source`` containing ``phrase`` in its top five
results for at least nine of the ten questions.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import NamedTuple

from agent_trio.graph import ChunkHit

CORPUS_DIR = Path(__file__).resolve().parent.parent / "examples" / "corpus"


class RetrievalQuestion(NamedTuple):
    question: str
    source: str  # file name inside CORPUS_DIR
    phrase: str  # appears in the chunk that answers the question


QUESTIONS: tuple[RetrievalQuestion, ...] = (
    RetrievalQuestion(
        "Which two people set up the turbine monitoring startup in Portugal's capital?",
        "kestrel-labs-founding.md",
        "by Ines Marlow and Tobias Renner",
    ),
    RetrievalQuestion(
        "What does the QX-7 telemetry gateway do with sensor data while its uplink is down?",
        "qx7-telemetry-gateway-launch.md",
        "72 hours of raw readings",
    ),
    RetrievalQuestion(
        "How much did the Munich software group pay to take over Kestrel?",
        "corvid-acquires-kestrel.md",
        "180 million euros",
    ),
    RetrievalQuestion(
        "Which venture investor backed Kestrel's first big funding round?",
        "series-a-arden-capital.md",
        "led by Arden Capital",
    ),
    RetrievalQuestion(
        "Why did Kestrel's original technology chief walk away from the company?",
        "tobias-renner-petrel-robotics.md",
        "return to building hardware from scratch",
    ),
    RetrievalQuestion(
        "By how much did unexpected turbine outages drop at the North Sea site?",
        "halvorsen-partnership.md",
        "18 percent",
    ),
    RetrievalQuestion(
        "Which city hosted the 2021 grid industry conference?",
        "gridedge-summit-2021.md",
        "held in Rotterdam",
    ),
    RetrievalQuestion(
        "From what date can customers no longer buy a QX-7?",
        "qx9-and-qx7-end-of-sale.md",
        "Sales of the QX-7 ended on 31 March 2024",
    ),
    RetrievalQuestion(
        "Who is in charge of the blade-inspection drone trial for the Norwegian utility?",
        "petrel-halvorsen-pilot.md",
        "runs the pilot",
    ),
    RetrievalQuestion(
        "What does the abbreviation SCADA stand for?",
        "glossary.txt",
        "supervisory control and data acquisition",
    ),
)


def relevant(result: ChunkHit, question: RetrievalQuestion) -> bool:
    """Whether ``result`` answers ``question``: a chunk of its file with its phrase."""
    return Path(result.document_source).name == question.source and _squash(
        question.phrase
    ) in _squash(result.content)


def _squash(text: str) -> str:
    return re.sub(r"\s+", " ", text)
