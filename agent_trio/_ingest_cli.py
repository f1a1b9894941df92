"""``python -m agent_trio ingest PATH... [--clean]``.

Exit status: 0 when every document was ingested (or was unchanged), 1 when any
document failed (each one is named with its reason) or the service could not
start, 2 on bad usage: no paths, a path that does not exist, a file of an
unsupported type, nothing to ingest, or invalid settings. The summary goes to
stdout; progress, failures and errors to stderr.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Sequence
from pathlib import Path

import trio

from agent_trio._errors import AgentTrioError, ConfigError, IngestError, leaf_errors
from agent_trio._settings import Settings, load_settings
from agent_trio.ingest import (
    SUPPORTED_SUFFIXES,
    IngestSummary,
    LogProgress,
    TerminalProgress,
    iter_paths,
    progress_for,
)
from agent_trio.service import open_service

__all__ = ["run_ingest_command"]

_PROG = "ingest"


def run_ingest_command(paths: Sequence[Path], *, clean: bool) -> int:
    """Ingest ``paths`` with the configured service; return the exit status."""
    files = _files_or_none(paths)
    if files is None:
        return 2
    try:
        # the paths given here, and not also INGEST_ON_START's in the background
        settings = load_settings(ingest_on_start=None)
    except ConfigError as exc:
        return _usage(str(exc))
    # a line per embedding request says nothing here; progress says what matters
    logging.getLogger("httpx").setLevel(logging.WARNING)
    progress = progress_for(sys.stderr)
    summary: IngestSummary | None = None
    status = 1
    try:
        summary = trio.run(_ingest, settings, files, clean, progress)
    except* KeyboardInterrupt:
        _error("interrupted; every document written so far is complete")
        status = 130
    except* AgentTrioError as group:
        for error in leaf_errors(group):
            _error(f"cannot ingest: {_first_line(error)}")
    finally:
        progress.close()
    if summary is None:
        return status
    for line in summary.lines():
        print(line)
    return 1 if summary.failed else 0


def _files_or_none(paths: Sequence[Path]) -> list[Path] | None:
    """The files to ingest, or ``None`` after saying why there is nothing to do."""
    if not paths:
        _usage("give at least one file or folder to ingest")
        return None
    try:
        files = iter_paths(paths)
    except IngestError as exc:
        _usage(str(exc))
        return None
    if not files:
        named = ", ".join(str(p) for p in paths)
        kinds = "/".join(sorted(SUPPORTED_SUFFIXES))
        _usage(f"nothing to ingest: no {kinds} files in {named}")
        return None
    return files


async def _ingest(
    settings: Settings,
    files: list[Path],
    clean: bool,
    progress: LogProgress | TerminalProgress,
) -> IngestSummary:
    async with open_service(settings) as service:
        return await service.ingestor.ingest_paths(files, clean=clean, progress=progress)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _usage(message: str) -> int:
    _error(message)
    return 2


def _error(message: str) -> None:
    print(f"{_PROG}: {message}", file=sys.stderr)
