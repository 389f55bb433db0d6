"""The metric names the fleet exports, and the names a PromQL expression uses: the lint that keeps
the alert rules (templates/monitoring/prometheus-alerts.yml.j2) and the Grafana dashboard to metrics that exist
(tests/test_monitoring_config.py, tests/test_e2e_front_door.py). Test machinery only: the deploy
never needs it (cut from deploys/monitoring/logic.py, whose JOB_* names it uses)."""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from typing import Any

import yaml

from deploys.monitoring.logic import JOB_DCGM, JOB_HAPROXY, JOB_NODE, JOB_TRITON

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
    """The sample names the gateway's /metrics serves, read from embeddings_gateway/app.py's registry (every
    labelled metric given one child, so its series show up as they do on a serving gateway)."""
    from prometheus_client import generate_latest
    from prometheus_client.metrics import MetricWrapperBase

    from embeddings_gateway.app import Metrics

    metrics = Metrics(length_buckets=(64, 2048))
    for value in vars(metrics).values():
        if isinstance(value, MetricWrapperBase) and value._labelnames:
            value.labels(*("x" for _ in value._labelnames))
    text = generate_latest(metrics.registry).decode()
    return {re.split(r"[{ ]", line, maxsplit=1)[0] for line in text.splitlines() if line and not line.startswith("#")}


def exported_metric_names() -> dict[str, str]:
    """Every metric name the fleet exports → where it comes from (a job, or ``*`` for Prometheus's own)."""
    names = {name: "gateway (embeddings_gateway/app.py)" for name in gateway_metric_names()}
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
