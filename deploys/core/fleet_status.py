"""The fleet status table (deploys/status.py): what each host reports (its release and READY, the
front doors' pool, Prometheus's figures), gathered while pyinfra reads the hosts' facts, one table
once every host has reported. Read-only: nothing here plans an operation."""

from __future__ import annotations

from typing import Any

from pyinfra import logger

from deploys.core import context

# What Prometheus is asked, per Triton host (the instance label is the inventory host name).
QUERIES = {
    "requests_per_s": 'sum by (instance) (rate(embeddings_gateway_requests_total{job="gateway", endpoint="embeddings"}[1m]))',
    "p95_ms": 'histogram_quantile(0.95, sum by (instance, le) (rate(embeddings_gateway_request_seconds_bucket{job="gateway"}[5m]))) * 1000',
    "gpu_memory_mib": 'sum by (instance) (DCGM_FI_DEV_FB_USED{job="dcgm"})',
}


def record(state: Any, host_name: str, kind: str, data: dict[str, Any]) -> None:
    """Keep what ``host_name`` (a ``triton``, ``front_door``, ``monitoring`` or ``registry_cache`` host) reported; once
    every active host has reported, log the table."""
    ctx = context.of(state)
    with ctx.lock:
        reports = ctx.fleet_reports
        reports[host_name] = (kind, data)
        expected = {h.name for h in state.inventory.iter_activated_hosts()} - {h.name for h in state.failed_hosts}
        if not expected <= set(reports) or ctx.fleet_printed:
            return
        ctx.fleet_printed = True
        rows = dict(reports)
    logger.info("Fleet status\n%s", table(rows, [h.name for h in state.inventory]))


def _number(value: float | None, digits: int) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def table(reports: dict[str, tuple[str, dict[str, Any]]], order: list[str]) -> str:
    """One line per Triton host: release, READY, its state in each front door's pool, requests/s,
    p95 (ms) and GPU memory (MiB) from Prometheus ('-' where there is no figure); then one line per
    front door, registry cache and monitoring host; on every line the host's alerts firing and the
    end of its active silence, from Alertmanager."""
    pools = {name: data["pool"] for name, (kind, data) in reports.items() if kind == "front_door"}
    figures = next((data["figures"] for kind, data in reports.values() if kind == "monitoring"), None)
    alerting = next((data.get("alerting") for kind, data in reports.values() if kind == "monitoring"), None)
    rows = [("host", "role", "release", "READY", "front-door pool", "requests/s", "p95 ms", "GPU MiB", "alerts firing", "silenced until")]
    for name in [n for n in order if n in reports]:
        kind, data = reports[name]
        rows.append(_row(name, kind, data, pools, figures) + _alerting(name, alerting))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip() for row in rows]
    live = {name: data.get("current") for name, (kind, data) in reports.items() if kind == "triton"}
    return "\n".join([*lines, one_release(live, [n for n in order if n in live])])


def _alerting(name: str, alerting: dict[str, Any] | None) -> tuple[str, str]:
    """The host's alerts firing (notified: not silenced, not inhibited) and the end of its latest
    silence, from Alertmanager ('-': none, or no Alertmanager answered)."""
    if not alerting or not alerting.get("answered"):
        return ("-", "-")
    firing = ",".join(alerting["firing"].get(name, [])) or "-"
    until = alerting["silenced"].get(name, "")
    return (firing, until[:19].replace("T", " ") + "Z" if until else "-")


def _row(name: str, kind: str, data: dict[str, Any], pools: dict[str, Any], figures: dict[str, Any] | None) -> tuple[str, ...]:
    """One host's cells up to GPU MiB."""
    if kind == "triton":
        pool = ", ".join(f"{door}: {servers.get(name, 'absent')}" for door, servers in sorted(pools.items())) or "-"
        f = {key: (figures or {}).get(key, {}).get(name) for key in QUERIES}
        return (
            name,
            "triton",
            data.get("current") or "-",
            "yes" if data.get("model_ready") else "NO",
            pool,
            _number(f["requests_per_s"], 2) if figures is not None else "-",
            _number(f["p95_ms"], 1) if figures is not None else "-",
            _number(f["gpu_memory_mib"], 0) if figures is not None else "-",
        )
    if kind == "front_door":
        up = sum(1 for state in data["pool"].values() if state == "UP")
        return (name, "front door", "-", "-", f"{up}/{len(data['pool'])} UP", "-", "-", "-")
    if kind == "registry_cache":
        used = data.get("used_bytes")
        return (name, "registry cache", "-", "-", "-" if used is None else f"{used / 2**30:.1f} GiB cached", "-", "-", "-")
    answered = "Prometheus answered" if figures else "Prometheus did not answer"
    return (name, "monitoring", "-", "-", answered, "-", "-", "-")


def one_release(live: dict[str, str | None], order: list[str]) -> str:
    """One line: whether the Triton hosts (``live``: host → its live release) are on one release
    (a release id is the same on every host with the same settings: deploys/triton/release.py), and
    else which hosts differ from the release most of them are on."""
    if not live:
        return "Triton fleet: no Triton host reported"
    counts: dict[str, int] = {}
    for host in order:
        counts[live[host] or "none"] = counts.get(live[host] or "none", 0) + 1
    if len(counts) == 1:
        return f"Triton fleet on one release: {next(iter(counts))} ({len(live)} host(s))"
    most = max(counts, key=lambda r: counts[r])  # ties: the first host's
    differ = ", ".join(f"{h} ({live[h] or 'none'})" for h in order if (live[h] or "none") != most)
    return f"Triton fleet on {len(counts)} releases: {most} on {counts[most]} host(s); differ: {differ}"


def pool_states(servers: list[dict[str, Any]]) -> dict[str, str]:
    """HAProxy server name → UP, DOWN, DRAIN or MAINT (the admin state wins when it is not ready)."""
    found = {}
    for server in servers:
        admin = server["admin_state"]
        found[server["name"]] = admin.upper() if admin != "ready" else server["operational_state"].upper()
    return found
