"""Fixture-driven fact tests, in pyinfra's own style: one JSON case per file under fixtures/.

Each case names the fact by its directory (``<module>.<Class>`` in facts/) and holds the fact's
arguments, the exact command it must run, the captured stdout lines and the expected result. As
in pyinfra, empty output means the fact's ``default()`` (pyinfra never calls ``process`` then).
"""

from __future__ import annotations

import ast
import importlib
import inspect
import json
import pkgutil
from pathlib import Path
from typing import Any

import pytest
from pyinfra.api import FactBase

import facts

FIXTURES = Path(__file__).parent / "fixtures"
ROOT = Path(__file__).resolve().parent.parent.parent
FACT_MODULES = tuple(info.name for info in pkgutil.iter_modules(facts.__path__) if not info.name.startswith("_"))
CASES = sorted(FIXTURES.glob("*/*.json"))


def fact_class(directory: str) -> type[FactBase]:
    """``docker.DockerRuntimes`` → facts.docker.DockerRuntimes."""
    module, _, name = directory.partition(".")
    return getattr(importlib.import_module(f"facts.{module}"), name)


def all_fact_classes() -> list[type[FactBase]]:
    """Every concrete FactBase subclass defined in our facts modules."""
    found = []
    for module_name in FACT_MODULES:
        module = importlib.import_module(f"facts.{module_name}")
        for _, obj in inspect.getmembers(module, inspect.isclass):
            if issubclass(obj, FactBase) and obj.__module__ == module.__name__:
                found.append(obj)
    return found


def run_fact(fact: FactBase, output: list[str]) -> Any:
    """Mirror pyinfra's get_fact: process() only when the command printed something."""
    return fact.process(output) if output else fact.default()


@pytest.mark.parametrize("path", CASES, ids=lambda p: f"{p.parent.name}/{p.stem}")
def test_fact_case(path: Path) -> None:
    case = json.loads(path.read_text())
    fact = fact_class(path.parent.name)()
    args, kwargs = case.get("args", []), case.get("kwargs", {})

    assert str(fact.command(*args, **kwargs)) == case["command"]
    assert run_fact(fact, case["output"]) == case["fact"]


def test_cases_found() -> None:
    assert len(CASES) > 40


@pytest.mark.parametrize("cls", all_fact_classes(), ids=lambda c: c.__name__)
def test_every_fact_has_fixtures(cls: type[FactBase]) -> None:
    module = cls.__module__.rsplit(".", 1)[-1]
    cases = list((FIXTURES / f"{module}.{cls.__name__}").glob("*.json"))
    # At least one case with output and one without (the "absent" default).
    assert any(json.loads(p.read_text())["output"] for p in cases), cls.__name__
    assert any(not json.loads(p.read_text())["output"] for p in cases), cls.__name__


@pytest.mark.parametrize("cls", all_fact_classes(), ids=lambda c: c.__name__)
def test_fact_names_and_docs(cls: type[FactBase]) -> None:
    # pyinfra names facts after their module: the deploys and logs refer to these names.
    assert cls.name == f"{cls.__module__}.{cls.__name__}"
    assert cls.__doc__ and cls.__doc__.strip()


def test_every_fact_lives_in_facts() -> None:
    """No FactBase subclass outside facts/ (where the fixture harness covers it)."""
    outside = []
    for path in sorted(ROOT.glob("*/**/*.py")):
        if path.parts[len(ROOT.parts)] in ("facts", ".venv", "tests") or ".venv" in path.parts:
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ClassDef) and any("FactBase" in ast.unparse(base) for base in node.bases):
                outside.append(f"{path.relative_to(ROOT)}:{node.lineno} {node.name}")
    assert not outside, outside
    assert {"gpu", "docker", "disk", "triton", "verify"} <= set(FACT_MODULES)
