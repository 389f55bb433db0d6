"""The one place that decides a host's role, from its inventory groups: a front door (group
``front_door``: HAProxy), a monitoring host (group ``monitoring``: Prometheus), a registry cache
(group ``registry_cache``: the distribution registry in proxy mode), or else a Triton host (the
whole Triton chain). A fleet without those groups is Triton hosts only, as before the roles existed.
A host in several of these groups takes the first of front door, monitoring, registry cache.

deploys/all.py (which steps a host gets), deploys/status.py and deploys/core/fleet_status.py (the
fleet table's kind), deploys/monitoring/logic.py (the ``role`` label, the dcgm exporter) and the
other entry points all ask :func:`role` or the helpers below; none reads the groups itself."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

FRONT_DOOR_GROUP = "front_door"
MONITORING_GROUP = "monitoring"
REGISTRY_CACHE_GROUP = "registry_cache"

# The roles (also the ``role`` label on every scrape target and the fleet table's kind).
FRONT_DOOR = "front_door"
MONITORING = "monitoring"
REGISTRY_CACHE = "registry_cache"
TRITON = "triton"

# Group → role, in precedence order: a host in several groups takes the first.
_BY_GROUP = ((FRONT_DOOR_GROUP, FRONT_DOOR), (MONITORING_GROUP, MONITORING), (REGISTRY_CACHE_GROUP, REGISTRY_CACHE))


def role(host: Any) -> str:
    """The role of the pyinfra ``host``: front_door, monitoring, registry_cache or triton."""
    groups = getattr(host, "groups", None) or []
    return next((name for group, name in _BY_GROUP if group in groups), TRITON)


def is_front_door(host: Any) -> bool:
    """Whether the pyinfra ``host`` is in the front-door group."""
    return role(host) == FRONT_DOOR


def is_monitoring(host: Any) -> bool:
    """Whether the pyinfra ``host`` is in the monitoring group (and not a front door)."""
    return role(host) == MONITORING


def is_registry_cache(host: Any) -> bool:
    """Whether the pyinfra ``host`` is in the registry cache group (and neither a front door nor a monitoring host)."""
    return role(host) == REGISTRY_CACHE


def is_triton_host(host: Any) -> bool:
    """Whether the pyinfra ``host`` runs Triton and a gateway (neither a front door, a monitoring host nor a registry cache)."""
    return role(host) == TRITON


def has_monitoring(inventory: Iterable[Any]) -> bool:
    """Whether the inventory has a monitoring host (then every host runs the node exporter)."""
    return any(is_monitoring(h) for h in inventory)


def runs_node_exporter(inventory: Iterable[Any]) -> bool:
    """Whether every host of the inventory runs the node exporter: when it has a monitoring host."""
    return has_monitoring(inventory)


def runs_dcgm_exporter(s: Any, inventory: Iterable[Any]) -> bool:
    """Whether host ``s`` (its settings) runs dcgm-exporter: a Triton host with ``gpu: true`` in a
    fleet with a monitoring host (the hosts the ``dcgm`` job scrapes: deploys/monitoring/logic.py)."""
    inventory = list(inventory)
    return s.gpu is True and has_monitoring(inventory) and not any(other.name == s.host and role(other) != TRITON for other in inventory)


def registry_caches(inventory: Iterable[Any]) -> list[Any]:
    """The registry cache hosts of the inventory (Triton hosts pull through the first: deploys/core/registry.py)."""
    return [h for h in inventory if is_registry_cache(h)]
