"""Monitoring's rendering: Prometheus's config, alert rules and defaults, the node exporter's defaults, Grafana's files, dcgm-exporter's compose file.

Rendered from templates/monitoring/ by deploys/core/render.py's ``render``; pure functions of validated settings."""

from __future__ import annotations

import ipaddress
import json
from collections.abc import Sequence
from typing import Any, Protocol

from deploys.core import paths
from deploys.core import render as core_render
from deploys.core.render import RenderError, render, url_host
from deploys.core.settings import Settings
from deploys.core.silences import alertmanager_url
from deploys.monitoring.alerting import DEFAULT_RECEIVER

# Filesystems DiskNearlyFull leaves out: memory-backed, container layers, read-only images.
IGNORED_FSTYPES = ("tmpfs", "ramfs", "devtmpfs", "overlay", "squashfs", "iso9660", "nsfs", "fuse.lxcfs")


GRAFANA_DATASOURCE_UID = "triton-embeddinggemma-prometheus"


GRAFANA_DASHBOARD = "monitoring/grafana/triton-embeddinggemma.json"  # under templates/, not a jinja2 template (Grafana's {{legend}})


class ScrapeTarget(Protocol):
    """What :func:`prometheus_config` reads of a target (deploys/monitoring/logic.py's ``ScrapeTarget`` has it)."""

    @property
    def job(self) -> str: ...
    @property
    def instance(self) -> str: ...  # the inventory host name
    @property
    def role(self) -> str: ...
    @property
    def address(self) -> str: ...  # an IP address (bracketed here when v6) or a host name
    @property
    def port(self) -> int: ...


def _scrape_host(address: str) -> str:
    try:
        return url_host(address)
    except ValueError:
        return address  # a host name


def prometheus_config(s: Settings, targets: Sequence[ScrapeTarget], rule_files: Sequence[str] = (paths.PROMETHEUS_RULES,)) -> str:
    """The monitoring host's prometheus.yml (templates/monitoring/prometheus.yml.j2) for its settings ``s``.

    ``targets``: one per host and endpoint (deploys/monitoring/logic.py:scrape_targets), grouped into
    one job each in the order they first appear; ``rule_files``: the alert rules' paths (the host's
    PROMETHEUS_RULES; a test passes where it rendered them, as ``promtool check config`` opens them).
    """
    jobs: dict[str, list[dict[str, Any]]] = {}
    for t in targets:
        jobs.setdefault(t.job, []).append({"address": f"{_scrape_host(t.address)}:{int(t.port)}", "instance": t.instance, "role": t.role})
    return render(
        "prometheus.yml.j2",
        s=s,
        scrape_timeout_s=min(s.monitoring_scrape_interval_s, 10),
        rule_files=list(rule_files),
        alertmanager=alertmanager_target(s),
        jobs=[{"name": name, "targets": found} for name, found in jobs.items()],
    )


# The alerts of a host's services, which that host's HostDown inhibits (alertmanager.yml's inhibit_rules).
SERVICE_ALERTS = (
    "TritonModelNotReady",
    "FrontDoorBackendDown",
    "FrontDoorBackendDrained",
    "FrontDoorNoBackend",
    "GatewayErrorRatioHigh",
    "GatewayLatencyP95High",
    "TritonQueueTimeHigh",
    "GpuMemoryNearlyFull",
    "DiskNearlyFull",
)


def alertmanager_target(s: Settings) -> str:
    """host:port where the monitoring host's own Prometheus reaches its Alertmanager."""
    return alertmanager_url(s).removeprefix("http://")


def alertmanager_config(s: Settings, receivers: Any) -> str:
    """alertmanager.yml (templates/monitoring/alertmanager.yml.j2) of the monitoring host ``s``; ``receivers``:
    deploys/monitoring/alerting.py:Receivers (checked). The text holds the receivers' secrets."""
    return render(
        "alertmanager.yml.j2",
        s=s,
        receivers=list(receivers.receivers),
        smtp=receivers.smtp,
        default_receiver=DEFAULT_RECEIVER,
        service_alerts=SERVICE_ALERTS,
    )


def alertmanager_defaults(s: Settings, config_file: str = paths.ALERTMANAGER_CONFIG, data_dir: str = paths.ALERTMANAGER_DATA_DIR) -> str:
    """/etc/default/prometheus-alertmanager (templates/monitoring/prometheus-alertmanager.default.j2): config, storage, listen address, no cluster."""
    for value in (config_file, data_dir):
        if not value or any(c.isspace() or c in "\"'\\$" for c in value):
            raise RenderError(f"alertmanager_defaults: {value!r} cannot be one word of systemd's $ARGS")
    listen = f"{url_host(s.monitoring_alertmanager_listen_address)}:{s.monitoring_alertmanager_port}"
    return render("prometheus-alertmanager.default.j2", config_file=config_file, data_dir=data_dir, listen=listen)


def prometheus_alerts(s: Settings) -> str:
    """The alert rules (templates/monitoring/prometheus-alerts.yml.j2) from the monitoring host's settings ``s``."""
    return render(
        "prometheus-alerts.yml.j2",
        s=s,
        model_name=s.model_name,
        backend=paths.HAPROXY_BACKEND,
        window=f"{s.monitoring_rate_window_s}s",
        ignored_fstypes="|".join(IGNORED_FSTYPES),
    )


def prometheus_defaults(s: Settings, config_file: str = paths.PROMETHEUS_CONFIG, data_dir: str = paths.PROMETHEUS_DATA_DIR) -> str:
    """/etc/default/prometheus (templates/monitoring/prometheus.default.j2): config, storage, retention, listen address."""
    for value in (config_file, data_dir):
        if not value or any(c.isspace() or c in "\"'\\$" for c in value):
            raise RenderError(f"prometheus_defaults: {value!r} cannot be one word of systemd's $ARGS")
    listen = f"{url_host(s.monitoring_listen_address)}:{s.monitoring_port}"
    return render("prometheus.default.j2", s=s, config_file=config_file, data_dir=data_dir, listen=listen)


def node_exporter_defaults(s: Settings) -> str:
    """/etc/default/prometheus-node-exporter (templates/monitoring/prometheus-node-exporter.default.j2): the listen address."""
    listen = f"{url_host(s.monitoring_exporter_address)}:{s.monitoring_node_exporter_port}"
    return render("prometheus-node-exporter.default.j2", listen=listen)


def prometheus_url(s: Settings) -> str:
    """Where the monitoring host ``s`` serves Prometheus's API (its inventory name when it listens everywhere)."""
    address = s.monitoring_listen_address
    host = s.host if ipaddress.ip_address(address).is_unspecified else url_host(address)
    return f"http://{host}:{s.monitoring_port}"


def grafana_datasource(s: Settings) -> str:
    """Grafana's datasource provisioning file (templates/monitoring/grafana/datasource.yml.j2) for the monitoring host ``s``."""
    return render(
        "grafana/datasource.yml.j2", url=prometheus_url(s), uid=GRAFANA_DATASOURCE_UID, scrape_interval_s=s.monitoring_scrape_interval_s
    )


def grafana_dashboards_provider(dashboards_dir: str = paths.GRAFANA_DASHBOARDS_DIR) -> str:
    """Grafana's dashboard provider file (templates/monitoring/grafana/dashboards.yml.j2): the dashboard JSON is read from ``dashboards_dir``."""
    return render("grafana/dashboards.yml.j2", dashboards_dir=dashboards_dir)


def grafana_dashboard() -> str:
    """The fleet's Grafana dashboard (templates/monitoring/grafana/triton-embeddinggemma.json), as it is: checked as JSON."""
    text = (core_render.TEMPLATES_DIR / GRAFANA_DASHBOARD).read_text(encoding="utf-8")  # read at call time: tests point it at a copy
    try:
        json.loads(text)
    except json.JSONDecodeError as error:
        raise RenderError(f"template {GRAFANA_DASHBOARD} is not JSON: {error}") from None
    return text


DCGM_EXPORTER_PROJECT = "dcgm-exporter"  # compose project and container name on GPU hosts


def dcgm_exporter_compose(s: Settings, image: str | None = None) -> str:
    """The dcgm-exporter compose file (templates/monitoring/dcgm-exporter.compose.yml.j2) of a GPU host ``s``;
    ``image``: the reference it pulls dcgm-exporter by (default ``monitoring_dcgm_exporter_image``)."""
    return render(
        "dcgm-exporter.compose.yml.j2",
        s=s,
        image=s.monitoring_dcgm_exporter_image if image is None else image,
        project=DCGM_EXPORTER_PROJECT,
        listen_host=url_host(s.monitoring_exporter_address),
    )
