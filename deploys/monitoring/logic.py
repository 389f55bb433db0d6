"""The monitoring role: which hosts run Prometheus, what it scrapes (every host's endpoints, from the
inventory), and the metric names the fleet exports, which the alert rules and the Grafana dashboard
may use.

(The metric names the fleet exports, and the PromQL lint that checks the alert rules and the
dashboard against them, are test machinery: tests/support/metric_names.py.)

A host is a monitoring host when it is in the inventory group ``monitoring`` (MONITORING_GROUP). Its
Prometheus scrapes, for every host of the inventory (itself included), one job per kind of endpoint:

- ``node``: every host's prometheus-node-exporter (monitoring_exporter_address, monitoring_node_exporter_port);
- ``triton``: each Triton host's Triton metrics (triton_metrics_address, else triton_bind_address; triton_metrics_port);
- ``gateway``: each Triton host's gateway /metrics (gateway_listen_address, gateway_listen_port; no API key);
- ``dcgm``: each GPU Triton host's dcgm-exporter (monitoring_exporter_address, monitoring_dcgm_exporter_port);
- ``haproxy``: each front door's HAProxy exporter (front_door_metrics_address, front_door_metrics_port);
- ``prometheus``: the monitoring host's own Prometheus (monitoring_listen_address, monitoring_port).

Every target is labelled ``instance`` (the inventory host name, so a host's series join on it) and
``role`` (``triton``, ``front_door``, ``monitoring`` or ``registry_cache``). An endpoint on loopback can only be scraped
from its own host: any other host's loopback address is a one-line error naming the setting.
"""

from __future__ import annotations

import ipaddress
import shlex
from collections.abc import Collection, Iterable
from dataclasses import dataclass
from typing import Any

from deploys.core import operations, roles, settings
from deploys.core.roles import MONITORING_GROUP, has_monitoring, is_front_door, is_monitoring, is_registry_cache, role, runs_dcgm_exporter  # noqa: F401 (re-exported)
from deploys.core.settings import Settings, SettingsError
from deploys.monitoring.render import alertmanager_url, prometheus_url

JOB_NODE = "node"
JOB_TRITON = "triton"
JOB_GATEWAY = "gateway"
JOB_DCGM = "dcgm"
JOB_HAPROXY = "haproxy"
JOB_PROMETHEUS = "prometheus"

ROLE_TRITON = roles.TRITON  # the role label: deploys/core/roles.py decides it
ROLE_FRONT_DOOR = roles.FRONT_DOOR
ROLE_MONITORING = roles.MONITORING
ROLE_REGISTRY_CACHE = roles.REGISTRY_CACHE


@dataclass(frozen=True)
class ScrapeTarget:
    """One endpoint Prometheus scrapes: its job, the host (``instance`` label) and its role, where."""

    job: str
    instance: str
    role: str
    address: str  # an IP address, or the inventory host name for an endpoint listening everywhere
    port: int


def _address(s: Settings, name: str, setting: str, value: str, what: str) -> str:
    """Where Prometheus on ``s.host`` reaches ``name``'s ``what`` listening on ``value`` (the value of ``setting``)."""
    local = name == s.host
    ip = ipaddress.ip_address(value)
    if ip.is_unspecified:
        return ("::1" if ip.version == 6 else "127.0.0.1") if local else name
    if ip.is_loopback and not local:
        raise SettingsError(
            f"host {name}: setting {setting}={value!r} is loopback, so Prometheus on {s.host} cannot scrape its {what}; "
            "set it to the host's private address (metrics are never on 0.0.0.0 by default)"
        )
    return value


def scrape_targets(s: Settings, inventory: Iterable[Any], gpu_hosts: Collection[str] | None = None) -> list[ScrapeTarget]:
    """Every endpoint the monitoring host ``s`` scrapes, from every host of ``inventory``.

    ``gpu_hosts``: names of the Triton hosts that have a GPU (dcgm-exporter); None: the hosts whose
    setting ``gpu`` is true (a host with ``gpu: auto`` is known only from its facts: the caller
    passes the answer). One line naming the host and the setting when an endpoint is out of reach.
    """
    targets: list[ScrapeTarget] = []
    for other in inventory:
        t = s if other.name == s.host else settings.load(other)
        name, kind = other.name, role(other)

        def add(job: str, setting: str, value: str, port: int, what: str, name: str = name, kind: str = kind) -> None:
            targets.append(ScrapeTarget(job, name, kind, _address(s, name, setting, value, what), port))

        add(JOB_NODE, "monitoring_exporter_address", t.monitoring_exporter_address, t.monitoring_node_exporter_port, "node exporter")
        if kind == ROLE_FRONT_DOOR:
            add(JOB_HAPROXY, "front_door_metrics_address", t.front_door_metrics_address, t.front_door_metrics_port, "HAProxy metrics")
        elif kind == ROLE_TRITON:
            metrics_setting = "triton_metrics_address" if t.triton_metrics_address else "triton_bind_address"
            metrics_address = t.triton_metrics_address or t.triton_bind_address
            add(JOB_TRITON, metrics_setting, metrics_address, t.triton_metrics_port, "Triton metrics")
            if t.gateway_enabled:
                add(JOB_GATEWAY, "gateway_listen_address", t.gateway_listen_address, t.gateway_listen_port, "gateway /metrics")
            if (name in gpu_hosts) if gpu_hosts is not None else t.gpu is True:
                add(
                    JOB_DCGM, "monitoring_exporter_address", t.monitoring_exporter_address, t.monitoring_dcgm_exporter_port, "dcgm-exporter"
                )
        if name == s.host:
            add(JOB_PROMETHEUS, "monitoring_listen_address", t.monitoring_listen_address, t.monitoring_port, "Prometheus")
    return targets


# -- commands the monitoring and node exporter steps run --------------------------------------------


def check_command(config_candidate: str, rules_candidate: str) -> str:
    """``promtool check rules`` on the candidate rules, then ``check config --syntax-only`` on the
    candidate config (it names the live rules file: the full check runs once both are live)."""
    q = shlex.quote
    return f"promtool check rules {q(rules_candidate)} && promtool check config --syntax-only {q(config_candidate)}"


def ready_args(s: Settings, timeout_s: int = 60) -> dict[str, Any]:
    """deploys/core/operations.py:wait_ready's arguments: until Prometheus answers /-/ready and says
    its last config reload succeeded (each try bounded); one line and its journal after ``timeout_s``."""
    url = prometheus_url(s)
    metrics = shlex.quote(f"{url}/metrics")
    return {
        "url": f"{url}/-/ready",
        "timeout_s": timeout_s,
        # Ready is not enough after a reload: it must have read the new config.
        "also": f"curl -sf --max-time 2 {metrics} | grep -qx 'prometheus_config_last_reload_successful 1'",
        "failure_line": f"Prometheus at {url} not ready with its new config after {timeout_s}s; last log lines:",
        "logs": "journalctl -u prometheus -n 20 --no-pager",
    }


def ready_poll(s: Settings, timeout_s: int = 60) -> str:
    """Shell: :func:`ready_args` as one poll (the validated config's confirm), exit 1 past the bound."""
    return operations.ready_shell(**ready_args(s, timeout_s))


def alertmanager_ready_args(s: Settings, timeout_s: int = 60) -> dict[str, Any]:
    """wait_ready's arguments for the monitoring host's Alertmanager: /-/ready, and its last config
    reload successful (each try bounded); one line and its journal after ``timeout_s``."""
    url = alertmanager_url(s)
    metrics = shlex.quote(f"{url}/metrics")
    return {
        "url": f"{url}/-/ready",
        "timeout_s": timeout_s,
        "also": f"curl -sf --max-time 2 {metrics} | grep -qx 'alertmanager_config_last_reload_successful 1'",
        "failure_line": f"Alertmanager at {url} not ready with its new config after {timeout_s}s; last log lines:",
        "logs": "journalctl -u prometheus-alertmanager -n 20 --no-pager",
    }


def alertmanager_ready_poll(s: Settings, timeout_s: int = 60) -> str:
    """Shell: :func:`alertmanager_ready_args` as one poll (the validated config's confirm)."""
    return operations.ready_shell(**alertmanager_ready_args(s, timeout_s))


def alertmanager_check_command(candidate: str) -> str:
    """``amtool check-config`` on the candidate; its output withheld (it may quote a receiver's URL), one line instead."""
    why = "amtool check-config refused the Alertmanager config (its output is withheld: the file holds the receivers' secrets)"
    return f"amtool check-config {shlex.quote(candidate)} >/dev/null 2>&1 || {{ echo {shlex.quote(why)} >&2; exit 1; }}"
