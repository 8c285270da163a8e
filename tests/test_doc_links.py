"""Every relative link in the repository's Markdown leads somewhere: the file exists, and a fragment into a Markdown
file names one of its headings (README is the front door; a moved section must not leave it pointing nowhere)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.markdown import github_anchors, relative_links

ROOT = Path(__file__).resolve().parent.parent
DOCUMENTS = sorted(
    path
    for pattern in ("*.md", "docs/*.md", "*/README.md")
    for path in ROOT.glob(pattern)
    if not path.is_relative_to(ROOT / "tests")
)


def broken_links(document: Path) -> list[str]:
    broken = []
    for link in relative_links(document.read_text(encoding="utf-8")):
        target, _, fragment = link.partition("#")
        path = (document.parent / target).resolve() if target else document
        if not path.exists():
            broken.append(f"{link}: no such file")
        elif fragment and path.suffix == ".md" and fragment not in github_anchors(path.read_text(encoding="utf-8")):
            broken.append(f"{link}: no heading {fragment!r} in {path.name}")
    return broken


@pytest.mark.parametrize("document", DOCUMENTS, ids=lambda path: str(path.relative_to(ROOT)))
def test_relative_links_lead_somewhere(document: Path) -> None:
    assert broken_links(document) == []


def test_a_broken_link_and_a_missing_heading_are_found(tmp_path: Path) -> None:
    (tmp_path / "other.md").write_text("# Title\n\n## A section\n", encoding="utf-8")
    document = tmp_path / "doc.md"
    document.write_text(
        "[ok](other.md#a-section) [self](#here) [gone](missing.md) [moved](other.md#no-such)\n\n## Here\n\n"
        "```md\n[in code](nowhere.md)\n```\n[web](https://example.com/x.md)\n",
        encoding="utf-8",
    )
    assert broken_links(document) == ["missing.md: no such file", "other.md#no-such: no heading 'no-such' in other.md"]
