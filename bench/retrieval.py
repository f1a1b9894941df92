"""Retrieval quality on the sample corpus: vector, full text and hybrid side by side.

The sample corpus (``examples/corpus``) is ingested into a fresh embedded engine with
the local model and the default chunking; then every question is asked of each
search and the rank of the first relevant chunk is recorded (a chunk of the
answering file that contains the answer's phrase, as in
``tests/test_retrieval_quality.py``). Two question sets:

* ``tests``: the ten questions of ``tests/retrieval_questions.py``, written with the
  corpus and used while the searches were built;
* ``more``: thirty further questions, worded away from the text (some carry a
  rare product name or code), written afterwards.

Figures: hits in the top 1 and top 5, and the mean reciprocal rank over the top 10
(MRR@10; a miss counts 0).

    .venv/bin/python bench/retrieval.py [--write]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import trio
from _report import write_section

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from agent_trio import load_settings  # noqa: E402
from agent_trio.graph import ChunkHit  # noqa: E402
from agent_trio.search import Searcher  # noqa: E402
from agent_trio.service import open_service  # noqa: E402
from tests.retrieval_questions import (  # noqa: E402
    CORPUS_DIR,
    QUESTIONS,
    RetrievalQuestion,
    relevant,
)

Q = RetrievalQuestion
MORE: tuple[RetrievalQuestion, ...] = (
    Q(
        "How much did the Dutch venture firm put into Kestrel's first priced round?",
        "series-a-arden-capital.md",
        "12 million euros in a Series A",
    ),
    Q(
        "What was above Kestrel's very first office?",
        "kestrel-labs-founding.md",
        "above a bicycle shop",
    ),
    Q(
        "How many staff did Kestrel have when 2018 ended?",
        "kestrel-labs-founding.md",
        "twelve employees",
    ),
    Q(
        "What does a day of boat and technicians cost at an offshore wind site?",
        "halvorsen-partnership.md",
        "20,000 euros a day",
    ),
    Q(
        "How many times did the satellite link fail at Skarv in winter without data loss?",
        "halvorsen-partnership.md",
        "31 separate satellite outages",
    ),
    Q(
        "Who leads asset management at the Bergen utility?",
        "halvorsen-partnership.md",
        "Henrik Aas",
    ),
    Q(
        "How long can the QX-9 keep readings when it has no connection?",
        "qx9-and-qx7-end-of-sale.md",
        "30 days of readings",
    ),
    Q(
        "Until when will the retired gateway still get security fixes?",
        "qx9-and-qx7-end-of-sale.md",
        "December 2026",
    ),
    Q(
        "What did one unit of Kestrel's first gateway cost at launch?",
        "qx7-telemetry-gateway-launch.md",
        "2,400 euros per unit",
    ),
    Q(
        "How often does the gateway send its compressed summaries to the control room?",
        "qx7-telemetry-gateway-launch.md",
        "every ten seconds",
    ),
    Q(
        "What is the name of the web app that shows each turbine's health score?",
        "qx7-telemetry-gateway-launch.md",
        "Tern, a web dashboard",
    ),
    Q(
        "Who became chief technology officer after the co-founder quit?",
        "series-b-moraine-ventures.md",
        "Rui Costa",
    ),
    Q(
        "Which French investor led Kestrel's 2021 funding?",
        "series-b-moraine-ventures.md",
        "Moraine Ventures led the round",
    ),
    Q(
        "How many gateways were installed by the time of the Series B?",
        "series-b-moraine-ventures.md",
        "more than 3,100 gateways",
    ),
    Q(
        "How long does a drone need to check all the blades of one turbine?",
        "tobias-renner-petrel-robotics.md",
        "about 25 minutes",
    ),
    Q(
        "How much seed money did the drone startup get from Arden?",
        "tobias-renner-petrel-robotics.md",
        "3 million euros",
    ),
    Q(
        "What is the headcount of Petrel Robotics?",
        "tobias-renner-petrel-robotics.md",
        "employs nine people",
    ),
    Q(
        "Where did Nandakumar take her master's degree?",
        "priya-nandakumar-profile.md",
        "master's degree in Delft",
    ),
    Q(
        "How large did the engineering team get under its vice president?",
        "priya-nandakumar-profile.md",
        "from 14 to 45 people",
    ),
    Q(
        "Which sport does the utility's digital operations director coach young people in?",
        "priya-nandakumar-profile.md",
        "youth cricket team",
    ),
    Q(
        "How is a turbine's capacity factor worked out?",
        "glossary.txt",
        "divided by what it would have produced",
    ),
    Q(
        "What part of a wind turbine holds the gearbox and generator?",
        "glossary.txt",
        "housing on top of a wind turbine tower",
    ),
    Q(
        "Which city gets the grid conference in 2022?",
        "gridedge-summit-2021.md",
        "move to Copenhagen",
    ),
    Q("How many people came to the Rotterdam summit?", "gridedge-summit-2021.md", "About 2,300"),
    Q(
        "From which city will the acquired gateway maker be run?",
        "corvid-acquires-kestrel.md",
        "lead the division from Lisbon",
    ),
    Q(
        "What were the Munich group's sales in 2021?",
        "corvid-acquires-kestrel.md",
        "610 million euros",
    ),
    Q(
        "How many of the Skarv turbines do the drones inspect in the trial?",
        "petrel-halvorsen-pilot.md",
        "covers 20 of the 40 turbines",
    ),
    Q(
        "By which measures will the utility decide whether the drone trial worked?",
        "petrel-halvorsen-pilot.md",
        "judge the pilot on three numbers",
    ),
    Q(
        "At what frequency does the QX-7 sample vibration?",
        "qx7-telemetry-gateway-launch.md",
        "25 kHz",
    ),
    Q(
        "How many hours of sensor data did the QX-7 record over its lifetime?",
        "qx9-and-qx7-end-of-sale.md",
        "two billion",
    ),
)

DEPTH = 10
Search = Callable[[str, int], Awaitable[list[ChunkHit]]]


@dataclass
class Score:
    ranks: list[int | None]  # 1-based rank of the first relevant chunk, or None

    def hits(self, k: int) -> int:
        return sum(1 for r in self.ranks if r is not None and r <= k)

    def mrr(self) -> float:
        return sum(1 / r for r in self.ranks if r is not None) / len(self.ranks)


def searches(searcher: Searcher) -> dict[str, Search]:
    async def weighted(weight: float, query: str, limit: int) -> list[ChunkHit]:
        return await searcher.hybrid(query, limit, text_weight=weight)

    return {
        "vector": searcher.vector,
        "full text": searcher.fulltext,
        "hybrid (RRF, default)": searcher.hybrid,
        "hybrid, text_weight 0.3": lambda q, n: weighted(0.3, q, n),
        "hybrid, text_weight 0.5": lambda q, n: weighted(0.5, q, n),
    }


async def rank_of(search: Search, question: RetrievalQuestion) -> int | None:
    for rank, result in enumerate(await search(question.question, DEPTH), start=1):
        if relevant(result, question):
            return rank
    return None


async def measure() -> dict[str, dict[str, Score]]:
    with tempfile.TemporaryDirectory(prefix="agent-trio-bench-") as tmp:
        settings = load_settings(
            agent_data_dir=Path(tmp), embedding_provider="local", llm_provider="none"
        )
        async with open_service(settings) as service:
            summary = await service.ingestor.ingest_paths([CORPUS_DIR], clean=True)
            if summary.failed:
                raise SystemExit(f"ingestion failed: {summary.failed}")
            out: dict[str, dict[str, Score]] = {}
            for name, search in searches(service.searcher).items():
                out[name] = {
                    label: Score([await rank_of(search, q) for q in questions])
                    for label, questions in (("tests", QUESTIONS), ("more", MORE))
                }
    return out


def report(scores: dict[str, dict[str, Score]], seconds: float) -> str:
    def cells(score: Score) -> str:
        n = len(score.ranks)
        return f"{score.hits(1)}/{n} | {score.hits(5)}/{n} | {score.mrr():.2f}"

    lines = [
        "## Retrieval quality",
        "",
        "    .venv/bin/python bench/retrieval.py",
        "",
        f"({seconds:.0f} s.) The sample corpus ingested with the local model and the default "
        "chunking; each question asked of each search, and the rank of the first chunk "
        "that answers it recorded. *tests*: the ten questions of "
        "`tests/retrieval_questions.py`, written with the corpus. *more*: thirty further "
        "questions in `bench/retrieval.py`, written afterwards. MRR@10 counts a miss as 0.",
        "",
        "| search | tests: top 1 | top 5 | MRR@10 | more: top 1 | top 5 | MRR@10 |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, by_set in scores.items():
        lines.append(f"| {name} | {cells(by_set['tests'])} | {cells(by_set['more'])} |")
    misses = {
        name: [
            q.question
            for q, r in zip(MORE, by_set["more"].ranks, strict=True)
            if r is None or r > 5
        ]
        for name, by_set in scores.items()
    }
    lines += ["", "Questions of *more* not in the top 5:", ""]
    lines += [
        f"- {name}: {len(m)}" + (f" ({'; '.join(m)})" if m else "") for name, m in misses.items()
    ]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--write", action="store_true", help="write its section of docs/benchmarks.md"
    )
    args = parser.parse_args(argv)
    started = time.perf_counter()
    scores = trio.run(measure)
    text = report(scores, time.perf_counter() - started)
    print(text)
    if args.write:
        write_section("retrieval", text)


if __name__ == "__main__":
    main()
