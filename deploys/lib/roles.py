"""Which role a host of the inventory has, from its groups: a front door (group ``front_door``:
HAProxy), a monitoring host (group ``monitoring``: Prometheus), a registry cache (group
``registry_cache``: the distribution registry in proxy mode), or else a Triton host (the whole
Triton chain). A fleet without those groups is Triton hosts only, as before the roles existed.
A host in several of these groups takes the first of front door, monitoring, registry cache."""

from __future__ import annotations

from typing import Any

FRONT_DOOR_GROUP = "front_door"
MONITORING_GROUP = "monitoring"
REGISTRY_CACHE_GROUP = "registry_cache"


def _groups(host: Any) -> list[str]:
    return getattr(host, "groups", None) or []


def is_front_door(host: Any) -> bool:
    """Whether the pyinfra ``host`` is in the front-door group."""
    return FRONT_DOOR_GROUP in _groups(host)


def is_monitoring(host: Any) -> bool:
    """Whether the pyinfra ``host`` is in the monitoring group (and not a front door)."""
    return MONITORING_GROUP in _groups(host) and not is_front_door(host)


def is_registry_cache(host: Any) -> bool:
    """Whether the pyinfra ``host`` is in the registry cache group (and neither a front door nor a monitoring host)."""
    return REGISTRY_CACHE_GROUP in _groups(host) and not is_front_door(host) and not is_monitoring(host)


def is_triton_host(host: Any) -> bool:
    """Whether the pyinfra ``host`` runs Triton and a gateway (neither a front door, a monitoring host nor a registry cache)."""
    return not is_front_door(host) and not is_monitoring(host) and not is_registry_cache(host)


def has_monitoring(inventory: Any) -> bool:
    """Whether the inventory has a monitoring host (then every host runs the node exporter)."""
    return any(is_monitoring(h) for h in inventory)


def registry_caches(inventory: Any) -> list[Any]:
    """The registry cache hosts of the inventory (Triton hosts pull through the first: deploys/lib/registry.py)."""
    return [h for h in inventory if is_registry_cache(h)]
