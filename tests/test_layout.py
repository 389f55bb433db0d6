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

# Cross-role imports, each deliberate: a role's public function another role needs. Anything else a
# role imports from deploys/ comes from deploys.core (or facts/). Shrink this list, never grow it
# without a reason: shared code belongs in deploys/core/.
ALLOWED = {
    # the registry step pulls through the registry cache when the inventory has one
    ("host_base", "deploys.registry_cache.logic"): "find the cache, its endpoint and CA",
    # preflight counts the model bytes a run adds before it checks free disk
    ("host_base", "deploys.model.model_files"): "the model files a host must hold",
    # image prune keeps every image a kept release names
    ("host_base", "deploys.triton.release"): "the kept releases' images",
    # every container role pulls its image the same way (through the cache, bounded, vaulted login)
    ("triton", "deploys.host_base.registry"): "pull_ref / pull_missing",
    ("monitoring", "deploys.host_base.registry"): "pull_ref for dcgm-exporter's image",
    ("registry_cache", "deploys.host_base.registry"): "the images the cache warms",
    # Triton's release holds the model store's files (hard links) and the verify run reads them
    ("triton", "deploys.model.model_files"): "the model files of a release",
    # rolling restarts drain the host at the front door and wait for its gateway
    ("triton", "deploys.front_door.logic"): "server_name of a host in the pool",
    ("triton", "deploys.gateway.logic"): "the gateway's endpoint, keys and readiness",
    # the gateway restarts behind the front door like Triton, and talks to Triton with its key
    ("gateway", "deploys.triton.rolling"): "the same drain/restart/restore",
    ("gateway", "deploys.triton.triton_service"): "probe_endpoint",
    # the front door's backends are the gateways (their address rule)
    ("front_door", "deploys.gateway.logic"): "beyond_loopback",
    # dcgm-exporter runs as a compose project like Triton
    ("monitoring", "deploys.triton.triton_service"): "compose_command",
}


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
    """The deploys/ package a dotted module lives in (core, tools or a role), or None."""
    parts = module.split(".")
    return parts[1] if parts[0] == "deploys" and len(parts) > 2 else None


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
    """A role imports deploys.core, facts/ and itself; the few deliberate exceptions are ALLOWED above."""
    found: dict[tuple[str, str], str] = {}
    for role in ROLES:
        for path in modules(DEPLOYS / role):
            for module in imported(path):
                other = package_of(module)
                if other and other not in (role, "core") and module.count(".") >= 2:
                    found.setdefault((role, module), str(path.relative_to(ROOT)))
    unexpected = {key: where for key, where in found.items() if key not in ALLOWED}
    assert not unexpected, f"cross-role imports (move the shared code to deploys/core/, or allow it here with a reason): {unexpected}"
    stale = sorted(set(ALLOWED) - set(found))
    assert not stale, f"ALLOWED lists imports no role makes any more: {stale}"


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
