"""One answer on the terminal: the text as it streams, then its tools and sources."""

from __future__ import annotations

import json
from typing import Any, TextIO

__all__ = ["AnswerView"]


class AnswerView:
    """Writes the frames of one ``/chat/stream`` answer to ``out``.

    Text deltas are written as they come; a tool call gets a line of its own;
    sources are collected and listed when the answer ends. ``session_id`` is
    the one the server named, once it did.
    """

    def __init__(self, out: TextIO) -> None:
        self._out = out
        self._mid_line = False
        self._tools_shown: set[str] = set()
        self._sources: dict[str, dict[str, Any]] = {}
        self.session_id: str | None = None
        self.ended = False

    def show(self, frame: dict[str, Any]) -> None:
        kind = frame.get("type")
        if kind == "session":
            self.session_id = _text(frame.get("session_id")) or self.session_id
        elif kind == "text":
            self._write(_text(frame.get("content")))
        elif kind == "tool_call":
            self._show_tool(frame)
        elif kind == "tools":
            for call in frame.get("tools") or []:
                if isinstance(call, dict):
                    self._show_tool(call)
        elif kind == "sources":
            self._collect(frame.get("sources") or [])
        elif kind == "end":
            self.session_id = _text(frame.get("session_id")) or self.session_id
            self._finish()
        elif kind == "error":
            message = _text(frame.get("message")) or _text(frame.get("content"))
            self.line(f"error: {message or 'the answer failed'} ({frame.get('code', 'error')})")
            self._finish()

    def stream_closed(self) -> None:
        """The response ended: say so if it ended before its last frame."""
        if not self.ended:
            self.line("error: the server closed the stream before the answer ended")
            self._finish()

    def cancelled(self) -> None:
        self.line("[answer cancelled]")
        self.ended = True
        self._out.flush()

    def line(self, text: str) -> None:
        """A line of its own, after any text written so far."""
        if self._mid_line:
            self._out.write("\n")
            self._mid_line = False
        self._out.write(text + "\n")
        self._out.flush()

    def _write(self, text: str) -> None:
        if text:
            self._out.write(text)
            self._out.flush()
            self._mid_line = not text.endswith("\n")

    def _show_tool(self, call: dict[str, Any]) -> None:
        call_id = _text(call.get("tool_call_id")) or str(len(self._tools_shown))
        if call_id not in self._tools_shown:
            self._tools_shown.add(call_id)
            self.line(f"  -> {call.get('tool_name', '?')}({_arguments(call.get('args'))})")

    def _collect(self, sources: list[Any]) -> None:
        for source in sources:
            if not isinstance(source, dict):
                continue
            key = _text(source.get("document_id")) or _text(source.get("chunk_id"))
            known = self._sources.get(key)
            if known is None or _score(source) > _score(known):
                self._sources[key] = source

    def _finish(self) -> None:
        if self._mid_line:
            self._out.write("\n")
            self._mid_line = False
        if self._sources:
            self._out.write("sources:\n")
            ranked = sorted(self._sources.values(), key=_score, reverse=True)
            for number, source in enumerate(ranked, 1):
                title = _text(source.get("document_title")) or "(untitled)"
                where = _text(source.get("document_source"))
                score = f"  score {_score(source):.2f}" if "score" in source else ""
                self._out.write(f"  {number}. {title}{f' ({where})' if where else ''}{score}\n")
        self.ended = True
        self._out.flush()


def _text(value: Any) -> str:
    return value if isinstance(value, str) else ""


def _score(source: dict[str, Any]) -> float:
    score = source.get("score")
    return float(score) if isinstance(score, int | float) else 0.0


def _arguments(args: Any) -> str:
    if isinstance(args, str):
        text = args
        try:
            args = json.loads(text)
        except ValueError:
            return text
    if isinstance(args, dict):
        return ", ".join(f"{key}={json.dumps(value)}" for key, value in args.items())
    return "" if args is None else json.dumps(args)
