"""The fault soak's client side, shared by ``bench/soak.py`` and ``tests/test_soak.py``.

:func:`plan` decides, from a seed and the request number alone, what chat ``n``
does: ``/chat`` or ``/chat/stream``, and whether and where its client leaves:
right after sending the request (either route), or after reading ``k`` frames of a
stream (``k = 0``: as soon as the head came). :func:`run_chats` runs the plans from
many concurrent clients and records each :class:`Outcome`; :func:`check_outcomes`
and :func:`check_sessions` (each session read back with ``GET /sessions/{id}``)
return the contract's rules that were broken, as sentences. :class:`Probe` reads the
server's limiters (``/health``) and live Trio tasks (``/metrics``); every wait on
it is a bounded poll for a condition.
"""

from __future__ import annotations

import json
import random
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, Literal

import httpx
import trio

from agent_trio.upstream._sse import LineReader

__all__ = [
    "DEPENDENCY_CODES",
    "FINAL",
    "Outcome",
    "Plan",
    "Probe",
    "Tally",
    "check_outcomes",
    "check_sessions",
    "plan",
    "run_chats",
]

QUESTIONS = (
    "Who acquired Kestrel Labs?",
    "What is the QX7 telemetry gateway?",
    "Which fund led the Series A?",
    "Who is Priya Nandakumar?",
)
#: a message's final statuses (GET /sessions/{id})
FINAL = frozenset({"complete", "interrupted", "failed"})
#: codes of a 503 or of a stream's ``error`` frame when a dependency failed, by contract
DEPENDENCY_CODES = frozenset(
    {
        "upstream_unavailable",
        "upstream_error",
        "graph_unavailable",
        "graph_error",
        "unavailable",
        "overloaded",
        "deadline_exceeded",
    }
)
#: after sending the request: the client closes its connection at once
AT_ONCE = -1


@dataclass(frozen=True)
class Plan:
    """What chat ``number`` does; ``leave`` is None (read to the end), :data:`AT_ONCE`,
    or the frames of a stream read before leaving."""

    number: int
    route: Literal["/chat", "/chat/stream"]
    leave: int | None
    session_id: str
    message: str


def plan(
    number: int, *, seed: int, run: str, stream_share: float = 0.5, leave_share: float = 0.1
) -> Plan:
    rng = random.Random(f"{seed}:client:{number}")
    route: Literal["/chat", "/chat/stream"] = (
        "/chat/stream" if rng.random() < stream_share else "/chat"
    )
    leave: int | None = None
    if rng.random() < leave_share:
        # a stream has about 14 frames: session, model, tool_call, sources, text..., tools, end
        leave = rng.choice([AT_ONCE, *range(12)]) if route == "/chat/stream" else AT_ONCE
    message = f"{QUESTIONS[number % len(QUESTIONS)]} ({run} {number})"
    return Plan(number, route, leave, f"{run}-{number}", message)


@dataclass
class Outcome:
    plan: Plan
    status: int | None = None  # None: left before the head
    retry_after: str | None = None
    frames: list[str] = field(default_factory=list)
    error_code: str | None = None
    session_id: str | None = None
    message_id: str | None = None
    left: bool = False
    transport_error: str | None = None
    seconds: float = 0.0

    @property
    def route(self) -> str:
        return self.plan.route


@dataclass
class Tally:
    outcomes: list[Outcome] = field(default_factory=list)

    def statuses(self) -> Counter[str]:
        return Counter(
            f"{o.route} {o.status if o.status is not None else 'left before the head'}"
            for o in self.outcomes
        )

    def error_frames(self) -> Counter[str]:
        return Counter(o.error_code for o in self.outcomes if o.error_code and o.frames)

    def ends(self) -> Counter[str]:
        """How the streams ended: their last frame, or that the client left."""
        return Counter(
            ("left after " + str(len(o.frames)) + " frames")
            if o.left
            else (o.frames[-1] if o.frames else "no frame")
            for o in self.outcomes
            if o.route == "/chat/stream"
        )


async def run_chats(
    url: str,
    plans: Iterator[Plan],
    *,
    clients: int,
    on_done: Callable[[int], None] = lambda done: None,
) -> Tally:
    """Run ``plans`` from ``clients`` concurrent clients; ``on_done(n)`` after the n-th."""
    tally = Tally()
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    timeout = httpx.Timeout(300.0, connect=60.0)
    async with httpx.AsyncClient(base_url=url, timeout=timeout, limits=limits) as http:

        async def client() -> None:
            for chat in plans:
                began = trio.current_time()
                outcome = await _one(http, url, chat)
                outcome.seconds = trio.current_time() - began
                tally.outcomes.append(outcome)
                on_done(len(tally.outcomes))

        async with trio.open_nursery() as nursery:
            for _ in range(clients):
                nursery.start_soon(client)
    return tally


async def _one(http: httpx.AsyncClient, url: str, chat: Plan) -> Outcome:
    outcome = Outcome(chat)
    body = {"message": chat.message, "session_id": chat.session_id}
    if chat.leave == AT_ONCE:
        await _send_and_leave(url, chat.route, body)
        outcome.left = True
        return outcome
    try:
        if chat.route == "/chat":
            response = await http.post("/chat", json=body)
            _note_head(outcome, response)
            answer = response.json()
            if response.status_code == 200:
                outcome.session_id, outcome.message_id = answer["session_id"], answer["message_id"]
            else:
                outcome.error_code = answer.get("error", {}).get("code")
            return outcome
        async with http.stream("POST", "/chat/stream", json=body) as response:
            _note_head(outcome, response)
            if response.status_code != 200:
                await response.aread()
                outcome.error_code = response.json().get("error", {}).get("code")
                return outcome
            if chat.leave == 0:
                outcome.left = True
                return outcome
            lines = LineReader(response)  # one iterator, finalized when left early
            try:
                while (line := await lines.next_line()) is not None:
                    if not line.startswith("data:"):
                        continue
                    _note_frame(outcome, json.loads(line[5:]))
                    if chat.leave is not None and len(outcome.frames) >= chat.leave:
                        outcome.left = True
                        return outcome  # leaving the block closes the connection unread
            finally:
                await lines.aclose()
    except (httpx.TransportError, ValueError) as exc:
        outcome.transport_error = f"{type(exc).__name__}: {exc}"
    return outcome


def _note_head(outcome: Outcome, response: httpx.Response) -> None:
    outcome.status = response.status_code
    outcome.retry_after = response.headers.get("retry-after")


def _note_frame(outcome: Outcome, frame: dict[str, Any]) -> None:
    kind = str(frame.get("type"))
    outcome.frames.append(kind)
    if kind == "session":
        outcome.session_id = frame.get("session_id")
    elif kind == "end":
        outcome.message_id = frame.get("message_id")
    elif kind == "error":
        outcome.error_code = frame.get("code")


async def _send_and_leave(url: str, route: str, body: dict[str, Any]) -> None:
    """Send the whole request on a connection of its own, then close it unread."""
    host, port = url.removeprefix("http://").rsplit(":", 1)
    payload = json.dumps(body).encode()
    head = (
        f"POST {route} HTTP/1.1\r\nHost: {host}:{port}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(payload)}\r\n\r\n"
    ).encode()
    with trio.fail_after(60):
        async with await trio.open_tcp_stream(host, int(port)) as stream:
            await stream.send_all(head + payload)


# -- the rules -----------------------------------------------------------------------


def check_outcomes(tally: Tally) -> list[str]:
    """What the clients saw against the contract: no 5xx but 503 (with Retry-After) and
    504, no error frame but a dependency's, no connection broken by the server."""
    broken: list[str] = []
    for o in tally.outcomes:
        where = f"chat {o.plan.number} ({o.route})"
        if o.transport_error is not None:
            broken.append(f"{where}: the connection failed: {o.transport_error}")
        if o.status is not None and o.status >= 500 and o.status not in (503, 504):
            broken.append(f"{where}: HTTP {o.status} ({o.error_code})")
        if o.status == 503 and not o.retry_after:
            broken.append(f"{where}: a 503 without Retry-After")
        if o.status is not None and o.status not in (200, 503, 504):
            broken.append(f"{where}: HTTP {o.status} ({o.error_code})")
        if o.frames and o.error_code is not None and o.error_code not in DEPENDENCY_CODES:
            broken.append(f"{where}: an error frame {o.error_code!r}")
        unfinished = not o.frames or o.frames[-1] not in ("end", "error")
        if o.route == "/chat/stream" and o.status == 200 and not o.left and unfinished:
            broken.append(f"{where}: the stream ended without end or error: {o.frames}")
        if o.session_id is not None and o.session_id != o.plan.session_id:
            broken.append(f"{where}: answered for session {o.session_id!r}")
    return broken


async def check_sessions(url: str, tally: Tally, *, concurrency: int = 8) -> list[str]:
    """Each chat's session read back: every accepted user message is stored, followed
    by the assistant's message with a final status that fits what the client saw."""
    broken: list[str] = []
    limiter = trio.CapacityLimiter(concurrency)
    async with httpx.AsyncClient(base_url=url, timeout=60.0) as http:

        async def check(o: Outcome) -> None:
            async with limiter:
                response = await http.get(f"/sessions/{o.plan.session_id}")
            if response.status_code == 404:
                if _accepted(o):
                    broken.append(f"chat {o.plan.number}: accepted, but no session stored")
                return
            if response.status_code != 200:
                broken.append(
                    f"chat {o.plan.number}: GET /sessions answered {response.status_code}"
                )
                return
            broken.extend(_session_rules(o, response.json()["messages"]))

        async with trio.open_nursery() as nursery:
            for outcome in tally.outcomes:
                nursery.start_soon(check, outcome)
    return broken


def _accepted(o: Outcome) -> bool:
    """The server took the message: a /chat answered 200, or a stream (not left) that
    sent its frames, or one left after its first answer frame (the message is stored
    before the model is asked)."""
    if o.route == "/chat":
        return o.status == 200
    if o.left:
        return any(kind not in ("session", "model") for kind in o.frames)
    return o.status == 200 and bool(o.frames)


def _session_rules(o: Outcome, messages: list[dict[str, Any]]) -> list[str]:
    where = f"chat {o.plan.number} (session {o.plan.session_id})"
    roles = [m["role"] for m in messages]
    statuses = [m["status"] for m in messages]
    if roles != ["user", "assistant"]:
        return [
            f"{where}: messages {list(zip(roles, statuses, strict=True))}, not a user's "
            "message and the answer"
        ]
    user, answer = messages
    broken = []
    if user["content"] != o.plan.message or user["status"] != "complete":
        broken.append(f"{where}: the user's message is stored as {user['status']}")
    if answer["status"] not in FINAL:
        broken.append(f"{where}: the answer's status is {answer['status']!r}")
    expected = _expected_status(o)
    if expected is not None and answer["status"] != expected:
        broken.append(f"{where}: the answer is {answer['status']}, the client saw {expected}")
    if o.message_id is not None and answer["id"] != o.message_id:
        broken.append(f"{where}: the answer's id is not the one the client got")
    return broken


def _expected_status(o: Outcome) -> str | None:
    """The status the answer must have, when what the client saw decides it."""
    if o.left:
        return None  # interrupted, or whatever it had come to when the client left
    if o.route == "/chat":
        return "complete" if o.status == 200 else "failed"
    if o.frames and o.frames[-1] == "end":
        return "complete"
    if o.frames and o.frames[-1] == "error":
        return "failed"
    return None


# -- the server's own state ------------------------------------------------------------


@dataclass
class Probe:
    """Reads ``/health`` and ``/metrics`` on connections of its own (none kept open)."""

    url: str

    async def _get(self, path: str) -> httpx.Response:
        limits = httpx.Limits(max_keepalive_connections=0)
        async with httpx.AsyncClient(base_url=self.url, timeout=30.0, limits=limits) as http:
            return await http.get(path)

    async def limiters(self) -> dict[str, dict[str, float]]:
        body: dict[str, dict[str, float]] = (await self._get("/health")).json()["limiters"]
        return body

    async def tasks(self) -> int:
        text = (await self._get("/metrics")).text
        for line in text.splitlines():
            if line.startswith("agent_trio_trio_tasks "):
                return int(float(line.split()[1]))
        raise AssertionError("/metrics has no agent_trio_trio_tasks")

    async def borrowed(self) -> int:
        return sum(int(s["borrowed"]) + int(s["waiting"]) for s in (await self.limiters()).values())


async def poll_until(
    read: Callable[[], Any], done: Callable[[Any], bool], *, within: float, step: float = 0.1
) -> tuple[Any, float | None]:
    """Read until ``done(value)``; the last value, and the seconds it took (None: not
    within ``within`` seconds)."""
    began = trio.current_time()
    value = await read()
    with trio.move_on_after(within):
        while not done(value):
            await trio.sleep(step)
            value = await read()
        return value, trio.current_time() - began
    return value, None
