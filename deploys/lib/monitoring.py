"""The monitoring role: which hosts run Prometheus, what it scrapes (every host's endpoints, from the
inventory), and the metric names the fleet exports, which the alert rules and the Grafana dashboard
may use.

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
import json
import re
import shlex
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import yaml

from deploys.core import operations
from deploys.lib import settings
from deploys.lib.render import prometheus_url
from deploys.lib.roles import MONITORING_GROUP, has_monitoring, is_front_door, is_monitoring, is_registry_cache  # noqa: F401 (re-exported)
from deploys.lib.settings import Settings, SettingsError

JOB_NODE = "node"
JOB_TRITON = "triton"
JOB_GATEWAY = "gateway"
JOB_DCGM = "dcgm"
JOB_HAPROXY = "haproxy"
JOB_PROMETHEUS = "prometheus"

ROLE_TRITON = "triton"
ROLE_FRONT_DOOR = "front_door"
ROLE_MONITORING = "monitoring"
ROLE_REGISTRY_CACHE = "registry_cache"


@dataclass(frozen=True)
class ScrapeTarget:
    """One endpoint Prometheus scrapes: its job, the host (``instance`` label) and its role, where."""

    job: str
    instance: str
    role: str
    address: str  # an IP address, or the inventory host name for an endpoint listening everywhere
    port: int


def role(host: Any) -> str:
    """The ``role`` label of ``host``: front_door, monitoring (not a front door), registry_cache or triton (all others)."""
    if is_front_door(host):
        return ROLE_FRONT_DOOR
    if is_monitoring(host):
        return ROLE_MONITORING
    if is_registry_cache(host):
        return ROLE_REGISTRY_CACHE
    return ROLE_TRITON


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


# -- the metric names the fleet exports ----------------------------------------------------------

# What the exporters other than the gateway export (the gateway's names come from its own registry:
# gateway_metric_names), with where each name comes from. The alert rules and the dashboard may use
# only these (tests/test_monitoring_config.py checks them, and checks the Triton (GPU ones aside),
# HAProxy and node exporter names against the real binaries: nvidia-pytriton's tritonserver 2.51,
# Debian's haproxy and prometheus-node-exporter).
EXPORTED_METRICS: dict[str, dict[str, str]] = {
    # Triton's /metrics: docs/user_guide/metrics.md of triton-inference-server/server (Triton 2.x),
    # labels model and version; per-model series exist only while the model is loaded.
    JOB_TRITON: {
        "nv_inference_request_success": "counter: successful inference requests",
        "nv_inference_request_failure": "counter: failed inference requests",
        "nv_inference_count": "counter: inferences (a batch of n counts n)",
        "nv_inference_exec_count": "counter: batch executions (inferences / executions = the executed batch size)",
        "nv_inference_request_duration_us": "counter: cumulative end-to-end request time (µs)",
        "nv_inference_queue_duration_us": "counter: cumulative time requests waited in the scheduler queue (µs)",
        "nv_inference_compute_input_duration_us": "counter: cumulative input processing time (µs)",
        "nv_inference_compute_infer_duration_us": "counter: cumulative model execution time (µs)",
        "nv_inference_compute_output_duration_us": "counter: cumulative output processing time (µs)",
        "nv_inference_pending_request_count": "gauge: requests waiting or running",
        "nv_gpu_utilization": "gauge: GPU utilisation 0-1 (GPU hosts)",
        "nv_gpu_memory_total_bytes": "gauge: GPU memory (GPU hosts)",
        "nv_gpu_memory_used_bytes": "gauge: GPU memory in use (GPU hosts)",
        "nv_cpu_utilization": "gauge: CPU utilisation 0-1",
        "nv_cpu_memory_total_bytes": "gauge: RAM",
        "nv_cpu_memory_used_bytes": "gauge: RAM in use",
    },
    # HAProxy's built-in exporter (http-request use-service prometheus-exporter, HAProxy ≥ 2.4:
    # Debian 12's 2.6): labels proxy (frontend embeddings, backend gateways), server, state, code.
    JOB_HAPROXY: {
        "haproxy_server_status": "gauge per state (UP, DOWN, MAINT, DRAIN, NOLB, ...): 1 for the server's current state",
        "haproxy_backend_active_servers": "gauge: servers of the backend that are UP",
        "haproxy_backend_status": "gauge per state (UP, DOWN): the backend's state",
        "haproxy_backend_http_requests_total": "counter: HTTP requests sent to the backend",
        "haproxy_backend_http_responses_total": "counter by code class (1xx ... 5xx, other)",
        "haproxy_frontend_http_requests_total": "counter: HTTP requests received by the frontend",
        "haproxy_frontend_http_responses_total": "counter by code class (1xx ... 5xx, other)",
        "haproxy_server_check_failures_total": "counter: failed health checks of a server",
    },
    # prometheus-node-exporter (Debian's package, 1.5 on Debian 12): filesystem collector.
    JOB_NODE: {
        "node_filesystem_avail_bytes": "gauge: bytes available to non-root users, labels device, fstype, mountpoint",
        "node_filesystem_size_bytes": "gauge: filesystem size",
        "node_cpu_seconds_total": "counter: CPU time by cpu and mode",
        "node_memory_MemAvailable_bytes": "gauge: memory available",
        "node_load1": "gauge: 1-minute load average",
    },
    # dcgm-exporter's default counters: etc/default-counters.csv of NVIDIA/dcgm-exporter (labels gpu,
    # UUID, device, modelName, Hostname).
    JOB_DCGM: {
        "DCGM_FI_DEV_GPU_UTIL": "gauge: GPU utilisation (%)",
        "DCGM_FI_DEV_FB_USED": "gauge: framebuffer memory used (MiB)",
        "DCGM_FI_DEV_FB_FREE": "gauge: framebuffer memory free (MiB)",
        "DCGM_FI_DEV_GPU_TEMP": "gauge: GPU temperature (°C)",
        "DCGM_FI_DEV_POWER_USAGE": "gauge: power draw (W)",
    },
    # Prometheus itself, for every target it scrapes.
    "*": {
        "up": "1 when the target's last scrape succeeded, else 0",
        "scrape_duration_seconds": "how long the target's last scrape took",
    },
}


def gateway_metric_names() -> set[str]:
    """The sample names the gateway's /metrics serves, read from verify/gateway.py's registry (every
    labelled metric given one child, so its series show up as they do on a serving gateway)."""
    from prometheus_client import generate_latest
    from prometheus_client.metrics import MetricWrapperBase

    from verify.gateway import Metrics

    metrics = Metrics(length_buckets=(64, 2048))
    for value in vars(metrics).values():
        if isinstance(value, MetricWrapperBase) and value._labelnames:
            value.labels(*("x" for _ in value._labelnames))
    text = generate_latest(metrics.registry).decode()
    return {re.split(r"[{ ]", line, maxsplit=1)[0] for line in text.splitlines() if line and not line.startswith("#")}


def exported_metric_names() -> dict[str, str]:
    """Every metric name the fleet exports → where it comes from (a job, or ``*`` for Prometheus's own)."""
    names = {name: "gateway (verify/gateway.py)" for name in gateway_metric_names()}
    for job, found in EXPORTED_METRICS.items():
        names.update(dict.fromkeys(found, job))
    return names


# -- the metric names a PromQL expression uses -----------------------------------------------------

_STRING = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`')
_GRAFANA_VARIABLE = re.compile(r"\$\{[^}]*\}|\$\w+")
_MATCHERS = re.compile(r"\{[^{}]*\}")
_RANGE = re.compile(r"\[[^\]]*\]")
_GROUPING = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)")
_IDENTIFIER = re.compile(r"(?<![\w.:])[A-Za-z_:][A-Za-z0-9_:]*")
_KEYWORDS = frozenset(
    {"and", "or", "unless", "bool", "offset", "by", "without", "on", "ignoring", "group_left", "group_right", "inf", "nan"}
)


def promql_metric_names(expr: str) -> set[str]:
    """The metric names ``expr`` selects (PromQL, Grafana's ``$variables`` allowed): every identifier
    that is not a function or aggregation (followed by ``(``), a keyword, a label or a duration."""
    text = _STRING.sub('""', expr)
    text = _GRAFANA_VARIABLE.sub(" ", text)
    text = _MATCHERS.sub(" ", text)
    text = _RANGE.sub(" ", text)
    text = _GROUPING.sub(" ", text)
    names = set()
    for match in _IDENTIFIER.finditer(text):
        word = match.group(0)
        if word.lower() in _KEYWORDS or text[match.end() :].lstrip().startswith("("):
            continue
        names.add(word)
    return names


def alert_expressions(rules_text: str) -> dict[str, str]:
    """Alert name → PromQL expression, from a Prometheus rules file's text."""
    found = {}
    for group in yaml.safe_load(rules_text)["groups"]:
        for rule in group["rules"]:
            found[rule.get("alert") or rule["record"]] = rule["expr"]
    return found


def _panels(panels: Iterable[Mapping[str, Any]]) -> Iterable[Mapping[str, Any]]:
    for panel in panels:
        yield panel
        yield from _panels(panel.get("panels", ()))  # a collapsed row holds its panels


def dashboard_expressions(dashboard_text: str) -> dict[str, str]:
    """``panel title / refId`` (or ``variable NAME``) → PromQL expression, from a Grafana dashboard's JSON."""
    dashboard = json.loads(dashboard_text)
    found = {}
    for panel in _panels(dashboard.get("panels", ())):
        for target in panel.get("targets", ()):
            if target.get("expr"):
                found[f"{panel.get('title', panel.get('id'))} / {target.get('refId')}"] = target["expr"]
    for variable in dashboard.get("templating", {}).get("list", ()):
        query = variable.get("query")
        query = query.get("query", "") if isinstance(query, dict) else query
        if variable.get("type") == "query" and isinstance(query, str):
            selector = re.fullmatch(r"\s*label_values\(\s*(.+?)\s*,\s*\w+\s*\)\s*", query)
            found[f"variable {variable['name']}"] = selector.group(1) if selector else query
    return found


def runs_dcgm_exporter(s: Settings, inventory: Iterable[Any]) -> bool:
    """Whether host ``s`` runs dcgm-exporter: a Triton host with ``gpu: true`` in a fleet with a
    monitoring host (the hosts the ``dcgm`` job scrapes: :func:`scrape_targets`)."""
    return (
        s.gpu is True and has_monitoring(inventory) and not any(other.name == s.host and role(other) != ROLE_TRITON for other in inventory)
    )


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
