"""Fixtures shared by the whole test suite."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from agent_trio import load_settings
from agent_trio.engine import EngineInfo
from tests._engine import BackgroundEngine


@pytest.fixture(scope="session")
def engine_info(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EngineInfo]:
    """One embedded engine for the whole session, on a temporary data directory.

    Started on first use (a few seconds) and stopped at the end of the session. It
    runs in a background thread under its own ``trio.run``, so sync and async tests
    alike can use it. Tests share it: a test that needs a schema of its own creates
    a database of its own through the HTTP API (``POST /api/v1/server``).
    """
    settings = load_settings(agent_data_dir=tmp_path_factory.mktemp("engine-data"))
    with BackgroundEngine(settings) as info:
        yield info
