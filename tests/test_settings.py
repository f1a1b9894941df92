"""Settings: the contract's names, defaults, resolution and one clear error line."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from agent_trio import ConfigError, Settings, load_settings


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in Settings.model_fields:
        monkeypatch.delenv(name.upper(), raising=False)
    monkeypatch.chdir(tmp_path)  # no stray .env


def test_defaults_match_the_contract() -> None:
    s = load_settings()
    assert s.agent_data_dir == Path("./data")
    assert s.neo4j_uri is None
    assert s.embedded_engine
    assert s.graph_dialect == "arcadedb"
    assert s.llm_provider == "none"
    assert s.embedding_provider == "local"
    assert s.embedding_dimensions == 384
    assert (s.embedding_max_concurrency, s.embedding_rate_limit_per_minute) == (3, 60)
    assert (s.embedding_batch_size, s.llm_max_concurrency, s.chat_max_concurrency) == (100, 8, 64)
    assert (s.chat_timeout_seconds, s.agent_max_steps) == (120, 8)
    assert s.api_key is None
    assert s.cors_origin_list == []


def test_environment_and_dotenv(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    (tmp_path / ".env").write_text("EMBEDDING_BATCH_SIZE=7\nCORS_ORIGINS=http://a, http://b\n")
    monkeypatch.setenv("NEO4J_URI", "neo4j://db.internal:7687")
    s = load_settings()
    assert s.embedding_batch_size == 7
    assert s.cors_origin_list == ["http://a", "http://b"]
    assert s.graph_dialect == "neo4j"
    assert not s.embedded_engine


def test_llm_provider_is_openai_when_a_url_or_key_is_given(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LLM_BASE_URL", "http://127.0.0.1:9/v1")
    s = load_settings()
    assert s.llm_provider == "openai"
    assert s.llm_base_url == "http://127.0.0.1:9/v1"
    assert s.llm_choice == "gpt-4o-mini"


def test_blank_values_mean_unset(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NEO4J_URI", "")
    monkeypatch.setenv("LLM_API_KEY", " ")
    s = load_settings()
    assert s.embedded_engine
    assert s.llm_provider == "none"


@pytest.mark.parametrize(
    ("name", "value", "needle"),
    [
        ("EMBEDDING_MAX_CONCURRENCY", "many", "EMBEDDING_MAX_CONCURRENCY='many'"),
        ("EMBEDDING_MAX_CONCURRENCY", "0", "EMBEDDING_MAX_CONCURRENCY='0'"),
        ("CHAT_TIMEOUT_SECONDS", "-1", "CHAT_TIMEOUT_SECONDS"),
        ("GRAPH_DIALECT", "postgres", "GRAPH_DIALECT"),
        ("LLM_PROVIDER", "skynet", "LLM_PROVIDER"),
        ("NEO4J_URI", "http://x", "NEO4J_URI must start with"),
        (
            "EMBEDDING_PROVIDER",
            "jina",
            "EMBEDDING_API_KEY is required when EMBEDDING_PROVIDER=jina",
        ),
    ],
)
def test_invalid_values_fail_with_one_line_naming_the_variable(
    monkeypatch: pytest.MonkeyPatch, name: str, value: str, needle: str
) -> None:
    monkeypatch.setenv(name, value)
    with pytest.raises(ConfigError) as info:
        load_settings()
    message = str(info.value)
    assert needle in message
    assert "\n" not in message
    assert message.startswith("invalid configuration: ")


@pytest.mark.parametrize(
    ("env", "dialect"),
    [
        ({}, "arcadedb"),  # the embedded engine
        ({"NEO4J_URI": "neo4j://cluster:7687"}, "neo4j"),
        (
            {"NEO4J_URI": "bolt://graph:7687", "ARCADEDB_HTTP_URL": "http://graph:2480"},
            "arcadedb",  # an ArcadeDB server of its own
        ),
    ],
)
def test_graph_dialect_auto_follows_what_the_graph_settings_name(
    monkeypatch: pytest.MonkeyPatch, env: dict[str, str], dialect: str
) -> None:
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    s = load_settings()
    assert s.graph_dialect == dialect
    assert s.embedded_engine is ("NEO4J_URI" not in env)


@pytest.mark.parametrize(
    ("env", "needle"),
    [
        ({"ARCADEDB_HTTP_URL": "http://graph:2480"}, "ARCADEDB_HTTP_URL is for an ArcadeDB"),
        (
            {"NEO4J_URI": "bolt://graph:7687", "ARCADEDB_HTTP_URL": "graph:2480"},
            "ARCADEDB_HTTP_URL must start with http",
        ),
        (
            {"NEO4J_URI": "bolt://graph:7687", "GRAPH_DIALECT": "arcadedb"},
            "GRAPH_DIALECT=arcadedb with NEO4J_URI needs ARCADEDB_HTTP_URL",
        ),
    ],
)
def test_an_arcadedb_server_is_named_by_both_of_its_addresses(
    monkeypatch: pytest.MonkeyPatch, env: dict[str, str], needle: str
) -> None:
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(ConfigError, match=needle) as info:
        load_settings()
    assert "\n" not in str(info.value)


def test_secrets_are_never_echoed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LLM_PROVIDER", "openrouter")
    monkeypatch.setenv("API_KEY", "")
    with pytest.raises(ConfigError, match="LLM_API_KEY is required"):
        load_settings()
    monkeypatch.setenv("LLM_API_KEY", "sk-secret-value")
    s = load_settings()
    assert "sk-secret-value" not in repr(s)
    assert "sk-secret-value" not in str(s.summary())


def test_resolution_fills_the_raw_values_and_the_model_stays_frozen(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("GRAPH_DIALECT", "auto")
    monkeypatch.setenv("EMBEDDING_API_KEY", "jina-key")
    monkeypatch.setenv("EMBEDDING_MODEL", "my-model")
    s = load_settings()
    assert s.graph_dialect == "arcadedb"
    assert s.embedding_provider == "jina"
    assert s.embedding_base_url == "https://api.jina.ai/v1"
    assert s.embedding_model == "my-model"  # given: kept
    assert s.embedding_dimensions == 1024  # the provider's default
    assert (s.llm_provider, s.llm_base_url, s.llm_choice) == ("none", None, "extractive")
    with pytest.raises(ValidationError):
        s.embedding_model = "other"  # type: ignore[misc]


def test_an_unknown_provider_is_reported_not_resolved(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EMBEDDING_PROVIDER", "acme")
    with pytest.raises(ConfigError, match="EMBEDDING_PROVIDER='acme'"):
        load_settings()


def test_the_rooms_get_small_typed_configs_built_from_the_settings(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from agent_trio.service import embedding_config, engine_config, llm_config

    monkeypatch.setenv("LLM_PROVIDER", "openrouter")
    monkeypatch.setenv("LLM_API_KEY", "sk-secret-value")
    monkeypatch.setenv("EMBEDDING_BASE_URL", "http://127.0.0.1:9/v1")
    s = load_settings(
        agent_data_dir=tmp_path, engine_heap_mb=256, upstream_max_attempts=2, llm_max_concurrency=3
    )
    engine = engine_config(s)
    assert (engine.data_dir, engine.heap_mb, engine.start_timeout, engine.stop_grace) == (
        tmp_path,
        256,
        60,
        5,
    )
    embedding = embedding_config(s)
    assert (embedding.provider, embedding.model, embedding.dimensions) == (
        "openai",
        "text-embedding-3-small",
        1536,
    )
    assert embedding.upstream is not None
    assert embedding.upstream.base_url == "http://127.0.0.1:9/v1"
    assert (embedding.upstream.max_concurrency, embedding.upstream.max_attempts) == (3, 2)
    llm = llm_config(s)
    assert llm is not None
    assert (llm.provider, llm.model) == ("openrouter", "openai/gpt-4o-mini")
    assert llm.upstream.base_url == "https://openrouter.ai/api/v1"
    assert llm.upstream.extra_headers == {"X-Title": "agent-trio"}
    assert llm.upstream.max_concurrency == 3
    assert "sk-secret-value" not in repr(llm)
    assert llm_config(load_settings(llm_provider="none")) is None
    monkeypatch.delenv("EMBEDDING_BASE_URL")
    assert embedding_config(load_settings()).upstream is None  # local: no HTTP API
