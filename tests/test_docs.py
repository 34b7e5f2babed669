"""The README is a door: every relative link in README.md and docs/*.md leads to a file that
exists (and, for a `#section` of a Markdown page, to a heading that exists), and every page in
docs/ can be reached from the README."""
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)\)")  # [text](target) and ![alt](target)
CODE = re.compile(r"```.*?```|`[^`\n]*`", re.S)  # links inside code are not links


def links(page: Path) -> list[str]:
    return LINK.findall(CODE.sub("", page.read_text()))


def relative(target: str) -> bool:
    return not re.match(r"[a-z][a-z0-9+.-]*:", target)  # http:, https:, mailto: ...


def anchors(page: Path) -> set[str]:
    """GitHub's heading ids: lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"```.*?```", "", page.read_text(), flags=re.S)  # a `# comment` in code is no heading
    headings = re.findall(r"^#{1,6} +(.+?) *$", text, re.M)
    return {re.sub(r"[^\w\- ]", "", h.lower()).replace(" ", "-") for h in headings}


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_relative_links_resolve(page):
    bad = []
    for target in filter(relative, links(page)):
        path, _, anchor = target.partition("#")
        dest = (page.parent / path).resolve() if path else page
        if not dest.exists():
            bad.append(f"{target}: no file {dest.relative_to(ROOT) if dest.is_relative_to(ROOT) else dest}")
        elif anchor and dest.suffix == ".md" and anchor not in anchors(dest):
            bad.append(f"{target}: no heading #{anchor} in {dest.relative_to(ROOT)}")
    assert not bad, f"broken links in {page.relative_to(ROOT)}: " + "; ".join(dict.fromkeys(bad))


def test_every_docs_page_is_linked_from_the_readme():
    linked = {(ROOT / t.partition("#")[0]).resolve() for t in links(ROOT / "README.md") if relative(t)}
    unlinked = [p.name for p in PAGES[1:] if p.resolve() not in linked]
    assert not unlinked, f"docs pages the README does not link: {unlinked}"


def test_link_check_sees_links_and_anchors(tmp_path):
    """The checker itself: a link, an image and an anchor are found; links in code are not."""
    page = tmp_path / "p.md"
    page.write_text("# A title: here\nsee [x](other.md#a-title-here) and ![i](img.png), `[no](code.md)`\n"
                    "```\n[no](block.md)\n```\n")
    assert links(page) == ["other.md#a-title-here", "img.png"]
    assert anchors(page) == {"a-title-here"}
    assert not relative("https://example.org") and relative("docs/x.md")
