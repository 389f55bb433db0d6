"""Every pyinfra operation in deploys/ carries `name=`: an unnamed one prints its arguments (secrets
included) as its label."""

import ast
from pathlib import Path

import pytest

from deploys.core import operations as shared

SHARED_OPERATIONS = {name for name in dir(shared) if hasattr(getattr(shared, name), "_inner")}
ROOT = Path(__file__).resolve().parent.parent
DEPLOYS = sorted((ROOT / "deploys").rglob("*.py"))
OPERATION_MODULES = {"apt", "files", "pip", "python", "server", "systemd", "docker", "operations"}  # + deploys/core/operations.py


def operation_calls(path: Path):
    """(line, call text) of each `module.op(...)` call on a pyinfra operations module."""
    tree = ast.parse(path.read_text())
    imported = {
        alias.asname or alias.name
        for node in ast.walk(tree)
        if isinstance(node, ast.ImportFrom) and node.module in ("pyinfra.operations", "deploys.core")
        for alias in node.names
    }
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and isinstance(node.func.value, ast.Name)
            and node.func.value.id in imported & OPERATION_MODULES
            and (node.func.value.id != "operations" or node.func.attr in SHARED_OPERATIONS)
        ):
            yield node


@pytest.mark.parametrize("path", DEPLOYS, ids=[str(p.relative_to(ROOT)) for p in DEPLOYS])
def test_every_operation_is_named(path):
    unnamed = [
        f"{path.relative_to(ROOT)}:{call.lineno} {ast.unparse(call.func)}"
        for call in operation_calls(path)
        if not any(keyword.arg == "name" for keyword in call.keywords)
    ]
    assert not unnamed, unnamed


def test_the_check_sees_operations():
    assert sum(1 for path in DEPLOYS for _ in operation_calls(path)) > 20
