"""``python -m agent_trio ingest``: usage errors, startup failures, progress, summary,
and the extractor it picks; one run end to end against a fake embedding server."""

from __future__ import annotations

import fcntl
import io
import json
import logging
import os
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest
import trio
from rich.console import Console

from agent_trio import load_settings
from agent_trio._cli import main
from agent_trio._ingest_cli import run_ingest_command
from agent_trio.extract import LlmExtractor, RuleExtractor, extractor_for
from agent_trio.ingest import (
    DocumentOutcome,
    IngestSummary,
    LogProgress,
    TerminalProgress,
    chunk_text,
    parse_document,
    progress_for,
)
from agent_trio.service import llm_config
from agent_trio.upstream import open_llm
from tests.support.fake_embeddings import FakeEmbeddings, serve

DIMENSIONS = 16


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """A working directory without ``.env`` and settings that never reach a network."""
    monkeypatch.chdir(tmp_path)
    for name in list(os.environ):
        if name.startswith(("EMBEDDING_", "LLM_", "NEO4J_", "GRAPH_", "AGENT_", "CHUNK_")):
            monkeypatch.delenv(name)
    monkeypatch.setenv("AGENT_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("EMBEDDING_BASE_URL", "http://127.0.0.1:9/v1")  # never contacted
    monkeypatch.setenv("EMBEDDING_DIMENSIONS", str(DIMENSIONS))
    monkeypatch.setenv("LLM_PROVIDER", "none")
    return tmp_path


# -- bad usage: exit 2 before anything starts ------------------------------------------


def test_no_paths_is_bad_usage(clean_env: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run_ingest_command([], clean=False) == 2
    assert "give at least one file or folder" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_info:  # the parser says the same
        main(["ingest"])
    assert exit_info.value.code == 2


def test_a_missing_path_is_bad_usage(clean_env: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (clean_env / "real.md").write_text("# Real\n\nText.\n")
    assert run_ingest_command([clean_env / "real.md", clean_env / "gone"], clean=True) == 2
    err = capsys.readouterr().err
    assert err.strip() == f"ingest: {clean_env / 'gone'}: no such file or folder"
    assert not (clean_env / "data").exists()  # the engine was not started


def test_an_unsupported_file_given_explicitly_is_bad_usage(
    clean_env: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (clean_env / "report.pdf").write_bytes(b"%PDF-1.7")
    assert run_ingest_command([clean_env / "report.pdf"], clean=False) == 2
    assert "unsupported file type '.pdf'" in capsys.readouterr().err


def test_a_folder_without_documents_is_bad_usage(
    clean_env: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (clean_env / "empty").mkdir()
    (clean_env / "empty" / "image.png").write_bytes(b"\x89PNG")
    assert run_ingest_command([clean_env / "empty"], clean=False) == 2
    assert "nothing to ingest" in capsys.readouterr().err


def test_invalid_settings_are_bad_usage_in_one_line(
    clean_env: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    (clean_env / "a.md").write_text("# A\n\nText.\n")
    monkeypatch.setenv("CHUNK_SIZE", "50")
    assert run_ingest_command([clean_env / "a.md"], clean=False) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert err.startswith("ingest: invalid configuration: CHUNK_SIZE='50'")


# -- a service that cannot start: exit 1 ------------------------------------------------


def test_a_locked_data_dir_fails_in_one_clear_line(
    clean_env: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (clean_env / "a.md").write_text("# A\n\nText.\n")
    data = clean_env / "data"
    data.mkdir()
    with open(data / "engine.lock", "w") as held:  # as a running server holds it
        fcntl.flock(held, fcntl.LOCK_EX | fcntl.LOCK_NB)
        status = run_ingest_command([clean_env / "a.md"], clean=False)
    captured = capsys.readouterr()
    assert status == 1
    assert captured.out == ""
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1
    assert lines[0].startswith(f"ingest: cannot ingest: the data directory {data}")
    assert "is in use" in lines[0]


# -- progress and summary ---------------------------------------------------------------


def outcome(source: str, status: str = "written") -> DocumentOutcome:
    return DocumentOutcome("id-" + source, source, status, 3, 2, 1)  # type: ignore[arg-type]


def test_the_summary_names_every_failure() -> None:
    summary = IngestSummary()
    summary.add(outcome("a.md"))
    summary.add(outcome("b.md", "unchanged"))
    summary.failed.append(("c.md", "malformed front matter at line 2"))
    assert summary.lines() == [
        "documents: 1",
        "chunks: 3",
        "entities: 2",
        "facts: 1",
        "skipped: 1",
        "failed: 1",
        "  c.md: malformed front matter at line 2",
    ]


def test_a_terminal_gets_a_progress_bar() -> None:
    screen = io.StringIO()
    progress = TerminalProgress(Console(file=screen, force_terminal=True, width=120))
    progress.started(3)
    progress.document_finished(outcome("a.md"))
    progress.document_failed("b.md", "no text to ingest")
    progress.document_finished(outcome("c.md", "unchanged"))
    progress.close()
    progress.close()  # idempotent
    shown = screen.getvalue()
    assert "3/3" in shown
    assert "failed: b.md: no text to ingest" in shown


def test_log_lines_written_during_the_bar_appear_above_it() -> None:
    screen = io.StringIO()
    handler = logging.StreamHandler(sys.stderr)  # as logging.basicConfig makes it
    root = logging.getLogger()
    root.addHandler(handler)
    try:
        progress = TerminalProgress(Console(file=screen, force_terminal=True, width=120))
        progress.started(1)
        logging.getLogger("agent_trio.test").warning("a line while the bar shows")
        progress.document_finished(outcome("a.md"))
        progress.close()
        assert handler.stream is sys.stderr  # put back
    finally:
        root.removeHandler(handler)
    shown = screen.getvalue()
    assert shown.index("a line while the bar shows") < shown.rindex("1/1")


def test_elsewhere_progress_is_log_lines(caplog: pytest.LogCaptureFixture) -> None:
    progress = LogProgress()
    with caplog.at_level(logging.INFO, logger="agent_trio.ingest"):
        progress.started(2)
        progress.document_finished(outcome("a.md"))
        progress.document_failed("b.md", "no text to ingest")
    assert [(r.levelname, r.getMessage()) for r in caplog.records] == [
        ("INFO", "ingesting 2 files"),
        ("INFO", "[1/2] a.md: 3 chunks, 2 entities, 1 facts"),
        ("WARNING", "[2/2] b.md: failed: no text to ingest"),
    ]


def test_the_progress_depends_on_the_stream() -> None:
    class Tty(io.StringIO):
        def isatty(self) -> bool:
            return True

    assert isinstance(progress_for(io.StringIO()), LogProgress)
    assert isinstance(progress_for(Tty()), TerminalProgress)


# -- the extractor ------------------------------------------------------------------------


def test_rules_extract_when_there_is_no_llm(clean_env: Path) -> None:
    assert isinstance(extractor_for(load_settings(), None), RuleExtractor)


async def test_with_an_llm_the_extractor_asks_it(clean_env: Path) -> None:
    bodies: list[dict[str, Any]] = []
    answer = {
        "entities": [
            {"name": "Ida Berg", "type": "person"},
            {"name": "Nordlys Labs", "type": "company"},
        ],
        "facts": [
            {
                "subject": "Ida Berg",
                "object": "Nordlys Labs",
                "relation": "founded",
                "sentence": "Ida Berg founded Nordlys Labs in 2019.",
                "valid_at": "2019",
            }
        ],
    }

    def handle(request: httpx.Request) -> httpx.Response:
        bodies.append(json.loads(request.content))
        message = {"role": "assistant", "content": json.dumps(answer)}
        return httpx.Response(200, json={"choices": [{"message": message}], "model": "m"})

    settings = load_settings(llm_provider="openai", llm_base_url="http://llm.test/v1")
    doc = parse_document("a.md", "# A\n\nIda Berg founded Nordlys Labs in 2019.")
    async with open_llm(llm_config(settings), transport=httpx.MockTransport(handle)) as llm:
        extractor = extractor_for(settings, llm)
        assert isinstance(extractor, LlmExtractor)
        extraction = await extractor.extract(doc, chunk_text(doc.content, size=500, overlap=0))

    assert {(e.key, e.type) for e in extraction.entities} == {
        ("ida berg", "person"),
        ("nordlys labs", "organization"),
    }
    (fact,) = extraction.facts
    assert (fact.relation, fact.valid_at) == ("FOUNDED", "2019-01-01")
    (body,) = bodies
    assert body["temperature"] == 0
    assert [m["role"] for m in body["messages"]] == ["system", "user"]


# -- end to end ---------------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.engine
async def test_the_command_ingests_names_failures_and_exits_1(tmp_path: Path) -> None:
    fake = FakeEmbeddings(dimensions=DIMENSIONS)
    folder = tmp_path / "docs"
    folder.mkdir()
    (folder / "a.md").write_text("# A\n\nIda Berg founded Nordlys Labs in 2019.\n")
    (folder / "b.md").write_text("---\ntitle: [unclosed\n---\n\nText.\n")
    (folder / "c.txt").write_text("Jonas Alm joined Nordlys Labs in 2021.\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("EMBEDDING_", "LLM_"))}
    env.update(
        AGENT_DATA_DIR=str(tmp_path / "data"),
        EMBEDDING_PROVIDER="openai",
        EMBEDDING_BASE_URL="(set below)",
        EMBEDDING_MODEL="fake",
        EMBEDDING_DIMENSIONS=str(DIMENSIONS),
        EMBEDDING_RATE_LIMIT_PER_MINUTE="0",
        LLM_PROVIDER="none",
    )
    with trio.fail_after(180):
        async with trio.open_nursery() as nursery:
            env["EMBEDDING_BASE_URL"] = await nursery.start(serve, fake)
            done = await trio.run_process(
                [sys.executable, "-m", "agent_trio", "ingest", str(folder), "--clean"],
                cwd=tmp_path,
                env=env,
                capture_stdout=True,
                capture_stderr=True,
                check=False,
            )
            nursery.cancel_scope.cancel()
    stdout, stderr = done.stdout.decode(), done.stderr.decode()
    assert done.returncode == 1, stderr
    lines = stdout.splitlines()
    assert lines[0] == "documents: 2"
    assert "skipped: 0" in lines
    assert "failed: 1" in lines
    # named by its source: relative to the working directory, however the path was given
    assert lines[-1].startswith("  docs/b.md: malformed front matter at line 2")
    assert "[3/3]" in stderr  # progress as log lines: stderr is not a terminal
    assert sorted(text for _, batch in fake.requests for text in batch) == [
        "# A\n\nIda Berg founded Nordlys Labs in 2019.",  # the heading is not said twice
        "Jonas Alm joined Nordlys Labs in 2021.",
    ]
