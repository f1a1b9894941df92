"""The Java runtime and the engine's jars, as shipped by the ``arcadedb-embedded`` wheel."""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from pathlib import Path

from agent_trio._errors import EngineError

__all__ = ["Runtime", "find_runtime"]

_PACKAGE = "arcadedb_embedded"


@dataclass(frozen=True)
class Runtime:
    java: Path
    classpath: str


def find_runtime() -> Runtime:
    """Locate ``jre/bin/java`` and ``jars/`` inside the installed package.

    ``find_spec`` finds the package without importing it (its import starts JPype,
    which the engine process does not need).
    """
    spec = importlib.util.find_spec(_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise EngineError(
            f"the embedded engine needs the {_PACKAGE!r} package: install arcadedb-embedded, "
            "or set NEO4J_URI to use an external graph server"
        )
    package = Path(next(iter(spec.submodule_search_locations)))
    java, jars = package / "jre" / "bin" / "java", package / "jars"
    if not java.is_file() or not jars.is_dir():
        raise EngineError(f"{package} has no Java runtime (jre/bin/java) or no jars/ folder")
    return Runtime(java=java, classpath=str(jars / "*"))
