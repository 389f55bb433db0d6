"""One run's context: what a pyinfra run (one ``State``) gathers and caches on the controller.

pyinfra runs the deploy files once per host and the operations' bodies later, several hosts at a
time; what they share for the run lives here, in one :class:`RunContext` per ``State``: each host's
settings, layout and release spec (computed once per host per run), and the run's collections
(fleet status reports, verify results, held deploy locks, failed rolls, planned releases, whether
the fleet was validated, messages said once).

The context is held in a ``WeakKeyDictionary`` keyed by the State object itself, never by the
State's ``id()``: a freed State's id can be reused by the next one in the same process (the rollout
tool and the tests run several), and its context goes with it.
"""

from __future__ import annotations

import threading
import weakref
from collections import Counter
from dataclasses import dataclass, field
from typing import Any


@dataclass
class RunContext:
    """The per-run state of one pyinfra ``State`` (see the module's docstring)."""

    lock: threading.RLock = field(default_factory=threading.RLock)
    settings: dict[str, Any] = field(default_factory=dict)  # host name -> Settings
    settings_parsed: Counter = field(default_factory=Counter)  # host name -> settings parsed this run
    layouts: dict[str, Any] = field(default_factory=dict)  # host name -> paths.Layout
    specs: dict[str, Any] = field(default_factory=dict)  # host name -> release.ReleaseSpec
    planned: dict[str, Any] = field(default_factory=dict)  # host name -> release.Planned
    fleet_reports: dict[str, tuple[str, dict[str, Any]]] = field(default_factory=dict)  # deploys/status.py
    fleet_printed: bool = False
    verify_results: dict[str, Any] = field(default_factory=dict)  # host name -> verify_run.HostResult
    verify_printed: bool = False
    held_locks: set[str] = field(default_factory=set)  # hosts whose deploy lock this run holds
    failed_rolls: list[str] = field(default_factory=list)  # hosts whose roll failed
    fleet_checked: bool = False  # settings.validate_fleet ran
    said: set[str] = field(default_factory=set)  # run-wide messages already logged
    began: bool = False  # an operation ran (events: "run began" written)
    caches: dict[str, dict[Any, Any]] = field(default_factory=dict)  # run_cache(name)


_CONTEXTS: weakref.WeakKeyDictionary[Any, RunContext] = weakref.WeakKeyDictionary()
_LOCK = threading.Lock()


def of(state: Any) -> RunContext:
    """The run context of ``state`` (made on first use; it lives as long as the State). pyinfra's
    ``from pyinfra import state`` is a proxy shared by every run: the State behind it is the key."""
    from pyinfra.context import ContextObject

    if isinstance(state, ContextObject):
        state = state._get_module()
    with _LOCK:
        found = _CONTEXTS.get(state)
        if found is None:
            found = _CONTEXTS[state] = RunContext()
        return found


def run_cache(name: str) -> dict[Any, Any]:
    """The cache ``name`` of the current pyinfra run (its State in pyinfra's context); outside a run
    a fresh dict each call: nothing is kept between runs of one process."""
    from pyinfra.context import ctx_state

    state = ctx_state.get()
    if state is None:
        return {}
    ctx = of(state)
    with ctx.lock:
        return ctx.caches.setdefault(name, {})
