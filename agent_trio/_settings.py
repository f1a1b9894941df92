"""Configuration, from the environment and a ``.env`` file in the working directory.

The variable names are part of the external contract (``API.md``): a field ``foo_bar``
is read from ``FOO_BAR``. The provider-dependent values are resolved in the raw
values, before validation (the model is frozen, and is never changed after): an unset
``LLM_PROVIDER``, ``EMBEDDING_PROVIDER`` or ``GRAPH_DIALECT=auto`` becomes the provider
or dialect it implies, and the base URL, model and dimensions are filled from the
provider's defaults where unset. So ``llm_provider``, ``embedding_provider``,
``graph_dialect``, ``llm_choice``, ``embedding_model`` and ``embedding_dimensions``
are typed as always set.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import Field, SecretStr, ValidationError, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from agent_trio._errors import ConfigError

__all__ = ["EMBEDDING_DEFAULTS", "LLM_DEFAULTS", "Settings", "load_settings"]

LlmProvider = Literal["openai", "ollama", "openrouter", "none"]
EmbeddingProvider = Literal["jina", "openai", "local"]
GraphDialect = Literal["neo4j", "arcadedb"]

#: provider -> (base URL, model)
LLM_DEFAULTS: dict[str, tuple[str, str]] = {
    "openai": ("https://api.openai.com/v1", "gpt-4o-mini"),
    "ollama": ("http://127.0.0.1:11434/v1", "llama3.1"),
    "openrouter": ("https://openrouter.ai/api/v1", "openai/gpt-4o-mini"),
    "none": ("", "extractive"),
}

#: provider -> (base URL, model, dimensions)
EMBEDDING_DEFAULTS: dict[str, tuple[str, str, int]] = {
    "jina": ("https://api.jina.ai/v1", "jina-embeddings-v3", 1024),
    "openai": ("https://api.openai.com/v1", "text-embedding-3-small", 1536),
    "local": ("", "all-MiniLM-L6-v2", 384),
}


class Settings(BaseSettings):
    """Every setting of the service. Build with :func:`load_settings`."""

    model_config = SettingsConfigDict(
        env_file=".env",
        env_file_encoding="utf-8",
        extra="ignore",
        case_sensitive=False,
        frozen=True,
    )

    # -- graph -------------------------------------------------------------
    agent_data_dir: Path = Path("./data")
    neo4j_uri: str | None = None
    neo4j_user: str = "neo4j"
    neo4j_password: SecretStr | None = None
    neo4j_database: str = "neo4j"
    #: an ArcadeDB server's HTTP API (``http://host:2480``), with NEO4J_URI its Bolt address:
    #: the service creates its indexes there, in ArcadeDB SQL
    arcadedb_http_url: str | None = None
    #: ``GRAPH_DIALECT=auto`` (the default): ``neo4j`` when NEO4J_URI is set without
    #: ARCADEDB_HTTP_URL, else ``arcadedb``
    graph_dialect: GraphDialect = "arcadedb"
    graph_max_concurrency: int = Field(16, ge=1, le=1024)
    #: server-side transaction timeout; shorter than any Trio deadline around a query
    graph_query_timeout_seconds: float = Field(30.0, gt=0)

    # -- embedded engine (used when NEO4J_URI is unset) ----------------------
    engine_heap_mb: int = Field(512, ge=128, le=65536)
    engine_start_timeout_seconds: float = Field(60.0, gt=0)
    engine_stop_grace_seconds: float = Field(5.0, gt=0)

    # -- LLM ---------------------------------------------------------------
    llm_provider: LlmProvider = "none"
    llm_base_url: str | None = None
    llm_api_key: SecretStr | None = None
    llm_choice: str = LLM_DEFAULTS["none"][1]
    #: comma-separated models a chat may pick (``model_choice``); the first is the default
    llm_models: str | None = None
    llm_max_concurrency: int = Field(8, ge=1, le=1024)
    llm_rate_limit_per_minute: int = Field(0, ge=0)
    llm_request_timeout_seconds: float = Field(120.0, gt=0)

    # -- embeddings --------------------------------------------------------
    embedding_provider: EmbeddingProvider = "local"
    embedding_base_url: str | None = None
    embedding_api_key: SecretStr | None = None
    embedding_model: str = EMBEDDING_DEFAULTS["local"][1]
    embedding_dimensions: int = Field(EMBEDDING_DEFAULTS["local"][2], ge=1, le=8192)
    embedding_max_concurrency: int = Field(3, ge=1, le=1024)
    embedding_rate_limit_per_minute: int = Field(60, ge=0)
    embedding_batch_size: int = Field(100, ge=1, le=2048)
    embedding_request_timeout_seconds: float = Field(60.0, gt=0)

    # -- shared upstream behaviour -----------------------------------------
    upstream_max_attempts: int = Field(5, ge=1, le=20)
    upstream_breaker_threshold: int = Field(5, ge=1)
    upstream_breaker_cooldown_seconds: float = Field(30.0, gt=0)

    # -- chat and agent ----------------------------------------------------
    chat_max_concurrency: int = Field(64, ge=1, le=100_000)
    chat_timeout_seconds: float = Field(120.0, gt=0)
    agent_max_steps: int = Field(8, ge=1, le=100)
    #: a session idle this long is gone: its id starts a new session
    session_ttl_seconds: float = Field(7 * 24 * 3600.0, gt=0)

    # -- ingestion ---------------------------------------------------------
    chunk_size: int = Field(1000, ge=100, le=20_000)
    chunk_overlap: int = Field(200, ge=0)
    #: files or folders (comma-separated) ingested in the background once the service is up
    ingest_on_start: str | None = None

    # -- HTTP --------------------------------------------------------------
    api_key: SecretStr | None = None
    cors_origins: str | None = None
    max_body_bytes: int = Field(2 * 1024 * 1024, ge=1024)
    shutdown_timeout_seconds: float = Field(15.0, gt=0)
    #: how often the tokens borrowed are compared with the operations in flight
    leak_check_interval_seconds: float = Field(10.0, gt=0)
    #: mismatches in a row before a limiter is suspected of a leak
    leak_check_grace: int = Field(3, ge=1, le=1000)
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    #: ``text`` (for people) or ``json`` (one object per line, for log shippers)
    log_format: Literal["text", "json"] = "text"

    @model_validator(mode="before")
    @classmethod
    def _resolve_raw(cls, data: Any) -> Any:
        """Blank means unset; then fill what the providers and the graph imply."""
        if not isinstance(data, dict):
            return data
        # ``FOO=`` in a .env file means "not set", not "the empty string".
        raw = {k: v for k, v in data.items() if not (isinstance(v, str) and v.strip() == "")}
        _resolve_graph(raw)
        _resolve_llm(raw)
        _resolve_embedding(raw)
        return raw

    @model_validator(mode="after")
    def _check(self) -> Settings:
        if self.neo4j_uri and self.neo4j_uri.split("://", 1)[0] not in _BOLT_SCHEMES:
            raise ValueError(f"NEO4J_URI must start with one of {sorted(_BOLT_SCHEMES)}://")
        if self.arcadedb_http_url is not None:
            if self.neo4j_uri is None:
                raise ValueError(
                    "ARCADEDB_HTTP_URL is for an ArcadeDB server reached through NEO4J_URI: "
                    "set NEO4J_URI too, or unset ARCADEDB_HTTP_URL for the embedded engine"
                )
            if not self.arcadedb_http_url.startswith(("http://", "https://")):
                raise ValueError("ARCADEDB_HTTP_URL must start with http:// or https://")
        if self.graph_dialect == "arcadedb" and self.neo4j_uri and not self.arcadedb_http_url:
            raise ValueError(
                "GRAPH_DIALECT=arcadedb with NEO4J_URI needs ARCADEDB_HTTP_URL "
                "(the server's HTTP API, where the indexes are created)"
            )
        own_url = self.llm_base_url == LLM_DEFAULTS[self.llm_provider][0]
        if self.llm_provider in ("openai", "openrouter") and self.llm_api_key is None and own_url:
            raise ValueError(
                f"LLM_API_KEY is required when LLM_PROVIDER={self.llm_provider} "
                "and LLM_BASE_URL is the provider's own"
            )
        if self.embedding_provider == "jina" and self.embedding_api_key is None:
            raise ValueError("EMBEDDING_API_KEY is required when EMBEDDING_PROVIDER=jina")
        if (
            self.embedding_provider == "local"
            and self.embedding_dimensions != EMBEDDING_DEFAULTS["local"][2]
        ):
            raise ValueError(
                "EMBEDDING_DIMENSIONS must be 384 (or unset) when EMBEDDING_PROVIDER=local"
            )
        if self.chunk_overlap >= self.chunk_size:
            raise ValueError("CHUNK_OVERLAP must be smaller than CHUNK_SIZE")
        return self

    # -- derived -----------------------------------------------------------
    @property
    def embedded_engine(self) -> bool:
        """True when the service starts its own graph engine (NEO4J_URI unset)."""
        return self.neo4j_uri is None

    @property
    def ingest_on_start_paths(self) -> list[Path]:
        if not self.ingest_on_start:
            return []
        return [Path(p.strip()) for p in self.ingest_on_start.split(",") if p.strip()]

    @property
    def llm_model_list(self) -> list[str]:
        """The models a chat may pick: LLM_MODELS, else LLM_CHOICE; the first is the default."""
        models = [m.strip() for m in (self.llm_models or "").split(",") if m.strip()]
        if models:
            return list(dict.fromkeys(models))
        return [self.llm_choice] if self.llm_choice else []

    @property
    def cors_origin_list(self) -> list[str]:
        if not self.cors_origins:
            return []
        return [o.strip() for o in self.cors_origins.split(",") if o.strip()]

    def summary(self) -> dict[str, Any]:
        """What /health may show: providers and models, never secrets or URLs with keys."""
        return {
            "graph": {
                "dialect": self.graph_dialect,
                "embedded": self.embedded_engine,
            },
            "embedder": {
                "provider": self.embedding_provider,
                "model": self.embedding_model,
                "dimensions": self.embedding_dimensions,
            },
            "llm": {"provider": self.llm_provider, "model": self.llm_choice},
        }


_BOLT_SCHEMES = frozenset({"bolt", "bolt+s", "bolt+ssc", "neo4j", "neo4j+s", "neo4j+ssc"})


def _lower(value: Any) -> Any:
    return value.strip().lower() if isinstance(value, str) else value


def _resolve_graph(raw: dict[str, Any]) -> None:
    if _lower(raw.get("graph_dialect", "auto")) == "auto":
        external_neo4j = raw.get("neo4j_uri") is not None and raw.get("arcadedb_http_url") is None
        raw["graph_dialect"] = "neo4j" if external_neo4j else "arcadedb"


def _resolve_llm(raw: dict[str, Any]) -> None:
    if raw.get("llm_provider") is None:
        given = raw.get("llm_base_url") is not None or raw.get("llm_api_key") is not None
        raw["llm_provider"] = "openai" if given else "none"
    defaults = LLM_DEFAULTS.get(_lower(raw["llm_provider"]))
    if defaults is None:
        return  # not a provider: validation says so
    url, model = defaults
    if url:
        raw.setdefault("llm_base_url", url)
    raw.setdefault("llm_choice", model)


def _resolve_embedding(raw: dict[str, Any]) -> None:
    if raw.get("embedding_provider") is None:
        if raw.get("embedding_base_url") is not None:
            raw["embedding_provider"] = "openai"
        elif raw.get("embedding_api_key") is not None:
            raw["embedding_provider"] = "jina"
        else:
            raw["embedding_provider"] = "local"
    defaults = EMBEDDING_DEFAULTS.get(_lower(raw["embedding_provider"]))
    if defaults is None:
        return
    url, model, dimensions = defaults
    if url:
        raw.setdefault("embedding_base_url", url)
    raw.setdefault("embedding_model", model)
    raw.setdefault("embedding_dimensions", dimensions)


def load_settings(**overrides: Any) -> Settings:
    """Read the settings; raise :class:`ConfigError` with one line naming the variable.

    ``overrides`` take precedence over the environment (used by tests and the CLI).
    """
    try:
        return Settings(**overrides)
    except ValidationError as exc:
        raise ConfigError(_describe(exc)) from None


def _describe(exc: ValidationError) -> str:
    parts = []
    for err in exc.errors():
        loc = [str(p) for p in err["loc"]]
        msg = str(err["msg"]).removeprefix("Value error, ")
        if loc:
            name = loc[0].upper()
            value = err.get("input")
            shown = "" if name.endswith(("KEY", "PASSWORD")) else f"={value!r}"
            parts.append(f"{name}{shown}: {msg}")
        else:
            parts.append(msg)
    return "invalid configuration: " + "; ".join(parts)
