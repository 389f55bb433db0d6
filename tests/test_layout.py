"""The house by role (docs/where-to-change-what.md): each role in its package under deploys/, what
roles share in deploys/core/, facts in facts/, templates in templates/<role>/, host paths in
deploys/core/paths.py. Read from the source (ast), nothing imported: a new file that breaks the
layout fails here with the file and the rule."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DEPLOYS = ROOT / "deploys"
SHARED = ("core", "tools")  # packages under deploys/ that are not roles
ROLES = sorted(p.name for p in DEPLOYS.iterdir() if (p / "__init__.py").is_file() and p.name not in SHARED)


def modules(directory: Path) -> list[Path]:
    return sorted(p for p in directory.rglob("*.py") if ".venv" not in p.parts)


def imported(path: Path) -> set[str]:
    """Every module ``path`` imports (``from deploys.x import y`` counts as deploys.x.y when y is a module)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            base = ROOT.joinpath(*node.module.split("."))
            found.update(f"{node.module}.{a.name}" for a in node.names if (base / f"{a.name}.py").is_file())
    return found


def package_of(module: str) -> str | None:
    """The deploys/ package a dotted module is or lives in (core, tools or a role), or None (an
    entry point such as deploys.all)."""
    parts = module.split(".")
    return parts[1] if parts[0] == "deploys" and len(parts) > 1 and (DEPLOYS / parts[1] / "__init__.py").is_file() else None


def defines_deploy(path: Path) -> bool:
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.FunctionDef):
            for decorator in node.decorator_list:
                target = decorator.func if isinstance(decorator, ast.Call) else decorator
                if (isinstance(target, ast.Name) and target.id == "deploy") or (
                    isinstance(target, ast.Attribute) and target.attr == "deploy"
                ):
                    return True
    return False


def test_the_roles_are_the_packages() -> None:
    assert ROLES == ["deploy_lock", "front_door", "gateway", "host_base", "model", "monitoring", "registry_cache", "triton"]
    assert not (DEPLOYS / "lib").exists() and not (DEPLOYS / "steps").exists(), (
        "deploys/lib and deploys/steps are gone: a role package or deploys/core"
    )


@pytest.mark.parametrize("role", ROLES)
def test_every_role_holds_its_steps_and_declares_its_settings(role: str) -> None:
    steps = [p.name for p in modules(DEPLOYS / role) if defines_deploy(p)]
    assert steps, f"deploys/{role}/ holds no @deploy step"
    assert (DEPLOYS / role / "settings.py").is_file(), f"deploys/{role}/settings.py: the role's settings, each declared once"
    assert f"from deploys.{role}.settings import" in (DEPLOYS / "core" / "settings.py").read_text(), (
        f"deploys/core/settings.py does not compose {role}'s settings"
    )


def test_steps_live_only_in_role_packages() -> None:
    outside = [str(p.relative_to(ROOT)) for p in modules(DEPLOYS) if defines_deploy(p) and (p.parent == DEPLOYS or p.parent.name in SHARED)]
    assert not outside, f"@deploy outside a role package: {outside}"


def test_no_role_imports_another_roles_internals() -> None:
    """A role imports deploys.core, facts/ and itself, nothing of another role: what two roles share
    lives in deploys/core/ (pulling images, compose, endpoints, rolling restarts, the model store)."""
    found: dict[str, list[str]] = {}
    for role in ROLES:
        for path in modules(DEPLOYS / role):
            for module in imported(path):
                other = package_of(module)
                if other and other not in (role, "core"):
                    found.setdefault(str(path.relative_to(ROOT)), []).append(module)
    assert not found, f"a role imports another role (move what they share to deploys/core/): {found}"


def test_core_imports_no_role_but_their_settings_declarations() -> None:
    for path in modules(DEPLOYS / "core"):
        for module in imported(path):
            other = package_of(module)
            if other and other not in SHARED:
                assert path.name == "settings.py" and module == f"deploys.{other}.settings", f"{path.relative_to(ROOT)} imports {module}"


def test_no_fact_outside_facts() -> None:
    """pyinfra facts (FactBase subclasses) live in facts/, one module per subject, tested on captured outputs."""
    offenders = []
    for path in modules(ROOT):
        if path.is_relative_to(ROOT / "facts") or path.is_relative_to(ROOT / "tests"):
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ClassDef) and any(
                (isinstance(b, ast.Name) and b.id == "FactBase") or (isinstance(b, ast.Attribute) and b.attr == "FactBase")
                for b in node.bases
            ):
                offenders.append(f"{path.relative_to(ROOT)}:{node.name}")
    assert not offenders, f"FactBase subclasses outside facts/: {offenders}"


def test_templates_are_by_role_and_their_names_unique() -> None:
    """templates/<role>/ per role; render looks a name up in templates/ then each role's folder, so a name is unique."""
    folders = sorted(p.name for p in (ROOT / "templates").iterdir() if p.is_dir())
    assert set(folders) <= set(ROLES), f"templates/ folders that are no role: {sorted(set(folders) - set(ROLES))}"
    loose = sorted(p.name for p in (ROOT / "templates").iterdir() if p.is_file())
    assert not loose, f"templates at the top of templates/ (put them in templates/<role>/): {loose}"
    names: dict[str, str] = {}
    for folder in folders:
        for path in (ROOT / "templates" / folder).rglob("*"):
            if path.is_file():
                name = str(path.relative_to(ROOT / "templates" / folder))
                assert name not in names, f"template {name} is in templates/{names[name]}/ and templates/{folder}/"
                names[name] = folder


HOST_PATH = re.compile(r"/(etc|var|run|opt|srv|usr/local)/")


def test_host_paths_are_spelled_in_deploys_core_paths() -> None:
    """One module spells the host paths: a literal host path elsewhere in deploys/ (not a docstring, not
    a setting's default, which the inventory may change) belongs in deploys/core/paths.py."""
    offenders = []
    for path in modules(DEPLOYS):
        if path == DEPLOYS / "core" / "paths.py" or path.name == "settings.py" or path.parent.name == "tools":
            continue
        tree = ast.parse(path.read_text(encoding="utf-8"))
        docstrings = {
            id(node.body[0].value)
            for node in ast.walk(tree)
            if isinstance(node, (ast.Module, ast.FunctionDef, ast.ClassDef, ast.AsyncFunctionDef))
            and node.body
            and isinstance(node.body[0], ast.Expr)
            and isinstance(node.body[0].value, ast.Constant)
        }
        for node in ast.walk(tree):
            if (
                isinstance(node, ast.Constant)
                and isinstance(node.value, str)
                and id(node) not in docstrings
                and HOST_PATH.match(node.value)
            ):
                offenders.append(f"{path.relative_to(ROOT)}:{node.lineno} {node.value!r}")
    assert not offenders, f"host paths outside deploys/core/paths.py: {offenders}"


def test_no_gateway_code_under_verify() -> None:
    """The embeddings gateway serves traffic: it lives in embeddings_gateway/, and verify/ (the parity
    check) neither holds nor imports it (a host's verify copy must not need the gateway's code)."""
    gateway = sorted(p.name for p in (ROOT / "verify").glob("gateway*.py"))
    assert not gateway, f"the embeddings gateway is production code, not verification: {gateway} belong in embeddings_gateway/"
    importers = sorted(p.name for p in (ROOT / "verify").glob("*.py") if any(m.split(".")[0] == "embeddings_gateway" for m in imported(p)))
    assert not importers, f"verify/ imports the gateway: {importers}"


def test_where_to_change_what_names_files_that_exist() -> None:
    """docs/where-to-change-what.md: every file and folder it names (but the <role> patterns) exists."""
    text = (ROOT / "docs" / "where-to-change-what.md").read_text(encoding="utf-8")
    named = set(re.findall(r"`((?:deploys|templates|facts|tests|verify)/[^`<>\s]*)`", text))
    assert named, "the page names no file"
    missing = sorted(name for name in named if not (ROOT / name).exists())
    assert not missing, f"docs/where-to-change-what.md names what does not exist: {missing}"
