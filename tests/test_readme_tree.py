"""The repository tree (docs/layout.md) lists every module, and only what is tracked (`git ls-files`); `make readme`
generates it (deploys/tools/readme.py), so after files move, `make readme` is the whole fix."""

from __future__ import annotations

from pathlib import Path

from deploys.tools import readme

ROOT = Path(__file__).resolve().parent.parent
LISTED_PACKAGES = ("deploys/", "facts/", "verify/", "embeddings_gateway/")  # one line per module there; elsewhere per directory


def tree_lines() -> list[tuple[str, str]]:
    """(path, description) of each line of docs/layout.md's tree block."""
    return readme.tree_rows(readme.LAYOUT_PAGE.read_text())


def tracked() -> set[str]:
    return set(readme.tracked(ROOT))


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


def test_tree_is_what_make_readme_generates() -> None:
    text = readme.LAYOUT_PAGE.read_text()
    assert readme.with_tree(text, readme.tracked(ROOT)) == text, "docs/layout.md's tree is stale: run `make readme`"


LAYOUT_BEFORE = f"""{readme.TREE_BEGIN}
```
deploys/                  the deploy files
deploys/all.py            the table of contents
deploys/lib/              shared libraries
deploys/lib/front_door.py the front door's logic
templates/                the templates
tests/                    the tests
```
{readme.TREE_END}
"""


def test_generated_tree_follows_moved_files(tmp_path: Path) -> None:
    """Files moved into new packages (a role package, a top-level package, test support): the moved path's
    line goes, each new module gets a line with its docstring's first sentence, each new directory one line;
    the descriptions written for paths still there stay."""
    files = [
        "deploys/__init__.py",
        "deploys/all.py",
        "deploys/front_door/__init__.py",
        "deploys/front_door/step.py",
        "embeddings_gateway/__init__.py",
        "embeddings_gateway/app.py",
        "templates/front_door/haproxy.cfg.j2",
        "tests/__init__.py",
        "tests/support/__init__.py",
        "tests/support/hub.py",
        "tests/test_x.py",
        "Makefile",
    ]
    for name in files:
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text("")
    (tmp_path / "deploys/front_door/__init__.py").write_text('"""The front door role.\n\nMore text."""\n')
    (tmp_path / "deploys/front_door/step.py").write_text('"""The front door step: HAProxy, checked\nwith haproxy -c. Then more."""\n')
    (tmp_path / "embeddings_gateway/app.py").write_text('"""The gateway app."""\n')
    rows = dict(readme.tree_rows(readme.with_tree(LAYOUT_BEFORE, files, tmp_path)))
    assert list(rows) == [
        "deploys/",
        "deploys/all.py",
        "deploys/front_door/",
        "deploys/front_door/step.py",
        "embeddings_gateway/",
        "embeddings_gateway/app.py",
        "templates/",
        "templates/front_door/",
        "tests/",
        "tests/support/",
    ]
    assert rows["deploys/all.py"] == "the table of contents"
    assert rows["deploys/front_door/"] == "The front door role"
    assert rows["deploys/front_door/step.py"] == "The front door step: HAProxy, checked with haproxy -c"
    assert rows["embeddings_gateway/app.py"] == "The gateway app"
    assert rows["templates/front_door/"] == "holds haproxy.cfg.j2"


def test_mentions_of_renamed_files_follow_them() -> None:
    moved = {"deploys/lib/front_door.py": "deploys/front_door/logic.py", "verify/gateway.py": "embeddings_gateway/app.py"}
    text = (
        "deploys/lib/front_door.py         the front-door role\n"
        "see `deploys/lib/front_door.py` and verify/gateway.py. Not verify/gateway.pyc, my/verify/gateway.py, verify/gateway.py-old\n"
    )
    assert readme.with_renames(text, moved) == (
        "deploys/front_door/logic.py         the front-door role\n"
        "see `deploys/front_door/logic.py` and embeddings_gateway/app.py. Not verify/gateway.pyc, my/verify/gateway.py, verify/gateway.py-old\n"
    )
