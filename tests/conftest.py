"""Shared pytest hooks."""

from __future__ import annotations

import pytest

FLEET_UNDER_XDIST = "a sandbox fleet test runs without -n (fixed container names: two workers would share one fleet); make test runs them in a pass of their own"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """The sandbox fleet modules (marker ``fleet``) never run under pytest-xdist: each module's fleet has fixed
    container names, so two workers would bring up, deploy to and tear down one fleet at once."""
    if hasattr(config, "workerinput"):
        for item in items:
            if item.get_closest_marker("fleet"):
                item.add_marker(pytest.mark.skip(reason=FLEET_UNDER_XDIST))
