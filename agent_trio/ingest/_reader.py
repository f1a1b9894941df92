"""Reading documents: files and folders to paths, text to :class:`SourceDocument`.

Text is normalised before anything else looks at it: a byte-order mark is dropped,
``\\r\\n`` and ``\\r`` become ``\\n``, Unicode is NFC, and surrounding blank space
is trimmed. YAML front matter (between a first line ``---`` and a closing ``---`` or
``...``) becomes the metadata; the title is an explicit one, else the front matter's
``title``, else the first Markdown heading, else a fallback (the file's stem, or the
first line of the text).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import math
import os
import unicodedata
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import yaml

from agent_trio._errors import IngestError
from agent_trio.document import SourceDocument, markdown_headings

__all__ = ["SUPPORTED_SUFFIXES", "iter_paths", "parse_document", "read_document", "source_for"]

#: file name endings that ingestion reads (compared case-insensitively)
SUPPORTED_SUFFIXES: frozenset[str] = frozenset({".md", ".markdown", ".txt"})

_FRONT_MATTER_CLOSERS = ("---", "...")
_MAX_FALLBACK_TITLE = 80
_MAX_METADATA_NODES = 10_000
#: libyaml's safe loader when PyYAML was built with it (its wheels are): the
#: pure-Python one took about half the time of reading and chunking a small document
_FAST_SAFE_LOADER: type[yaml.SafeLoader] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def iter_paths(paths: Iterable[str | os.PathLike[str]]) -> list[Path]:
    """The readable files named by ``paths``: files as given, folders searched recursively.

    Folders contribute their supported files (hidden files and folders skipped); a
    file given explicitly must have a supported suffix. The result is sorted and
    free of duplicates. A missing path or an unsupported file raises
    :class:`IngestError` naming it.
    """
    found: dict[Path, Path] = {}
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            candidates = _walk(path)
        elif path.is_file():
            if not _supported(path):
                raise IngestError(
                    f"{path}: unsupported file type {path.suffix or '(no suffix)'!r}; "
                    f"ingestion reads {', '.join(sorted(SUPPORTED_SUFFIXES))}"
                )
            candidates = [path]
        else:
            raise IngestError(f"{path}: no such file or folder")
        for candidate in candidates:
            found.setdefault(candidate.resolve(), candidate)
    return sorted(found.values(), key=lambda p: p.as_posix())


def read_document(path: str | os.PathLike[str], *, source: str | None = None) -> SourceDocument:
    """Read and parse one file. ``source`` defaults to :func:`source_for` the path."""
    file = Path(path)
    source = source or source_for(file)
    try:
        data = file.read_bytes()
    except OSError as exc:
        raise IngestError(f"{source}: cannot be read: {exc.strerror or exc}") from exc
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise IngestError(
            f"{source}: not UTF-8 text (invalid byte at offset {exc.start}); "
            "convert the file to UTF-8"
        ) from exc
    return _build(source, text, None, None, fallback_title=file.stem)


def source_for(path: str | os.PathLike[str]) -> str:
    """The ``source`` of a file, the same however the path was spelled.

    Relative to the working directory when the file is below it
    (``examples/corpus/a.md``), else absolute; in POSIX form, with ``..`` and
    symbolic links resolved. ``ingest docs/`` and ``ingest $PWD/docs`` therefore
    name, and update, the same documents.
    """
    resolved = Path(path).resolve()
    try:
        return resolved.relative_to(Path.cwd().resolve()).as_posix()
    except ValueError:
        return resolved.as_posix()


def parse_document(
    source: str,
    text: str,
    *,
    title: str | None = None,
    metadata: Mapping[str, Any] | None = None,
) -> SourceDocument:
    """Parse ``text`` read from ``source``; explicit ``title``/``metadata`` win over the text's."""
    return _build(source, text, title, metadata, fallback_title=None)


def _build(
    source: str,
    text: str,
    title: str | None,
    metadata: Mapping[str, Any] | None,
    *,
    fallback_title: str | None,
) -> SourceDocument:
    if "\x00" in text:
        raise IngestError(f"{source}: contains NUL characters; not a text document")
    text = unicodedata.normalize("NFC", text.removeprefix("\ufeff"))
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    front, body = _split_front_matter(source, text)
    merged = {**front, **_json_safe_mapping(source, metadata or {})}
    content = body.strip()
    chosen = (title or "").strip() or _title_from(merged, content, fallback_title) or source
    return SourceDocument(
        source=source,
        title=chosen,
        content=content,
        metadata=merged,
        content_hash=_content_hash(content, chosen, merged),
    )


def _split_front_matter(source: str, text: str) -> tuple[dict[str, Any], str]:
    lines = text.split("\n")
    if lines[0].rstrip() != "---":
        return {}, text
    for number, line in enumerate(lines[1:], start=1):
        if line.rstrip() in _FRONT_MATTER_CLOSERS:
            block = "\n".join(lines[1:number])
            return _parse_front_matter(source, block), "\n".join(lines[number + 1 :])
    raise IngestError(
        f"{source}: front matter opened with '---' on line 1 is never closed; "
        "end it with a line '---'"
    )


def _parse_front_matter(source: str, block: str) -> dict[str, Any]:
    try:
        loaded = _load_yaml(block)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 2}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or type(exc).__name__
        raise IngestError(f"{source}: malformed front matter{where}: {problem}") from exc
    if loaded is None:
        return {}
    if not isinstance(loaded, dict):
        raise IngestError(
            f"{source}: front matter must be a mapping of keys to values, "
            f"got {type(loaded).__name__}"
        )
    return _json_safe_mapping(source, loaded)


def _load_yaml(block: str) -> Any:
    try:
        return yaml.load(block, Loader=_FAST_SAFE_LOADER)
    except yaml.YAMLError:
        # said again by the pure-Python loader: its messages name the line at fault
        # (libyaml's may name the line after it)
        return yaml.safe_load(block)


def _json_safe_mapping(source: str, mapping: Mapping[Any, Any]) -> dict[str, Any]:
    budget = [_MAX_METADATA_NODES]
    try:
        return {str(key): _json_safe(value, budget) for key, value in mapping.items()}
    except RecursionError as exc:
        raise IngestError(f"{source}: metadata is nested too deeply or refers to itself") from exc
    except _TooLarge as exc:
        raise IngestError(
            f"{source}: metadata has more than {_MAX_METADATA_NODES} values; keep it small"
        ) from exc


class _TooLarge(Exception):
    pass


def _json_safe(value: Any, budget: list[int]) -> Any:
    """``value`` with dates as ISO strings, sets and tuples as lists, odd scalars as text.

    ``budget`` counts the values still allowed, so aliases that expand to a huge tree
    (YAML anchors referring to anchors) fail fast instead of exhausting memory.
    """
    budget[0] -= 1
    if budget[0] < 0:
        raise _TooLarge
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else str(value)
    if isinstance(value, dt.datetime | dt.date | dt.time):
        return value.isoformat()
    if isinstance(value, Mapping):
        return {str(k): _json_safe(v, budget) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        items = [_json_safe(v, budget) for v in value]
        return sorted(items, key=repr) if isinstance(value, set | frozenset) else items
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    return str(value)


def _title_from(metadata: Mapping[str, Any], content: str, fallback: str | None) -> str:
    declared = metadata.get("title")
    if isinstance(declared, str | int | float) and not isinstance(declared, bool):
        declared = str(declared).strip()
    if isinstance(declared, str) and declared:
        return declared
    headings = markdown_headings(content)
    if headings:
        return headings[0].title
    if fallback:
        return fallback
    first_line = next((line.strip() for line in content.split("\n") if line.strip()), "")
    return first_line[:_MAX_FALLBACK_TITLE].rstrip()


def _content_hash(content: str, title: str, metadata: Mapping[str, Any]) -> str:
    canonical = json.dumps(
        {"content": content, "metadata": metadata, "title": title},
        sort_keys=True,
        ensure_ascii=False,
        separators=(",", ":"),
    )
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def _supported(path: Path) -> bool:
    return path.suffix.lower() in SUPPORTED_SUFFIXES


def _walk(folder: Path) -> list[Path]:
    files: list[Path] = []
    for root, dirs, names in os.walk(folder):
        dirs[:] = [d for d in dirs if not d.startswith(".")]
        visible = (Path(root, name) for name in names if not name.startswith("."))
        files.extend(path for path in visible if _supported(path))
    return files
