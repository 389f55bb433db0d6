"""The README's repository tree lists every module, and only what is tracked (`git ls-files`)."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
LISTED_PACKAGES = ("deploys/", "facts/", "verify/", "embeddings_gateway/")  # one line per module there; elsewhere per directory


def tree_lines() -> list[tuple[str, str]]:
    """(path, description) of each line of the README's tree block."""
    text = (ROOT / "README.md").read_text()
    block = re.search(r"<!-- tree:begin -->\n```\n(.*?)```\n<!-- tree:end -->", text, re.S)
    assert block, "README.md lacks the tree block between <!-- tree:begin --> and <!-- tree:end -->"
    rows = []
    for line in block.group(1).splitlines():
        path, _, description = line.partition(" ")
        rows.append((path, description.strip()))
    return rows


def tracked() -> set[str]:
    out = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    return set(out.splitlines())


def test_tree_lists_every_module_once_and_only_tracked_paths() -> None:
    rows = tree_lines()
    files = tracked()
    paths = [path for path, _ in rows]
    assert len(paths) == len(set(paths)), "a path is listed twice"
    assert all(description for _, description in rows), "every line says what the path is"
    for path in paths:
        if path.endswith("/"):
            assert any(f.startswith(path) for f in files), f"{path}: no tracked file under it"
        else:
            assert path in files, f"{path}: listed in the README tree but not tracked"
    modules = {f for f in files if f.startswith(LISTED_PACKAGES) and f.endswith(".py") and not f.endswith("__init__.py")}
    missing = sorted(modules - set(paths))
    assert not missing, f"README tree lacks {missing}"
    packages = {str(Path(f).parent) + "/" for f in modules}
    assert packages <= set(paths), f"README tree lacks the directories {sorted(packages - set(paths))}"
