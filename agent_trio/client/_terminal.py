"""The conversation loop: read a question, stream its answer, keep the session."""

from __future__ import annotations

import contextlib
import logging
import os
import sys
from collections.abc import Mapping
from typing import Any, TextIO

import httpx

from agent_trio.client._answer import AnswerView
from agent_trio.client._sse import iter_frames

__all__ = ["API_KEY_VARIABLES", "api_key_from_env", "run_chat"]

#: where the client finds the server's API key, first found wins
API_KEY_VARIABLES = ("AGENT_TRIO_API_KEY", "API_KEY")
PROMPT = "you> "
#: the server pings every 15 s; this much silence means it is stuck
READ_TIMEOUT = 60.0
CONNECT_TIMEOUT = 5.0


def api_key_from_env(env: Mapping[str, str] = os.environ) -> str | None:
    return next((env[name] for name in API_KEY_VARIABLES if env.get(name)), None)


def run_chat(url: str, *, api_key: str | None = None, out: TextIO = sys.stdout) -> int:
    """Hold a conversation on the terminal until Ctrl-D; 1 if the server is not there."""
    if sys.stdin.isatty():
        with contextlib.suppress(ImportError):
            import readline  # noqa: F401 - line editing and history for input()
    logging.getLogger("httpx").setLevel(logging.WARNING)  # no line per request
    headers = {"authorization": f"Bearer {api_key}"} if api_key else {}
    timeout = httpx.Timeout(READ_TIMEOUT, connect=CONNECT_TIMEOUT)
    with httpx.Client(base_url=url.rstrip("/"), headers=headers, timeout=timeout) as client:
        chat = _Conversation(client, url, has_key=api_key is not None, out=out)
        try:
            if not chat.greet():
                return 1
        except KeyboardInterrupt:  # while waiting for the server's first answer
            return 130
        return chat.loop()


class _Conversation:
    def __init__(self, client: httpx.Client, url: str, *, has_key: bool, out: TextIO) -> None:
        self._client = client
        self._url = url
        self._has_key = has_key
        self._out = out
        self.session_id: str | None = None

    def greet(self) -> bool:
        try:
            health = self._client.get("/health")
        except httpx.TransportError as exc:
            self._say(self._unreachable(exc))
            return False
        body = _json(health)
        version = body.get("version", "?")
        status = body.get("status", f"HTTP {health.status_code}")
        self._say(f"agent-trio {version} at {self._url} ({status})")
        self._say("Ask a question. Ctrl-C cancels an answer, Ctrl-D quits.")
        return True

    def loop(self) -> int:
        while True:
            try:
                question = input(PROMPT)
            except EOFError:
                self._say("")
                return 0
            except KeyboardInterrupt:
                self._say("\n(Ctrl-D quits)")
                continue
            if question.strip():
                self.ask(question)

    def ask(self, question: str) -> None:
        view = AnswerView(self._out)
        body: dict[str, Any] = {"message": question, "session_id": self.session_id}
        try:
            with self._client.stream("POST", "/chat/stream", json=body) as response:
                if response.status_code != 200:
                    response.read()
                    view.line(self._refused(response))
                    return
                for frame in iter_frames(response.iter_lines()):
                    view.show(frame)
                    self.session_id = view.session_id or self.session_id
            view.stream_closed()
        except KeyboardInterrupt:
            view.cancelled()
        except (httpx.ConnectError, httpx.ConnectTimeout) as exc:
            view.line(self._unreachable(exc))
        except httpx.ReadTimeout:
            view.line(f"error: the server sent nothing for {READ_TIMEOUT:.0f} s; answer abandoned")
        except httpx.TransportError as exc:
            view.line(f"error: the connection to the server broke: {exc}")

    def _unreachable(self, exc: Exception) -> str:
        return (
            f"error: cannot reach agent-trio at {self._url} ({exc}). Is the server running? "
            "Start it with `python -m agent_trio serve`, or point --url at it."
        )

    def _refused(self, response: httpx.Response) -> str:
        if response.status_code == 401:
            names = " or ".join(API_KEY_VARIABLES)
            if self._has_key:
                return f"error: the server refused the API key (from {names}): HTTP 401"
            return f"error: the server needs an API key: set {names} to it (HTTP 401)"
        error = _json(response).get("error")
        error = error if isinstance(error, dict) else {}
        message = error.get("message") or response.reason_phrase
        line = f"error: {message} ({error.get('code', 'http_error')}, HTTP {response.status_code})"
        retry = response.headers.get("retry-after")
        return f"{line}; try again in {retry} s" if retry else line

    def _say(self, text: str) -> None:
        self._out.write(text + "\n")
        self._out.flush()


def _json(response: httpx.Response) -> dict[str, Any]:
    try:
        value = response.json()
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}
