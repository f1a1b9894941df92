"""Showing a run's progress: a bar on a terminal, log lines anywhere else."""

from __future__ import annotations

import logging
import sys
from typing import TextIO

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
)
from rich.text import Text

from agent_trio.ingest._outcome import DocumentOutcome

__all__ = ["LogProgress", "TerminalProgress", "progress_for"]

log = logging.getLogger("agent_trio.ingest")


class LogProgress:
    """One log line per document (logger ``agent_trio.ingest``), failures as warnings."""

    def __init__(self) -> None:
        self.total = 0
        self.done = 0

    def started(self, total: int) -> None:
        self.total = total
        log.info("ingesting %d files", total)

    def document_started(self, source: str) -> None:
        pass

    def document_finished(self, outcome: DocumentOutcome) -> None:
        self.done += 1
        if outcome.status == "unchanged":
            log.info("[%d/%d] %s: unchanged", self.done, self.total, outcome.source)
            return
        log.info(
            "[%d/%d] %s: %d chunks, %d entities, %d facts",
            self.done,
            self.total,
            outcome.source,
            outcome.chunk_count,
            outcome.entity_count,
            outcome.fact_count,
        )

    def document_failed(self, source: str, reason: str) -> None:
        self.done += 1
        log.warning("[%d/%d] %s: failed: %s", self.done, self.total, source, reason)

    def close(self) -> None:
        pass


class TerminalProgress:
    """A progress bar (``rich``) on ``console``; failures and log lines appear above it.

    While the bar is shown, log handlers that write to the bar's stream write through
    the bar instead (else each line would tear it); :meth:`close` puts them back.
    """

    def __init__(self, console: Console) -> None:
        self._bar = Progress(
            TextColumn("ingesting"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            TextColumn("{task.fields[last]}", style="dim"),
            console=console,
            auto_refresh=False,  # redrawn on each document: no refresh thread
        )
        self._task: TaskID | None = None
        self._rerouted: list[tuple[logging.StreamHandler[TextIO], TextIO]] = []

    def started(self, total: int) -> None:
        self._task = self._bar.add_task("ingest", total=total, last="")
        before = sys.stderr
        self._bar.start()  # on a terminal, rich now proxies sys.stderr to print above the bar
        if sys.stderr is not before:
            self._reroute(before, sys.stderr)

    def document_started(self, source: str) -> None:
        pass

    def document_finished(self, outcome: DocumentOutcome) -> None:
        self._advance(outcome.source)

    def document_failed(self, source: str, reason: str) -> None:
        self._bar.console.print(Text(f"failed: {source}: {reason}", style="red"))
        self._advance(source)

    def close(self) -> None:
        """Leave the bar as it stands, and log handlers as they were; idempotent."""
        for handler, stream in self._rerouted:
            handler.setStream(stream)
        self._rerouted = []
        self._bar.stop()

    def _reroute(self, screen: TextIO, through: TextIO) -> None:
        for handler in logging.getLogger().handlers:
            if isinstance(handler, logging.StreamHandler) and handler.stream is screen:
                handler.setStream(through)
                self._rerouted.append((handler, screen))

    def _advance(self, source: str) -> None:
        if self._task is not None:
            self._bar.update(self._task, advance=1, last=source, refresh=True)


def progress_for(stream: TextIO) -> LogProgress | TerminalProgress:
    """A bar when ``stream`` is a terminal, else log lines."""
    if stream.isatty():
        return TerminalProgress(Console(file=stream))
    return LogProgress()
