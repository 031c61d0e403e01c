"""The user docs stay short and honest: the README fits on a few screens, every relative link in the README,
CONTRIBUTING.md and docs/ leads to a file that exists, and no page points into the developers' machine."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PAGES = [REPO / "README.md", REPO / "CONTRIBUTING.md", *sorted((REPO / "docs").glob("*.md"))]
# [text](target): the target up to a space, ')' or '#'; skipped when it has a scheme (https:, mailto:).
LINK = re.compile(r"\]\(([^)\s#]*)(#[^)\s]*)?\)")


def relative_links(page: Path) -> list[str]:
    return [t for t, _ in LINK.findall(page.read_text(encoding="utf-8")) if t and not re.match(r"[a-z]+:", t)]


def test_the_readme_is_at_most_16_kb():
    size = (REPO / "README.md").stat().st_size
    assert size <= 16 * 1024, f"README.md is {size} bytes: move reference material to docs/"


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(REPO)))
def test_every_relative_link_points_to_an_existing_file(page):
    missing = [t for t in relative_links(page) if not (page.parent / t).exists()]
    assert not missing, f"{page.name} links to missing files: {missing}"


def test_the_link_check_sees_links():
    """The pattern finds the README's links to docs/, so an empty match cannot pass the test above."""
    assert "docs/commands.md" in relative_links(REPO / "README.md")


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(REPO)))
def test_no_page_names_a_path_on_the_developers_machine(page):
    assert "../shared" not in page.read_text(encoding="utf-8"), f"{page.name}: write DATA=path/to/posts.csv"
