"""The README is a front page (at most 400 lines, the team's two commands), and it and the pages under docs/ stay
true to the repository: every relative link resolves (an #anchor to a heading of its page), every page is linked
from the README, and every repository path the text names exists (after files move, this lists what to fix)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from deploys.tools import readme

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
PAGES = [README, *sorted((ROOT / "docs").glob("*.md"))]
MAX_README_LINES = 400
LINK = re.compile(r"\]\(([^)\s]+)\)")
# A path in this repository, as the text names it (not inside a longer word or a {placeholder}/… path).
REPO_PATH = re.compile(r"(?<![\w/.{}<>~$-])((?:config\.py|(?:deploys|facts|verify|tests|templates|inventories|docs)/[\w./-]*[\w/]))")
NOT_IN_THE_REPOSITORY = {
    "inventories/group_data/secrets.sops.yaml": "the vault the operator creates (secrets.example.yaml is tracked)",
    "docs/openapi.json": "a file of huggingface/text-embeddings-inference, cited as the source",
}


def _anchor(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def _headings(page: Path) -> set[str]:
    anchors, fence = set(), False
    for line in page.read_text().splitlines():
        if line.startswith("```"):
            fence = not fence
        elif not fence and (m := re.match(r"#+ (.*)", line)):
            anchors.add(_anchor(m.group(1)))
    return anchors


def _outside_fences(text: str) -> str:
    return re.sub(r"^```.*?^```", "", text, flags=re.S | re.M)


def test_readme_is_a_front_page() -> None:
    lines = README.read_text().splitlines()
    assert len(lines) <= MAX_README_LINES, f"README.md has {len(lines)} lines; move reference text to docs/ (at most {MAX_README_LINES})"
    text = "\n".join(lines)
    for command in ("make sandbox", "make test"):
        assert re.search(rf"^{command}\b", text, re.M), f"README.md's quick start lacks `{command}`"
    assert "pyinfra inventories/prod.py deploys/all.py" in text, "README.md lacks the main command"


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_relative_link_resolves(page: Path) -> None:
    broken = []
    for target in LINK.findall(_outside_fences(page.read_text())):
        if re.match(r"[a-z]+:", target):
            continue  # https:, mailto:
        path, _, anchor = target.partition("#")
        resolved = (page.parent / path).resolve() if path else page
        if not resolved.exists():
            broken.append(f"{target}: no such file")
        elif anchor and resolved.suffix == ".md" and anchor not in _headings(resolved):
            broken.append(f"{target}: no heading #{anchor} in {resolved.relative_to(ROOT)}")
    assert not broken, f"{page.relative_to(ROOT)}: {broken}"


def test_every_docs_page_is_linked_from_the_readme() -> None:
    linked = {(ROOT / target.partition("#")[0]).resolve() for target in LINK.findall(README.read_text())}
    orphans = [str(p.relative_to(ROOT)) for p in PAGES[1:] if p.resolve() not in linked]
    assert not orphans, f"docs pages the README does not link: {orphans}"


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_repository_path_named_exists(page: Path) -> None:
    files = set(readme.tracked(ROOT)) | {str(p.relative_to(ROOT)) for p in PAGES}
    dirs = {str(Path(f).parent) + "/" for f in files}
    dirs |= {str(parent) + "/" for f in files for parent in Path(f).parents}
    stale = []
    for match in REPO_PATH.finditer(page.read_text()):
        path = match.group(1)
        if path in files or path.rstrip("/") + "/" in dirs or path in NOT_IN_THE_REPOSITORY:
            continue
        if page.read_text()[match.end() : match.end() + 1] in "-*{" and any(f.startswith(path) for f in files):
            continue  # a pattern: verify/requirements-{cpu,gpu}.in, templates/*.j2
        stale.append(path)
    assert not stale, f"{page.relative_to(ROOT)} names paths that do not exist (moved? fix the text): {sorted(set(stale))}"
