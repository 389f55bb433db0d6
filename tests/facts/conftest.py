"""Shared fixtures for the fact tests: a real pyinfra @local host to run fact commands on."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from pyinfra.api import Config, FactBase, Inventory, State
from pyinfra.api.connect import connect_all
from pyinfra.api.facts import get_fact


def pytest_configure(config: pytest.Config) -> None:
    # Registered here too so this folder runs on its own (`pytest tests/facts`) without warnings.
    config.addinivalue_line("markers", "e2e: slow end-to-end test against real services")


@pytest.fixture
def local_fact() -> Callable[..., Any]:
    """Load a fact on this machine through pyinfra's own get_fact and the @local connector.

    Asserts the host was not marked failed: our fact commands must exit 0 whatever is missing.
    """
    inventory = Inventory((["@local"], {}))
    state = State(inventory, Config())
    connect_all(state)
    host = inventory.get_host("@local")

    def load(cls: type[FactBase], *args: Any, **kwargs: Any) -> Any:
        value = get_fact(state, host, cls, args=list(args), kwargs=kwargs)
        assert not state.failed_hosts, f"{cls.__name__} failed the host"
        return value

    return load
