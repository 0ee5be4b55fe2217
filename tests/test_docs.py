"""The README and the docs/ pages hold together: every relative link (and image) in README.md and
docs/*.md names a file that exists and, after ``#``, a heading of that file; the README's map of
docs/ lists every page."""

import re
from pathlib import Path

import pytest

from support import REPO

PAGES = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)")


def prose(text: str) -> str:
    """The text outside fenced code blocks and inline code spans (where brackets are code, not links)."""
    text = re.sub(r"^```.*?^```", "", text, flags=re.S | re.M)
    return re.sub(r"`[^`\n]*`", "", text)


def heading_anchors(path: Path) -> set[str]:
    """GitHub's anchors for a Markdown file's headings: lower case, punctuation dropped, spaces as
    hyphens; a repeated heading gets ``-1``, ``-2`` ..."""
    anchors, seen = set(), {}
    for line in re.sub(r"^```.*?^```", "", path.read_text(), flags=re.S | re.M).splitlines():
        heading = re.match(r"#{1,6}\s+(.*?)\s*#*\s*$", line)
        if not heading:
            continue
        slug = re.sub(r"[^\w\- ]", "", heading.group(1).lower()).replace(" ", "-")
        count = seen.get(slug, 0)
        seen[slug] = count + 1
        anchors.add(slug if count == 0 else f"{slug}-{count}")
    return anchors


def relative_links(page: Path) -> list[str]:
    return [target for target in LINK.findall(prose(page.read_text()))
            if not re.match(r"[a-z][a-z0-9+.-]*:", target)]  # http:, https:, mailto: ...


@pytest.mark.parametrize("page", PAGES, ids=lambda page: str(page.relative_to(REPO)))
def test_every_relative_link_points_at_an_existing_file_and_heading(page):
    broken = []
    for target in relative_links(page):
        file_part, _, anchor = target.partition("#")
        linked = (page.parent / file_part).resolve() if file_part else page
        if not linked.exists():
            broken.append(f"{target}: no file {linked}")
        elif anchor and anchor not in heading_anchors(linked):
            broken.append(f"{target}: no heading '#{anchor}' in {linked.relative_to(REPO)}")
    assert not broken, f"{page.relative_to(REPO)}: " + "; ".join(broken)


def test_the_link_check_sees_links_and_refuses_broken_ones(tmp_path):
    """The checker itself: a link in prose is found, one in code is not, a missing anchor is."""
    page = tmp_path / "page.md"
    page.write_text("# A title: with `code`\n\nsee [x](other.md#nowhere) and [y](#a-title-with-code)\n"
                    "`[not](a-link.md)`\n```\n[nor](this.md)\n```\n")
    assert relative_links(page) == ["other.md#nowhere", "#a-title-with-code"]
    assert "a-title-with-code" in heading_anchors(page)
    assert "nowhere" not in heading_anchors(page)


def test_the_readme_maps_every_docs_page():
    linked = {(REPO / target.partition("#")[0]).resolve() for target in relative_links(REPO / "README.md")}
    unmapped = [page.name for page in PAGES[1:] if page.resolve() not in linked]
    assert not unmapped, f"README.md's map of docs/ leaves out {unmapped}"
