"""Writing a benchmark's figures into its own section of ``docs/benchmarks.md``.

Each benchmark owns the text between ``<!-- bench:NAME -->`` and
``<!-- /bench:NAME -->``; a run replaces that section (appending it the first
time) and leaves the others as they are.
"""

from __future__ import annotations

import re
from pathlib import Path

__all__ = ["BENCHMARKS_MD", "write_section"]

BENCHMARKS_MD = Path(__file__).resolve().parent.parent / "docs" / "benchmarks.md"

_HEADER = """# Benchmarks

Figures written by the scripts in `bench/`, each into its own section below; the
command that produced a section is in it. These machines are shared and noisy, so
comparisons are made side by side within one run (ratios), not across runs.
"""


def write_section(name: str, text: str, path: Path = BENCHMARKS_MD) -> None:
    """Replace (or append) the section ``name`` of the benchmarks document."""
    current = path.read_text() if path.exists() else _HEADER
    block = f"<!-- bench:{name} -->\n{text.strip()}\n<!-- /bench:{name} -->"
    pattern = re.compile(
        rf"<!-- bench:{re.escape(name)} -->.*?<!-- /bench:{re.escape(name)} -->", re.DOTALL
    )
    if pattern.search(current):
        updated = pattern.sub(lambda _: block, current)
    else:
        updated = current.rstrip() + "\n\n" + block + "\n"
    path.write_text(updated if updated.endswith("\n") else updated + "\n")
