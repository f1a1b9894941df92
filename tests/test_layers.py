"""Data flows one way: a room imports only the rooms below it, at any depth of its
code (an import inside a function is an import all the same)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "agent_trio"

#: room -> modules it must not import: the rooms above it, and Quart below ``app``;
#: the engine and the upstream clients take typed configs, not the settings
_ABOVE = {
    "document": [
        "agent_trio.extract",
        "agent_trio.ingest",
        "agent_trio.graph",
        "agent_trio.upstream",
        "agent_trio.service",
        "agent_trio.app",
        "agent_trio._cli",
        "agent_trio._settings",
        "quart",
    ],
    "engine": [
        "agent_trio.service",
        "agent_trio.app",
        "agent_trio._cli",
        "agent_trio._settings",
        "quart",
    ],
    "graph": [
        "agent_trio.service",
        "agent_trio.app",
        "agent_trio.ingest",
        "agent_trio.extract",
        "quart",
    ],
    "extract": [
        "agent_trio.service",
        "agent_trio.app",
        "agent_trio._cli",
        "agent_trio._ingest_cli",
        "agent_trio.ingest",
        "quart",
    ],
    "upstream": [
        "agent_trio.service",
        "agent_trio.app",
        "agent_trio._cli",
        "agent_trio._settings",
        "quart",
    ],
    "ingest": [
        "agent_trio.service",
        "agent_trio.app",
        "agent_trio._cli",
        "agent_trio._ingest_cli",
        "quart",
    ],
    "search": ["agent_trio.service", "agent_trio.app", "agent_trio._cli", "quart"],
    "service": ["agent_trio.app", "agent_trio._cli", "agent_trio._ingest_cli", "quart"],
}


def _imports(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


@pytest.mark.parametrize("room", sorted(_ABOVE))
def test_a_room_does_not_import_the_rooms_above_it(room: str) -> None:
    files = sorted((PACKAGE / room).glob("*.py"))
    assert files
    found = {
        f"{path.name}: {name}"
        for path in files
        for name in _imports(path)
        if any(name == above or name.startswith(above + ".") for above in _ABOVE[room])
    }
    assert not found
