"""Where Neo4j and ArcadeDB differ: schema creation, index names, score scales.

Everything else — the Cypher the store runs, the procedures it calls
(``db.index.vector.queryNodes``, ``db.index.fulltext.queryNodes``) — is the same
for both, so this module is the one place to look when they diverge.

* ``neo4j``: schema with Cypher DDL (Neo4j 5: ``CREATE CONSTRAINT … IF NOT
  EXISTS``, ``CREATE FULLTEXT INDEX``, ``CREATE VECTOR INDEX … OPTIONS
  {indexConfig: …}``), run through the gateway; index names of our own.
* ``arcadedb``: the Bolt endpoint refuses those DDL forms, so the schema is created
  with ArcadeDB SQL over its HTTP API (``POST /api/v1/command/<db>``) with the
  httpx client the service owns; index names are ``Type[property]``.

Scores: with the cosine function both vector procedures return ``(1 + cos) / 2``
(1.0 same direction, 0.5 orthogonal, 0.0 opposite; checked on ArcadeDB, stated by
the Neo4j manual), already in ``[0, 1]``; :meth:`Dialect.vector_score` only clamps
rounding noise. Full-text scores are Lucene scores on both and are normalised per
query (:func:`~agent_trio.graph._lucene.relative_scores`).

Every ``ensure_schema`` is idempotent and refuses to run against a vector index of
another dimension than the embedder's (``ConfigError``), rather than letting writes
fail or the index be rebuilt.
"""

from __future__ import annotations

import abc
from collections.abc import Sequence
from typing import Any, ClassVar, Literal

import httpx
import stamina

from agent_trio._errors import ConfigError, GraphQueryError, GraphUnavailable
from agent_trio.graph._gateway import GraphGateway
from agent_trio.graph._lucene import relative_scores
from agent_trio.graph._schema import (
    EDGE_LOOKUP_KEYS,
    EDGE_TYPES,
    FULLTEXT_PROPERTIES,
    LOOKUP_KEYS,
    PROPERTY_TYPES,
    SESSION_LOOKUP_KEYS,
    SESSION_PROPERTY_TYPES,
    SESSION_UNIQUE_KEYS,
    SESSION_VERTEX_TYPES,
    UNIQUE_KEYS,
    VECTOR_PROPERTY,
    VERTEX_TYPES,
)

__all__ = [
    "ArcadeDialect",
    "Dialect",
    "DialectName",
    "Neo4jDialect",
    "arcadedb_schema_commands",
    "arcadedb_session_commands",
    "make_dialect",
    "neo4j_schema_statements",
    "neo4j_session_statements",
]

DialectName = Literal["neo4j", "arcadedb"]


class Dialect(abc.ABC):
    """The engine-specific part of the knowledge store."""

    name: ClassVar[DialectName]
    #: index names as the query procedures want them
    vector_index: ClassVar[str]
    chunk_text_index: ClassVar[str]
    entity_name_index: ClassVar[str]

    @abc.abstractmethod
    async def vector_dimensions(self, gateway: GraphGateway) -> int | None:
        """The dimension of the existing vector index, ``None`` if there is none."""

    @abc.abstractmethod
    async def _create_schema(self, gateway: GraphGateway, dimensions: int) -> None: ...

    @abc.abstractmethod
    async def ensure_session_schema(self, gateway: GraphGateway) -> None:
        """Create the chat sessions' types and indexes where missing (idempotent)."""

    async def ensure_schema(self, gateway: GraphGateway, dimensions: int) -> None:
        """Create what is missing; fail if the vector index has another dimension."""
        if dimensions < 1:
            raise ConfigError(f"EMBEDDING_DIMENSIONS must be positive, got {dimensions}")
        self._check_dimensions(await self.vector_dimensions(gateway), dimensions)
        await self._create_schema(gateway, dimensions)
        self._check_dimensions(await self.vector_dimensions(gateway), dimensions)

    def vector_score(self, raw: float) -> float:
        """The vector procedure's score, in ``[0, 1]``."""
        return min(1.0, max(0.0, float(raw)))

    def fulltext_scores(self, raw: Sequence[float]) -> list[float]:
        """The full-text procedure's scores of one query, in ``[0, 1]``."""
        return relative_scores([float(s) for s in raw])

    def _check_dimensions(self, existing: int | None, wanted: int) -> None:
        if existing is not None and existing != wanted:
            raise ConfigError(
                f"EMBEDDING_DIMENSIONS={wanted} does not match the graph's vector index "
                f"{self.vector_index}, which holds {existing}-dimensional vectors: configure "
                f"the embedding model the graph was built with, or drop that index and "
                f"ingest the documents again"
            )


# -- Neo4j ------------------------------------------------------------------------


def _neo4j_name(label: str, prop: str, kind: str) -> str:
    return f"{label.lower()}_{prop}_{kind}"


def neo4j_schema_statements(dimensions: int) -> list[str]:
    """The Neo4j 5 DDL that creates the schema; each statement is idempotent."""
    out = [
        f"CREATE CONSTRAINT {_neo4j_name(label, prop, 'unique')} IF NOT EXISTS "
        f"FOR (n:{label}) REQUIRE n.{prop} IS UNIQUE"
        for label, prop in UNIQUE_KEYS
    ]
    out += [
        f"CREATE INDEX {_neo4j_name(label, prop, 'lookup')} IF NOT EXISTS "
        f"FOR (n:{label}) ON (n.{prop})"
        for label, prop in LOOKUP_KEYS
    ]
    out += [
        f"CREATE INDEX {_neo4j_name(label, prop, 'lookup')} IF NOT EXISTS "
        f"FOR ()-[r:{label}]-() ON (r.{prop})"
        for label, prop in EDGE_LOOKUP_KEYS
    ]
    out += [
        f"CREATE FULLTEXT INDEX {_neo4j_name(label, prop, 'fulltext')} IF NOT EXISTS "
        f"FOR (n:{label}) ON EACH [n.{prop}]"
        for label, prop in FULLTEXT_PROPERTIES
    ]
    label, prop = VECTOR_PROPERTY
    out.append(
        f"CREATE VECTOR INDEX {_neo4j_name(label, prop, 'vector')} IF NOT EXISTS "
        f"FOR (n:{label}) ON (n.{prop}) "
        f"OPTIONS {{indexConfig: {{`vector.dimensions`: {int(dimensions)}, "
        f"`vector.similarity_function`: 'cosine'}}}}"
    )
    return out


def neo4j_session_statements() -> list[str]:
    """The Neo4j 5 DDL of the chat sessions' keys; each statement is idempotent."""
    out = [
        f"CREATE CONSTRAINT {_neo4j_name(label, prop, 'unique')} IF NOT EXISTS "
        f"FOR (n:{label}) REQUIRE n.{prop} IS UNIQUE"
        for label, prop in SESSION_UNIQUE_KEYS
    ]
    out += [
        f"CREATE INDEX {_neo4j_name(label, prop, 'lookup')} IF NOT EXISTS "
        f"FOR (n:{label}) ON (n.{prop})"
        for label, prop in SESSION_LOOKUP_KEYS
    ]
    return out


class Neo4jDialect(Dialect):
    """A Neo4j 5 server (``GRAPH_DIALECT=neo4j``)."""

    name = "neo4j"
    vector_index = _neo4j_name(*VECTOR_PROPERTY, "vector")
    chunk_text_index = _neo4j_name("Chunk", "text", "fulltext")
    entity_name_index = _neo4j_name("Entity", "name", "fulltext")

    #: lists every index with its configuration
    SHOW_INDEXES = "SHOW INDEXES YIELD name, type, options"

    async def vector_dimensions(self, gateway: GraphGateway) -> int | None:
        for row in await gateway.query(self.SHOW_INDEXES):
            if row.get("name") == self.vector_index:
                config = (row.get("options") or {}).get("indexConfig") or {}
                value = config.get("vector.dimensions")
                return int(value) if value is not None else None
        return None

    async def _create_schema(self, gateway: GraphGateway, dimensions: int) -> None:
        # Schema statements run one per transaction: Neo4j refuses to mix them.
        for statement in neo4j_schema_statements(dimensions):
            await gateway.query(statement)

    async def ensure_session_schema(self, gateway: GraphGateway) -> None:
        for statement in neo4j_session_statements():
            await gateway.query(statement)


# -- ArcadeDB ---------------------------------------------------------------------


def arcadedb_schema_commands(dimensions: int) -> list[str]:
    """The ArcadeDB SQL that creates the schema; each command is idempotent.

    Properties are declared before their indexes, which ArcadeDB requires.
    """
    out = [f"CREATE VERTEX TYPE {name} IF NOT EXISTS" for name in VERTEX_TYPES]
    out += [f"CREATE EDGE TYPE {name} IF NOT EXISTS" for name in EDGE_TYPES]
    out += [
        f"CREATE PROPERTY {label}.{prop} IF NOT EXISTS {kind}"
        for label, prop, kind in PROPERTY_TYPES
    ]
    out += [f"CREATE INDEX IF NOT EXISTS ON {label} ({prop}) UNIQUE" for label, prop in UNIQUE_KEYS]
    out += [
        f"CREATE INDEX IF NOT EXISTS ON {label} ({prop}) NOTUNIQUE"
        for label, prop in (*LOOKUP_KEYS, *EDGE_LOOKUP_KEYS)
    ]
    out += [
        f"CREATE INDEX IF NOT EXISTS ON {label} ({prop}) FULL_TEXT"
        for label, prop in FULLTEXT_PROPERTIES
    ]
    label, prop = VECTOR_PROPERTY
    out.append(
        f"CREATE INDEX IF NOT EXISTS ON {label} ({prop}) LSM_VECTOR "
        f"METADATA {{dimensions: {int(dimensions)}, similarity: 'COSINE'}}"
    )
    return out


def arcadedb_session_commands() -> list[str]:
    """The ArcadeDB SQL of the chat sessions' types and indexes; each is idempotent."""
    out = [f"CREATE VERTEX TYPE {name} IF NOT EXISTS" for name in SESSION_VERTEX_TYPES]
    out += [
        f"CREATE PROPERTY {label}.{prop} IF NOT EXISTS {kind}"
        for label, prop, kind in SESSION_PROPERTY_TYPES
    ]
    out += [
        f"CREATE INDEX IF NOT EXISTS ON {label} ({prop}) UNIQUE"
        for label, prop in SESSION_UNIQUE_KEYS
    ]
    out += [
        f"CREATE INDEX IF NOT EXISTS ON {label} ({prop}) NOTUNIQUE"
        for label, prop in SESSION_LOOKUP_KEYS
    ]
    return out


class ArcadeDialect(Dialect):
    """ArcadeDB over Bolt, its schema over HTTP (``GRAPH_DIALECT=arcadedb``).

    ``http`` is an open client owned by the caller; ``http_url`` is the server's
    HTTP root (``http://127.0.0.1:2480``).
    """

    name = "arcadedb"
    vector_index = "{}[{}]".format(*VECTOR_PROPERTY)
    chunk_text_index = "Chunk[text]"
    entity_name_index = "Entity[name]"

    def __init__(
        self,
        http: httpx.AsyncClient,
        *,
        http_url: str,
        database: str,
        user: str,
        password: str,
    ) -> None:
        self._http = http
        self._url = f"{http_url.rstrip('/')}/api/v1/command/{database}"
        self._auth = httpx.BasicAuth(user, password)

    async def vector_dimensions(self, gateway: GraphGateway) -> int | None:
        label, prop = VECTOR_PROPERTY
        rows = await self.sql(f"SELECT name, indexes FROM schema:types WHERE name = '{label}'")
        for row in rows:
            for index in row.get("indexes") or []:
                if index.get("type") == "LSM_VECTOR" and index.get("properties") == [prop]:
                    value = index.get("dimensions")
                    return int(value) if value is not None else None
        return None

    async def _create_schema(self, gateway: GraphGateway, dimensions: int) -> None:
        for command in arcadedb_schema_commands(dimensions):
            await self._schema_sql(command)

    async def ensure_session_schema(self, gateway: GraphGateway) -> None:
        for command in arcadedb_session_commands():
            await self._schema_sql(command)

    async def _schema_sql(self, command: str) -> None:
        """Run an idempotent schema command, which another instance of the service may be
        running at the same moment on the same server: ArcadeDB then fails one of them
        with an internal error (HTTP 500), and running it again finds it done."""
        async for attempt in stamina.retry_context(
            on=_SchemaConflict,
            attempts=_SCHEMA_ATTEMPTS,
            timeout=None,  # deadlines are the caller's cancel scopes
            wait_initial=0.05,
            wait_max=1.0,
        ):
            with attempt:
                await self.sql(command)

    async def sql(self, command: str) -> list[dict[str, Any]]:
        """Run one SQL command over HTTP; return its ``result`` rows."""
        try:
            response = await self._http.post(
                self._url, json={"language": "sql", "command": command}, auth=self._auth
            )
        except httpx.HTTPError as exc:
            raise GraphUnavailable(f"graph HTTP API unreachable at {self._url}: {exc}") from exc
        body = _json_or_none(response)
        if response.status_code in (401, 403):
            raise GraphUnavailable(
                f"the graph HTTP API at {self._url} refused the credentials "
                f"(HTTP {response.status_code})"
            )
        if response.status_code >= 400 or body is None:
            detail = (body or {}).get("detail") or (body or {}).get("error") or response.text
            error = _SchemaConflict if response.status_code >= 500 else GraphQueryError
            raise error(
                f"the graph refused schema command {command!r} "
                f"(HTTP {response.status_code}): {str(detail)[:300]}"
            )
        result = body.get("result")
        return [r for r in result if isinstance(r, dict)] if isinstance(result, list) else []


#: tries of a schema command that failed on the server (see ``ArcadeDialect._schema_sql``)
_SCHEMA_ATTEMPTS = 6


class _SchemaConflict(GraphQueryError):
    """The server failed a command (HTTP 5xx), as it does when another client changes
    the schema at the same moment; raised as a :class:`GraphQueryError` if it stays."""


def _json_or_none(response: httpx.Response) -> dict[str, Any] | None:
    try:
        body = response.json()
    except ValueError:
        return None
    return body if isinstance(body, dict) else None


def make_dialect(
    name: DialectName,
    *,
    http: httpx.AsyncClient | None = None,
    http_url: str | None = None,
    database: str = "",
    user: str = "",
    password: str = "",
) -> Dialect:
    """The dialect for ``GRAPH_DIALECT``; ``arcadedb`` needs the engine's HTTP API."""
    if name == "neo4j":
        return Neo4jDialect()
    if name == "arcadedb":
        if http is None or not http_url:
            raise ConfigError(
                "GRAPH_DIALECT=arcadedb needs the engine's HTTP API (its URL and a client) "
                "to create the schema"
            )
        return ArcadeDialect(
            http, http_url=http_url, database=database, user=user, password=password
        )
    raise ConfigError(f"GRAPH_DIALECT must be neo4j or arcadedb, got {name!r}")
