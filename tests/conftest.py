"""Fixtures and hooks the test modules share (helpers they share live in tests/support/)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support import tinymodel

FLEET_UNDER_XDIST = "a sandbox fleet test runs without -n (fixed container names: two workers would share one fleet); make test runs them in a pass of their own"
# Modules whose tests assert a time bound measured inside them (a /ready answer under 0.5 s, a queue wait between 0.3
# and 1.4 s, a p95): they run in make test's serial pass, not beside another xdist worker on a 2-core machine.
SERIAL_MODULES = {"test_bounds.py", "test_front_door_config.py", "test_gateway.py", "test_gateway_clients.py"}


def pytest_itemcollected(item: pytest.Item) -> None:
    if item.path.name in SERIAL_MODULES:
        item.add_marker(pytest.mark.serial)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """The sandbox fleet modules (marker ``fleet``) never run under pytest-xdist: each module's fleet has fixed
    container names, so two workers would bring up, deploy to and tear down one fleet at once."""
    if hasattr(config, "workerinput"):
        for item in items:
            if item.get_closest_marker("fleet"):
                item.add_marker(pytest.mark.skip(reason=FLEET_UNDER_XDIST))


@pytest.fixture(scope="session")
def hub(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny EmbeddingGemma stand-in as a Hub repository directory (onnx/model.onnx + data,
    tokenizer files), written once per run; read-only for the tests. (tests/test_plan.py's own
    ``hub``, a served Hub for the plan tests, overrides it there and where it is imported.)"""
    root = tmp_path_factory.mktemp("hub")
    tinymodel.write_all(root)
    return root
