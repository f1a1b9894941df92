"""Reading documents: paths, decoding, front matter, titles, hashes and ids."""

from __future__ import annotations

import json
import time
import uuid
from pathlib import Path

import pytest

from agent_trio import IngestError
from agent_trio.document import SourceDocument, document_id_for
from agent_trio.ingest import iter_paths, parse_document, read_document

FRONT_MATTER_DOC = """\
---
title: Quarterly notes
author: Ana Lopes
date: 2021-03-04
published: 2021-03-04T10:30:00+02:00
tags: [alpha, beta]
---

# A heading that is not the title

Body text.
"""


def test_front_matter_becomes_json_safe_metadata_and_title() -> None:
    doc = parse_document("notes/q1.md", FRONT_MATTER_DOC)

    assert doc.title == "Quarterly notes"
    assert doc.metadata == {
        "title": "Quarterly notes",
        "author": "Ana Lopes",
        "date": "2021-03-04",
        "published": "2021-03-04T10:30:00+02:00",
        "tags": ["alpha", "beta"],
    }
    assert doc.content == "# A heading that is not the title\n\nBody text."
    assert "---" not in doc.content


def test_unusual_yaml_values_are_made_json_safe() -> None:
    text = (
        "---\n"
        "when: 2020-01-02 03:04:05\n"
        "numbers: !!set {3: null, 1: null}\n"
        "ratio: .nan\n"
        "nested: {day: 2019-12-31, list: [2018-01-01]}\n"
        "1999: old key\n"
        "---\nBody"
    )
    doc = parse_document("odd.md", text)

    json.dumps(doc.metadata, allow_nan=False)  # raises if anything is not plain JSON
    assert doc.metadata["when"] == "2020-01-02T03:04:05"
    assert doc.metadata["numbers"] == [1, 3]
    assert doc.metadata["ratio"] == "nan"
    assert doc.metadata["nested"] == {"day": "2019-12-31", "list": ["2018-01-01"]}
    assert doc.metadata["1999"] == "old key"


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("---\ntitle: [unclosed\n---\nBody", "malformed front matter"),
        ("---\n- just\n- a list\n---\nBody", "must be a mapping"),
        ("---\njust a string\n---\nBody", "must be a mapping"),
        ("---\ntitle: no end\n\nBody without a closing line", "never closed"),
        ("---\nx: !!python/object:os.system {}\n---\nBody", "malformed front matter"),
    ],
)
def test_bad_front_matter_is_an_ingest_error_naming_source_and_reason(
    text: str, reason: str
) -> None:
    with pytest.raises(IngestError, match=reason) as caught:
        parse_document("docs/broken.md", text)
    assert "docs/broken.md" in str(caught.value)


def test_front_matter_alias_bomb_fails_fast() -> None:
    lines = ["---", "a0: [x, x, x, x, x, x, x, x, x, x]"]
    lines += [f"a{i}: &a{i} [*a{i - 1}, *a{i - 1}, *a{i - 1}, *a{i - 1}]" for i in range(1, 12)]
    lines[1] = "a0: &a0 [x, x, x, x, x, x, x, x, x, x]"
    text = "\n".join([*lines, "---", "Body"])
    started = time.process_time()  # CPU time: the work done, however busy the machine
    with pytest.raises(IngestError, match="more than"):
        parse_document("bomb.md", text)
    assert time.process_time() - started < 2


def test_self_referencing_front_matter_is_an_ingest_error() -> None:
    with pytest.raises(IngestError, match=r"loop\.md: .*refers to itself"):
        parse_document("loop.md", "---\nloop: &x [*x]\n---\nBody")


def test_empty_front_matter_is_empty_metadata() -> None:
    doc = parse_document("e.md", "---\n---\n# Heading\ntext")
    assert doc.metadata == {}
    assert doc.title == "Heading"


@pytest.mark.parametrize(
    ("text", "title"),
    [
        ("---\ntitle: From front matter\n---\n# Heading\nBody", "From front matter"),
        ("Intro line\n\n## Second-level heading ##\nBody", "Second-level heading"),
        ("```\n# inside code\n```\n\n# Real heading", "Real heading"),
        ("\n\n  First line of plain text  \nSecond line", "First line of plain text"),
    ],
)
def test_title_falls_back_from_front_matter_to_heading_to_first_line(text: str, title: str) -> None:
    assert parse_document("src", text).title == title


def test_explicit_title_and_metadata_win_over_the_text() -> None:
    doc = parse_document(
        "api", FRONT_MATTER_DOC, title="  Given title ", metadata={"author": "Override"}
    )
    assert doc.title == "Given title"
    assert doc.metadata["author"] == "Override"
    assert doc.metadata["tags"] == ["alpha", "beta"]


def test_title_of_an_empty_document_is_the_source() -> None:
    assert parse_document("empty-source", "   \n").title == "empty-source"


def test_bom_and_crlf_do_not_change_content_or_hash() -> None:
    plain = parse_document("a.md", FRONT_MATTER_DOC)
    windows = parse_document("a.md", "\ufeff" + FRONT_MATTER_DOC.replace("\n", "\r\n"))
    old_mac = parse_document("a.md", FRONT_MATTER_DOC.replace("\n", "\r"))

    assert windows == plain
    assert old_mac == plain
    assert "\r" not in windows.content


def test_content_hash_covers_content_title_and_metadata() -> None:
    base = parse_document("a.md", "# T\n\nBody")
    assert parse_document("a.md", "\n\n# T\n\nBody\n\n").content_hash == base.content_hash
    assert parse_document("b.md", "# T\n\nBody").content_hash == base.content_hash
    changed = [
        parse_document("a.md", "# T\n\nBody!"),
        parse_document("a.md", "# T\n\nBody", title="Other"),
        parse_document("a.md", "# T\n\nBody", metadata={"k": 1}),
        parse_document("a.md", "# T\n\nBody", metadata={"k": "1"}),
    ]
    hashes = {doc.content_hash for doc in changed}
    assert base.content_hash not in hashes
    assert len(hashes) == len(changed)
    assert all(len(h) == 64 and int(h, 16) >= 0 for h in hashes)


def test_document_id_depends_on_source_only_and_is_stable() -> None:
    first = parse_document("corpus/a.md", "one")
    assert first.document_id == parse_document("corpus/a.md", "two").document_id
    assert first.document_id != parse_document("corpus/b.md", "one").document_id
    assert uuid.UUID(first.document_id).version == 5
    assert first.document_id == document_id_for("corpus/a.md")
    # Stored documents are addressed by this id: it must not change between releases.
    assert document_id_for("corpus/a.md") == "7ad3dcaf-e5fc-5711-8eb7-5e36cb249e2a"


def test_source_document_is_frozen() -> None:
    doc = parse_document("a", "b")
    with pytest.raises(AttributeError):
        doc.title = "changed"  # type: ignore[misc]


def test_read_document_uses_path_as_source_and_stem_as_fallback_title(tmp_path: Path) -> None:
    file = tmp_path / "meeting-notes.txt"
    file.write_bytes(b"\xef\xbb\xbfjust some words\r\nand more\r\n")
    doc = read_document(file)

    assert doc.source == file.as_posix()
    assert doc.title == "meeting-notes"
    assert doc.content == "just some words\nand more"
    assert read_document(file, source="custom").source == "custom"


def test_read_document_rejects_non_utf8_with_the_offset(tmp_path: Path) -> None:
    file = tmp_path / "latin1.md"
    file.write_bytes("caf\xe9".encode("latin-1"))
    with pytest.raises(IngestError, match=r"latin1\.md: not UTF-8 text.*offset 3"):
        read_document(file)


def test_read_document_rejects_binary_content(tmp_path: Path) -> None:
    file = tmp_path / "blob.md"
    file.write_bytes(b"text\x00\x01\x02")
    with pytest.raises(IngestError, match="NUL"):
        read_document(file)


def test_read_document_of_missing_file_or_folder_is_an_ingest_error(tmp_path: Path) -> None:
    with pytest.raises(IngestError, match=r"missing\.md"):
        read_document(tmp_path / "missing.md")
    with pytest.raises(IngestError, match="cannot be read"):
        read_document(tmp_path)


def _touch(root: Path, *names: str) -> None:
    for name in names:
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("x", encoding="utf-8")


def test_iter_paths_walks_folders_sorted_and_filtered(tmp_path: Path) -> None:
    _touch(
        tmp_path,
        "b.md",
        "a.txt",
        "nested/deeper/c.markdown",
        "nested/UPPER.MD",
        "nested/skip.pdf",
        "nested/noext",
        ".hidden/secret.md",
        "nested/.dot.md",
    )
    found = iter_paths([tmp_path])
    assert [p.relative_to(tmp_path).as_posix() for p in found] == [
        "a.txt",
        "b.md",
        "nested/UPPER.MD",
        "nested/deeper/c.markdown",
    ]


def test_iter_paths_is_deterministic_and_removes_duplicates(tmp_path: Path) -> None:
    _touch(tmp_path, "one.md", "sub/two.md")
    given = [tmp_path / "sub", tmp_path, tmp_path / "one.md", str(tmp_path / "one.md")]
    first = iter_paths(given)
    assert first == iter_paths(reversed(given))
    assert sorted(p.name for p in first) == ["one.md", "two.md"]


def test_iter_paths_rejects_explicit_unsupported_file(tmp_path: Path) -> None:
    _touch(tmp_path, "report.pdf", "notes")
    with pytest.raises(IngestError, match=r"report\.pdf.*unsupported file type '\.pdf'"):
        iter_paths([tmp_path / "report.pdf"])
    with pytest.raises(IngestError, match="no suffix"):
        iter_paths([tmp_path / "notes"])


def test_iter_paths_rejects_missing_path(tmp_path: Path) -> None:
    with pytest.raises(IngestError, match=r"nowhere\.md: no such file or folder"):
        iter_paths([tmp_path / "nowhere.md"])


def test_iter_paths_of_empty_folder_is_empty(tmp_path: Path) -> None:
    assert iter_paths([tmp_path]) == []


def test_parse_document_returns_source_document() -> None:
    doc = parse_document("s", "# Title\nBody")
    assert isinstance(doc, SourceDocument)
    assert (doc.source, doc.title, doc.content) == ("s", "Title", "# Title\nBody")


def test_a_file_has_one_source_however_its_path_is_spelled(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "a.md").write_text("# A\n\ntext\n")
    monkeypatch.chdir(tmp_path)
    spellings = ["docs/a.md", "./docs/../docs/a.md", str(tmp_path / "docs" / "a.md")]
    docs = [read_document(spelling) for spelling in spellings]
    assert {d.source for d in docs} == {"docs/a.md"}
    assert len({d.document_id for d in docs}) == 1
    monkeypatch.chdir(tmp_path / "docs")
    assert read_document("a.md").source == "a.md"
    (tmp_path / "elsewhere").mkdir()
    monkeypatch.chdir(tmp_path / "elsewhere")
    assert (
        read_document(tmp_path / "docs" / "a.md").source == (tmp_path / "docs" / "a.md").as_posix()
    )
