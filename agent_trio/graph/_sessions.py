"""Chat sessions and their messages in the graph (types in ``_schema.py``).

:class:`SessionStore` writes through the :class:`GraphGateway` directly: a message
never waits behind the knowledge store's serialised document writes. A session
that has been idle for longer than ``ttl`` seconds is gone: reading it finds
nothing, and a chat under its id deletes it and starts a new one.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

import trio

from agent_trio._errors import GraphError, GraphQueryError
from agent_trio.graph._dialects import Dialect
from agent_trio.graph._gateway import GraphGateway, Record, Statement

__all__ = ["MessageRow", "MessageStatus", "SessionRow", "SessionStore", "Turn", "new_id"]

MessageStatus = Literal["complete", "interrupted", "failed"]
Role = Literal["user", "assistant"]

_SESSION = """
MATCH (s:Session {id: $id})
RETURN s.id AS id, s.user_id AS user_id, s.metadata AS metadata,
       s.created_at AS created_at, s.updated_at AS updated_at
"""
_MESSAGES = """
MATCH (m:Message {session_id: $id})
RETURN m.id AS id, m.session_id AS session_id, m.role AS role, m.content AS content,
       m.status AS status, m.tool_calls AS tool_calls, m.created_at AS created_at
ORDER BY m.created_at DESC, m.id DESC
LIMIT $limit
"""
_OPEN_TURN = """
OPTIONAL MATCH (old:Session {id: $id})
WITH old.updated_at AS previous, old.created_at AS created_at,
     old.user_id AS user_id, old.metadata AS metadata
MERGE (s:Session {id: $id})
ON CREATE SET s.user_id = $user_id, s.metadata = $metadata, s.created_at = $now
SET s.updated_at = $now
CREATE (m:Message {id: $message_id, session_id: $id, role: 'user', content: $content,
                   status: 'complete', tool_calls: '[]', created_at: $now})
RETURN previous, created_at, user_id, metadata
"""
_EARLIER_MESSAGES = """
MATCH (m:Message {session_id: $id})
WHERE m.id <> $current
RETURN m.id AS id, m.session_id AS session_id, m.role AS role, m.content AS content,
       m.status AS status, m.tool_calls AS tool_calls, m.created_at AS created_at
ORDER BY m.created_at DESC, m.id DESC
LIMIT $limit
"""
_FORGET_EARLIER = "MATCH (m:Message {session_id: $id}) WHERE m.id <> $current DELETE m"
_RESTART_SESSION = """
MATCH (s:Session {id: $id})
SET s.user_id = $user_id, s.metadata = $metadata, s.created_at = $now
"""
#: messages written together (see :class:`_GroupCommit`); MERGE on the id, so that a
#: batch whose fate is unknown (its writer was cancelled) can be written again
_ADD_MESSAGES = """
UNWIND $rows AS r
MERGE (s:Session {id: r.session_id})
ON CREATE SET s.metadata = '{}', s.created_at = r.now
SET s.updated_at = r.now
MERGE (m:Message {id: r.id})
ON CREATE SET m.session_id = r.session_id, m.role = r.role, m.content = r.content,
              m.status = r.status, m.tool_calls = r.tool_calls, m.created_at = r.now
"""
_ADD_REPLY = """
MATCH (asked:Message {id: $reply_to})
WITH asked LIMIT 1
MERGE (s:Session {id: $session_id})
ON CREATE SET s.metadata = '{}', s.created_at = $now
SET s.updated_at = $now
CREATE (m:Message {id: $id, session_id: $session_id, role: $role, content: $content,
                   status: $status, tool_calls: $tool_calls, created_at: $now})
"""

#: the most messages one read returns
_MAX_MESSAGES = 10_000


@dataclass(frozen=True, slots=True)
class SessionRow:
    id: str
    user_id: str | None
    metadata: Mapping[str, Any]
    created_at: str
    updated_at: str


@dataclass(frozen=True, slots=True)
class MessageRow:
    id: str
    session_id: str
    role: Role
    content: str
    status: MessageStatus
    tool_calls: tuple[Mapping[str, Any], ...]
    created_at: str

    def to_api(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "role": self.role,
            "content": self.content,
            "status": self.status,
            "created_at": self.created_at,
            "tool_calls": [dict(call) for call in self.tool_calls],
        }


@dataclass(frozen=True, slots=True)
class Turn:
    """A chat turn opened: its session (``created``: new), earlier messages, newest first."""

    session: SessionRow
    created: bool
    history: tuple[MessageRow, ...]
    user_message: MessageRow


class SessionStore:
    """Sessions and messages. ``now`` is the wall clock (UTC); tests may pass their own."""

    def __init__(
        self,
        gateway: GraphGateway,
        dialect: Dialect,
        *,
        ttl: float,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._gateway = gateway
        self._dialect = dialect
        self.ttl = ttl
        self._now = now
        self._group = _GroupCommit(gateway)

    async def ensure_schema(self) -> None:
        await self._dialect.ensure_session_schema(self._gateway)

    async def get(self, session_id: str) -> SessionRow | None:
        """The session, ``None`` if it is unknown or expired."""
        session = await self._read(session_id)
        return None if session is None or self._expired(session) else session

    async def messages(self, session_id: str, *, newest: int = _MAX_MESSAGES) -> list[MessageRow]:
        """The ``newest`` messages of the session, oldest first."""
        rows = await self._gateway.query(_MESSAGES, {"id": session_id, "limit": newest})
        return [_message_from(r) for r in reversed(rows)]

    async def open_turn(
        self,
        session_id: str,
        content: str,
        *,
        user_id: str | None = None,
        metadata: Mapping[str, Any] | None = None,
        history: int = 100,
        message_id: str | None = None,
    ) -> Turn:
        """Start (or restart, if expired) the session; write the user's message; read
        the session's last ``history`` messages before it. The message is stored when
        this returns.

        One statement starts the session and stores the message; a second reads the
        earlier messages of a session that was there already. An expired session is
        found by the first: its earlier messages are deleted after the fact and it
        starts again under the same id, with the new message (``message_id``, if given).
        """
        now = self._stamp()
        message = MessageRow(
            message_id or new_id(), session_id, "user", content, "complete", (), now
        )
        given = json.dumps(dict(metadata or {}))
        rows = await self._gateway.query(
            _OPEN_TURN,
            {
                "id": session_id,
                "user_id": user_id,
                "metadata": given,
                "now": now,
                "message_id": message.id,
                "content": content,
            },
        )
        found = rows[0] if rows else {}
        fresh = SessionRow(session_id, user_id, dict(metadata or {}), now, now)
        if found.get("previous") is None:
            return Turn(fresh, True, (), message)
        before = _session_from({"id": session_id, "updated_at": found["previous"], **found})
        if self._expired(before):
            current = {"id": session_id, "current": message.id}
            restart = {"id": session_id, "user_id": user_id, "metadata": given, "now": now}
            await self._gateway.transaction(
                [Statement(_FORGET_EARLIER, current), Statement(_RESTART_SESSION, restart)]
            )
            return Turn(fresh, True, (), message)
        rows = await self._gateway.query(
            _EARLIER_MESSAGES, {"id": session_id, "current": message.id, "limit": history}
        )
        earlier = tuple(_message_from(r) for r in rows)  # newest first
        stored = SessionRow(before.id, before.user_id, before.metadata, before.created_at, now)
        return Turn(stored, False, earlier, message)

    async def add_message(
        self,
        session_id: str,
        role: Role,
        content: str,
        *,
        status: MessageStatus = "complete",
        tool_calls: Sequence[Mapping[str, Any]] = (),
        message_id: str | None = None,
        reply_to: str | None = None,
    ) -> MessageRow:
        """Write one message (``message_id`` if given) and mark the session used,
        in one statement (the session is made again if it is gone), which also
        writes the messages of other chats that ended at the same moment.

        With ``reply_to``, the message is written only if the message of that id is
        stored: the answer to a turn cut while its question was being written.
        """
        now = self._stamp()
        message = MessageRow(
            message_id or new_id(),
            session_id,
            role,
            content,
            status,
            tuple(dict(c) for c in tool_calls),
            now,
        )
        if reply_to is None:
            await self._group.write(_add(message))
        else:
            await self._gateway.query(_ADD_REPLY, {**_add(message), "reply_to": reply_to})
        return message

    # -- internals -------------------------------------------------------------------
    async def _read(self, session_id: str) -> SessionRow | None:
        rows = await self._gateway.query(_SESSION, {"id": session_id})
        return _session_from(rows[0]) if rows else None

    def _expired(self, session: SessionRow) -> bool:
        try:
            updated = datetime.fromisoformat(session.updated_at.replace("Z", "+00:00"))
        except ValueError:
            return True
        return self._now() - updated > timedelta(seconds=self.ttl)

    def _stamp(self) -> str:
        return self._now().astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class _Pending:
    __slots__ = ("done", "error", "row")

    def __init__(self, row: dict[str, Any]) -> None:
        self.row = row
        self.done = False
        self.error: GraphError | None = None


class _GroupCommit:
    """Messages that are written at the same moment go in one statement.

    Each writer queues its message, then takes the lock (fair: first come, first
    served). Whoever holds it writes every message queued by then; a writer whose
    message was written while it waited returns at once. Many chats ending together
    (a burst of answers, a shutdown) thus cost a few commits instead of one each.

    A writer cancelled while it waits takes its message out of the queue. One
    cancelled while its batch is on the engine puts the other messages back: the
    batch may or may not have committed, and writing it again merges on the ids. A
    batch that the graph refuses is written again one message at a time, so that a
    bad message fails alone. The statement goes through the gateway's store slot:
    answers never wait behind other chats' searches for a shared graph slot.
    """

    def __init__(self, gateway: GraphGateway) -> None:
        self._gateway = gateway
        self._queue: list[_Pending] = []
        self._lock = trio.Lock()

    async def write(self, row: dict[str, Any]) -> None:
        mine = _Pending(row)
        self._queue.append(mine)
        try:
            async with self._lock:
                if not mine.done:
                    await self._write_queued(mine)
        except BaseException:
            if not mine.done and mine in self._queue:
                self._queue.remove(mine)
            raise
        if mine.error is not None:
            # a copy for each writer: the group's writers share one failure, and an
            # exception raised in several tasks would gather all their tracebacks
            raise type(mine.error)(str(mine.error)) from mine.error

    async def _write_queued(self, mine: _Pending) -> None:
        batch, self._queue = self._queue, []
        try:
            await self._write_batch(batch)
        except BaseException:  # cancelled: the others go back to the front of the queue
            self._queue[:0] = [p for p in batch if p is not mine and not p.done]
            raise

    async def _write_batch(self, batch: list[_Pending]) -> None:
        """Write ``batch``; each message ends done, with its error if it failed."""
        try:
            await self._statement(batch)
        except GraphQueryError as exc:
            if len(batch) == 1:
                _finish(batch, exc)
                return
            for pending in batch:  # which one was refused? each alone
                try:
                    await self._statement([pending])
                except GraphQueryError as alone:
                    _finish([pending], alone)
                else:
                    _finish([pending], None)
        except GraphError as exc:  # the graph is down: for all of them
            _finish(batch, exc)
        else:
            _finish(batch, None)

    async def _statement(self, batch: list[_Pending]) -> None:
        await self._gateway.store(_ADD_MESSAGES, {"rows": [p.row for p in batch]})


def _finish(batch: list[_Pending], error: GraphError | None) -> None:
    for pending in batch:
        pending.error = error
        pending.done = True


def new_id() -> str:
    """A new session or message id."""
    return uuid.uuid4().hex


def _add(message: MessageRow) -> dict[str, Any]:
    return {
        "id": message.id,
        "session_id": message.session_id,
        "role": message.role,
        "content": message.content,
        "status": message.status,
        "tool_calls": json.dumps([dict(c) for c in message.tool_calls]),
        "now": message.created_at,
    }


def _json_object(text: Any) -> dict[str, Any]:
    try:
        value = json.loads(text) if isinstance(text, str) else text
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


def _session_from(row: Record) -> SessionRow:
    return SessionRow(
        id=row["id"],
        user_id=row.get("user_id"),
        metadata=_json_object(row.get("metadata")),
        created_at=row.get("created_at") or "",
        updated_at=row.get("updated_at") or "",
    )


def _message_from(row: Record) -> MessageRow:
    try:
        calls = json.loads(row.get("tool_calls") or "[]")
    except ValueError:
        calls = []
    return MessageRow(
        id=row["id"],
        session_id=row["session_id"],
        role=row["role"],
        content=row.get("content") or "",
        status=row.get("status") or "complete",
        tool_calls=tuple(c for c in calls if isinstance(c, dict)),
        created_at=row.get("created_at") or "",
    )
