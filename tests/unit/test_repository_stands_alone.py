"""The repository stands alone: nothing cites a document it does not contain, and no page names a
path of the machine it was written on.

The compatibility facts the code relies on live in docs/compatibility.md; code, tests, benchmarks and
docs cite its sections by anchor (``docs/compatibility.md#routes``). Every cited anchor must exist.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.support.server_process import REPO_ROOT

SCANNED_DIRS = ("lama_cleaner", "tests", "benchmarks", "docs", "scripts", ".ci")
TEXT_SUFFIXES = {".py", ".md", ".toml", ".txt", ".cfg", ".sh", ".yml", ".yaml", ".json", ".sql", ".html", ""}
OLD_CITATION = "contract" + " §"  # split so that this file does not match itself
MACHINE_PATH = re.compile(r"(?<![\w:/.])/(?:work|tmp|root|home)/")
"""An absolute path on a build machine (``ipc:///tmp/x`` in a test's input is a URL, not a path)."""
COMPAT = REPO_ROOT / "docs" / "compatibility.md"
CITATION = re.compile(r"compatibility\.md#([a-z0-9-]+)((?:(?:,| and|, and) #[a-z0-9-]+)*)")


def _text_files() -> list[Path]:
    files = [p for p in REPO_ROOT.glob("*") if p.is_file() and p.suffix in {".md", ".py", ".toml", ".cfg"}]
    for top in SCANNED_DIRS:
        for path in (REPO_ROOT / top).rglob("*"):
            if path.is_file() and path.suffix in TEXT_SUFFIXES and "__pycache__" not in path.parts:
                if "static" in path.parts or path.suffix == "" and path.stat().st_size > 200_000:
                    continue
                files.append(path)
    return files


def _read(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        return ""


FILES = _text_files()


def test_no_citation_of_a_document_outside_the_repository():
    offending = [str(p.relative_to(REPO_ROOT)) for p in FILES if OLD_CITATION in _read(p)]
    assert offending == [], f"cite docs/compatibility.md#<section> instead: {offending}"


@pytest.mark.parametrize("doc", sorted((REPO_ROOT / "docs").rglob("*.md")) + sorted(REPO_ROOT.glob("*.md")))
def test_docs_name_no_path_of_a_build_machine(doc):
    hits = [line for line in _read(doc).splitlines() if MACHINE_PATH.search(line)]
    assert hits == [], f"{doc.relative_to(REPO_ROOT)} names a machine path: {hits}"


def _anchors() -> set[str]:
    return set(re.findall(r'<a id="([a-z0-9-]+)"></a>', _read(COMPAT)))


def test_every_cited_section_of_the_compatibility_page_exists():
    anchors = _anchors()
    assert {"routes", "inpaint-form", "socketio", "models", "cli", "concurrency"} <= anchors
    cited: dict[str, set[str]] = {}
    for path in FILES:
        for first, more in CITATION.findall(_read(path)):
            for anchor in [first, *re.findall(r"#([a-z0-9-]+)", more)]:
                cited.setdefault(anchor, set()).add(str(path.relative_to(REPO_ROOT)))
    assert len(cited) >= 10, "the code cites the page"
    missing = {anchor: sorted(paths) for anchor, paths in cited.items() if anchor not in anchors}
    assert missing == {}, f"docs/compatibility.md has no section with these anchors: {missing}"


def test_the_page_links_to_its_own_sections_correctly():
    text = _read(COMPAT)
    links = set(re.findall(r"\]\(#([a-z0-9-]+)\)", text))
    assert links <= _anchors(), links - _anchors()
