"""Every relative link and #anchor in README.md, docs/*.md and the workflows' comments names something that exists.

An anchor is a heading's slug as GitHub makes it: the heading's text as rendered (a code span or a
link keeps its text, emphasis marks go), lower-cased, every character but letters, digits, spaces,
hyphens and underscores dropped, each space a hyphen; a slug seen before on the page gets `-1`,
`-2`, ... A workflow's comments point at pages as `docs/page.md#anchor` or `README.md#anchor`, and
name files by their path from the repository's root: each must exist too.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import ROOT

PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
WORKFLOWS = sorted((ROOT / ".github" / "workflows").glob("*.y*ml"))
FENCE = re.compile(r"^ *```.*?^ *```", re.M | re.S)
LINK = re.compile(r"\]\(([^)\s]+)\)")
HEADING = re.compile(r"^#{1,6} +(.+?) *#*$", re.M)
# In a workflow's comments: a page with an optional anchor, a page with a quoted section, a repository path.
PAGE_REF = re.compile(r"\b(README\.md|docs/[\w-]+\.md)(?:#([\w-]+)|,? \"([^\"]+)\")?")
PATH_REF = re.compile(r"(?<![\w/.-])((?:\.github|docs|tests|tools|modal_jobs|examples|local_hub|bench)/[\w./-]*\w)")


def prose(text: str) -> str:
    """A page without its code blocks and code spans, where a link is only an example."""
    return re.sub(r"`[^`\n]*`", "", FENCE.sub("", text))


def slug(heading: str) -> str:
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", heading)  # a link or image: its text
    text = text.replace("`", "").replace("*", "")
    text = re.sub(r"[^\w\- ]", "", text.lower())
    return text.replace(" ", "-")


def anchors(page: Path) -> set[str]:
    seen: dict[str, int] = {}
    found = set()
    for heading in HEADING.findall(FENCE.sub("", page.read_text(encoding="utf-8"))):
        base = slug(heading)
        count = seen.get(base, 0)
        seen[base] = count + 1
        found.add(base if count == 0 else f"{base}-{count}")
    return found


def links(page: Path) -> Iterator[tuple[Path, str | None]]:
    """Each relative link of a page: the file it names (the page itself for `#anchor`) and its anchor."""
    for target in LINK.findall(prose(page.read_text(encoding="utf-8"))):
        if re.match(r"[a-z][a-z0-9+.-]*:", target):  # https:, mailto:: not ours to check
            continue
        path, _, anchor = target.partition("#")
        yield (page.parent / path).resolve() if path else page, anchor or None


def comment_text(workflow: Path) -> str:
    return "\n".join(
        line.split("#", 1)[1] for line in workflow.read_text(encoding="utf-8").splitlines() if "# " in line
    )


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_every_link_of_a_page_names_a_file_and_heading_that_exist(page: Path):
    broken = []
    for target, anchor in links(page):
        if not target.exists():
            broken.append(f"{target.relative_to(ROOT)}: no such file")
        elif anchor is not None and (target.suffix != ".md" or anchor not in anchors(target)):
            broken.append(f"{target.relative_to(ROOT)}#{anchor}: no such heading")
    assert broken == [], f"{page.name} links to what does not exist"


@pytest.mark.parametrize("workflow", WORKFLOWS, ids=lambda p: p.name)
def test_every_page_section_and_path_a_workflow_comment_names_exists(workflow: Path):
    comments = comment_text(workflow)
    broken = []
    for page, anchor, section in PAGE_REF.findall(comments):
        wanted = anchor or (slug(section) if section else "")
        if not (ROOT / page).is_file():
            broken.append(f"{page}: no such file")
        elif wanted and wanted not in anchors(ROOT / page):
            broken.append(f"{page}#{wanted}: no such heading")
    broken += [f"{path}: no such path" for path in PATH_REF.findall(comments) if not (ROOT / path).exists()]
    assert broken == [], f"{workflow.name}'s comments point at what does not exist"


def test_the_slugs_are_githubs():
    assert slug("Set-up: from a fork to the first download") == "set-up-from-a-fork-to-the-first-download"
    assert slug("`models.lock`: exactly which commit and files") == "modelslock-exactly-which-commit-and-files"
    assert slug("The test-only variable `MODEL_CACHE_LOCAL_DIR`") == "the-test-only-variable-model_cache_local_dir"
    assert slug("[On Modal](docs/modal.md) & more") == "on-modal--more"


def test_a_comment_naming_a_missing_section_is_caught(tmp_path: Path):
    """The form the workflows once used, README.md "Secrets", after that section went."""
    refs = PAGE_REF.findall('# the set-up: README.md, "Secrets"; see docs/workflows.md#secrets')
    assert refs == [("README.md", "", "Secrets"), ("docs/workflows.md", "secrets", "")]
    assert slug("Secrets") not in anchors(ROOT / "README.md")
    assert "secrets" in anchors(ROOT / "docs" / "workflows.md")
