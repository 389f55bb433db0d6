"""The monitoring files (Prometheus scrape config, alert rules, /etc/default files, Grafana dashboard and
provisioning), rendered by deploys/core/render.py from an inventory and judged by the real tools.

- The scrape targets come from the inventory (deploys/monitoring/logic.py): one job per kind of
  endpoint, instance = host name, a role; another host's endpoint on loopback is a one-line error.
- ``promtool check config`` / ``check rules`` accept the rendered files, and refuse broken ones.
- ``promtool test rules`` runs tests/promtool/alerts.test.yml (firing and quiet cases for every
  alert); changing any alert's threshold, ``for`` or model name makes its cases fail.
- A real ``prometheus`` runs the rendered config and /etc/default/prometheus ARGS: listen address,
  retention, every alert with its ``for``, every target with its labels; a real node exporter runs
  its rendered ARGS.
- Every metric name in the alerts' and the dashboard's PromQL is one the fleet exports: the
  gateway's from embeddings_gateway/app.py's registry, the others from tests/support/metric_names.py's
  documented list, whose Triton, HAProxy and node-exporter names are checked against the real
  binaries (tritonserver from nvidia-pytriton, Debian's haproxy and prometheus-node-exporter).
  dcgm-exporter's names (etc/default-counters.csv of NVIDIA/dcgm-exporter) need a GPU: not run here.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shlex
import shutil
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from pyinfra.api import Inventory

from deploys.core import paths, render, settings
from deploys.core.render import RenderError
from deploys.core.settings import Settings, SettingsError
from deploys.front_door import render as front_door_render
from deploys.monitoring import logic as monitoring
from deploys.monitoring import render as monitoring_render
from deploys.monitoring.logic import ScrapeTarget
from deploys.triton import render as triton_render
from tests.support import metric_names
from tests.support.net import free_port

PROMTOOL = shutil.which("promtool")
PROMETHEUS = shutil.which("prometheus")
NODE_EXPORTER = shutil.which("prometheus-node-exporter")
HAPROXY = shutil.which("haproxy")
ALERTS_TEST = Path(__file__).parent / "promtool" / "alerts.test.yml"
needs_promtool = pytest.mark.skipif(PROMTOOL is None, reason="promtool is not installed (tests/system_deps.sh installs prometheus)")

# The thresholds tests/promtool/alerts.test.yml is written for (its series sit on both sides of them).
RULE_SETTINGS: dict[str, Any] = {
    "model_name": "embeddinggemma",
    "monitoring_rate_window_s": 300,
    "monitoring_model_not_ready_for_s": 60,
    "monitoring_backend_down_for_s": 60,
    "monitoring_backend_drained_for_s": 60,
    "monitoring_host_down_for_s": 60,
    "monitoring_error_ratio": 0.05,
    "monitoring_error_ratio_for_s": 300,
    "monitoring_p95_latency_s": 1.0,
    "monitoring_p95_latency_for_s": 300,
    "monitoring_queue_time_ms": 100.0,
    "monitoring_queue_time_for_s": 300,
    "monitoring_gpu_memory_ratio": 0.9,
    "monitoring_gpu_memory_for_s": 300,
    "monitoring_disk_free_ratio": 0.1,
    "monitoring_disk_free_for_s": 300,
}
ALERTS = (
    "TritonModelNotReady",
    "FrontDoorBackendDown",
    "FrontDoorBackendDrained",
    "FrontDoorNoBackend",
    "GatewayErrorRatioHigh",
    "GatewayLatencyP95High",
    "TritonQueueTimeHigh",
    "GpuMemoryNearlyFull",
    "DiskNearlyFull",
    "HostDown",
)
# For each alert, changes that must make its cases fail: a firing case that no longer fires (a higher
# threshold, a longer `for`) and a quiet one that fires (a lower threshold, no `for`).
BREAKS: list[tuple[str, dict[str, Any]]] = [
    ("TritonModelNotReady", {"monitoring_model_not_ready_for_s": 300}),
    ("TritonModelNotReady", {"monitoring_model_not_ready_for_s": 0}),
    ("TritonModelNotReady", {"model_name": "other"}),
    ("FrontDoorBackendDown", {"monitoring_backend_down_for_s": 300}),
    ("FrontDoorBackendDown", {"monitoring_backend_down_for_s": 0}),
    ("FrontDoorBackendDrained", {"monitoring_backend_drained_for_s": 300}),
    ("FrontDoorBackendDrained", {"monitoring_backend_drained_for_s": 0}),
    ("FrontDoorNoBackend", {"monitoring_backend_down_for_s": 300}),
    ("FrontDoorNoBackend", {"monitoring_backend_down_for_s": 0}),
    ("GatewayErrorRatioHigh", {"monitoring_error_ratio": 0.2}),
    ("GatewayErrorRatioHigh", {"monitoring_error_ratio": 0.005}),
    ("GatewayErrorRatioHigh", {"monitoring_error_ratio_for_s": 600}),
    ("GatewayLatencyP95High", {"monitoring_p95_latency_s": 5.0}),
    ("GatewayLatencyP95High", {"monitoring_p95_latency_s": 0.1}),
    ("GatewayLatencyP95High", {"monitoring_p95_latency_for_s": 600}),
    ("TritonQueueTimeHigh", {"monitoring_queue_time_ms": 500.0}),
    ("TritonQueueTimeHigh", {"monitoring_queue_time_ms": 0.5}),
    ("TritonQueueTimeHigh", {"model_name": "other"}),
    ("GpuMemoryNearlyFull", {"monitoring_gpu_memory_ratio": 0.99}),
    ("GpuMemoryNearlyFull", {"monitoring_gpu_memory_ratio": 0.4}),
    ("GpuMemoryNearlyFull", {"monitoring_gpu_memory_for_s": 600}),
    ("DiskNearlyFull", {"monitoring_disk_free_ratio": 0.01}),
    ("DiskNearlyFull", {"monitoring_disk_free_ratio": 0.6}),
    ("DiskNearlyFull", {"monitoring_disk_free_for_s": 600}),
    ("HostDown", {"monitoring_host_down_for_s": 300}),
    ("HostDown", {"monitoring_host_down_for_s": 0}),
]


def private(address: str) -> dict[str, str]:
    """A Triton host's data with every metrics endpoint on ``address`` (its private address)."""
    return {"monitoring_exporter_address": address, "triton_metrics_address": address, "gateway_listen_address": address}


def fleet(data: dict[str, dict[str, Any]] | None = None) -> Inventory:
    """gpu-01 (GPU) and cpu-01 (CPU) Triton hosts, front door front1, monitoring host mon1; ``data``:
    more host data by host name."""
    data = data or {}
    return Inventory(
        (
            [
                ("gpu-01", {"gpu": True, **private("192.0.2.1"), **data.get("gpu-01", {})}),
                ("cpu-01", {"gpu": False, **private("192.0.2.2"), **data.get("cpu-01", {})}),
                (
                    "front1",
                    {"monitoring_exporter_address": "192.0.2.3", "front_door_metrics_address": "192.0.2.3", **data.get("front1", {})},
                ),
                ("mon1", data.get("mon1", {})),
            ],
            {},
        ),
        front_door=(["front1"], {}),
        monitoring=(["mon1"], {}),
    )


def host(inventory: Inventory, name: str) -> Any:
    return next(h for h in inventory if h.name == name)


def monitoring_host(inventory: Inventory, name: str = "mon1") -> Settings:
    return settings.load(host(inventory, name))


def rows(targets: list[ScrapeTarget]) -> list[tuple[str, str, str, str]]:
    return [(t.job, t.instance, t.role, f"{t.address}:{t.port}") for t in targets]


def run(*argv: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(argv), capture_output=True, text=True, timeout=timeout)


def get(url: str, timeout: float = 5) -> bytes:
    with urllib.request.urlopen(url, timeout=timeout) as response:
        return response.read()


def wait_for(predicate: Any, timeout_s: float, what: str, log: Path | None = None) -> None:
    """Poll ``predicate`` every 100 ms until it is true; fail after ``timeout_s`` (with the log's tail)."""
    deadline = time.monotonic() + timeout_s
    while True:
        with contextlib.suppress(OSError, ValueError, KeyError):
            if predicate():
                return
        if time.monotonic() > deadline:
            tail = log.read_text()[-2000:] if log and log.exists() else ""
            pytest.fail(f"{what}: not within {timeout_s}s\n{tail}")
        time.sleep(0.1)


@contextlib.contextmanager
def started(argv: list[str], log: Path) -> Iterator[subprocess.Popen[bytes]]:
    """Run ``argv`` (output to ``log``) for the block; terminate it afterwards."""
    with log.open("wb") as out:
        process = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT)
    try:
        yield process
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)


def args_of(defaults_file: str) -> list[str]:
    """The ARGS of an /etc/default file, split as systemd splits ``$ARGS``."""
    match = re.search(r'^ARGS="([^"]*)"$', defaults_file, re.MULTILINE)
    assert match, defaults_file
    return shlex.split(match.group(1))


# -- scrape targets from the inventory --


def test_scrape_targets_from_the_inventory() -> None:
    inventory = fleet()
    assert rows(monitoring.scrape_targets(monitoring_host(inventory), inventory)) == [
        ("node", "gpu-01", "triton", "192.0.2.1:9100"),
        ("triton", "gpu-01", "triton", "192.0.2.1:6002"),
        ("gateway", "gpu-01", "triton", "192.0.2.1:6080"),
        ("dcgm", "gpu-01", "triton", "192.0.2.1:9400"),
        ("node", "cpu-01", "triton", "192.0.2.2:9100"),
        ("triton", "cpu-01", "triton", "192.0.2.2:6002"),
        ("gateway", "cpu-01", "triton", "192.0.2.2:6080"),
        ("node", "front1", "front_door", "192.0.2.3:9100"),
        ("haproxy", "front1", "front_door", "192.0.2.3:8405"),
        ("node", "mon1", "monitoring", "127.0.0.1:9100"),  # its own endpoints: loopback is fine
        ("prometheus", "mon1", "monitoring", "127.0.0.1:9090"),
    ]


def test_gpu_hosts_come_from_the_caller_when_given() -> None:
    inventory = fleet()
    s = monitoring_host(inventory)
    dcgm = [t.instance for t in monitoring.scrape_targets(s, inventory, gpu_hosts={"cpu-01"}) if t.job == "dcgm"]
    assert dcgm == ["cpu-01"]
    assert [t for t in monitoring.scrape_targets(s, inventory, gpu_hosts=()) if t.job == "dcgm"] == []


def test_no_gateway_no_gateway_target_and_wildcard_listeners_are_scraped_by_host_name() -> None:
    inventory = Inventory(
        (
            [
                (
                    "gpu-01",
                    {
                        "gateway_enabled": False,
                        "monitoring_exporter_address": "0.0.0.0",
                        "triton_bind_address": "10.0.0.1",
                        "triton_bind_beyond_loopback": True,
                    },
                ),
                ("mon1", {"monitoring_listen_address": "::", "monitoring_exporter_address": "::"}),
            ],
            {},
        ),
        monitoring=(["mon1"], {}),
    )
    assert rows(monitoring.scrape_targets(monitoring_host(inventory), inventory)) == [
        ("node", "gpu-01", "triton", "gpu-01:9100"),
        ("triton", "gpu-01", "triton", "10.0.0.1:6002"),  # no triton_metrics_address: triton_bind_address
        ("node", "mon1", "monitoring", "::1:9100"),
        ("prometheus", "mon1", "monitoring", "::1:9090"),
    ]


@pytest.mark.parametrize(
    "name,data,setting",
    [
        ("gpu-01", {"monitoring_exporter_address": "127.0.0.1"}, "monitoring_exporter_address"),
        ("gpu-01", {"triton_metrics_address": ""}, "triton_bind_address"),
        ("gpu-01", {"triton_metrics_address": "::1"}, "triton_metrics_address"),
        ("cpu-01", {"gateway_listen_address": "127.0.0.1"}, "gateway_listen_address"),
        ("front1", {"front_door_metrics_address": "127.0.0.1"}, "front_door_metrics_address"),
    ],
)
def test_another_hosts_loopback_endpoint_is_one_line(name: str, data: dict[str, Any], setting: str) -> None:
    inventory = fleet({name: data})
    with pytest.raises(SettingsError) as error:
        monitoring.scrape_targets(monitoring_host(inventory), inventory)
    message = str(error.value)
    assert "\n" not in message
    assert message.startswith(f"host {name}: setting {setting}=") and "is loopback, so Prometheus on mon1 cannot scrape" in message


def test_metric_endpoints_default_to_loopback() -> None:
    """Issue 14: metric endpoints reachable by Prometheus only, never 0.0.0.0 by default."""
    s = settings.parse("h", {})
    for name in ("monitoring_listen_address", "monitoring_exporter_address", "front_door_metrics_address", "gateway_listen_address"):
        assert getattr(s, name) == "127.0.0.1", name
    assert s.triton_metrics_address == "" and s.triton_bind_address == "127.0.0.1"


@pytest.mark.parametrize(
    "data,message",
    [
        ({"monitoring_rate_window_s": 30}, "monitoring_rate_window_s=30 is invalid (must be ≥ 4 × monitoring_scrape_interval_s=15"),
        ({"monitoring_scrape_interval_s": 1, "monitoring_rate_window_s": 10}, None),
        ({"monitoring_retention": "15 days"}, "a Prometheus duration"),
        ({"monitoring_retention": "1y2w"}, None),
        ({"monitoring_dcgm_exporter_port": 9100}, "the node exporter has that port"),
        ({"monitoring_error_ratio": 1.5}, "a number from 0.0 to 1.0"),
        ({"triton_metrics_address": "private"}, "an IP address such as 10.0.0.5, or empty"),
        ({"monitoring_listen_adress": "10.0.0.1"}, "did you mean monitoring_listen_address?"),
    ],
)
def test_monitoring_settings_are_checked(data: dict[str, Any], message: str | None) -> None:
    if message is None:
        settings.parse("mon1", data)
        return
    with pytest.raises(SettingsError, match=re.escape(message)):
        settings.parse("mon1", data)


def test_triton_metrics_address_moves_only_the_metrics_port() -> None:
    def ports(**data: Any) -> list[str]:
        return yaml.safe_load(triton_render.compose_file(settings.parse("h", data), gpu=False))["services"]["triton"]["ports"]

    assert ports() == ["127.0.0.1:6000:8000", "127.0.0.1:6001:8001", "127.0.0.1:6002:8002"]
    assert ports(triton_metrics_address="10.0.0.5") == ["127.0.0.1:6000:8000", "127.0.0.1:6001:8001", "10.0.0.5:6002:8002"]
    assert ports(triton_metrics_address="fd00::5")[2] == "[fd00::5]:6002:8002"


# -- prometheus.yml and the alert rules, judged by promtool --


def render_files(directory: Path, inventory: Inventory) -> tuple[Path, Path]:
    """prometheus.yml and alerts.yml of mon1 in ``directory``; the config names the rules there."""
    s = monitoring_host(inventory)
    alerts = directory / "alerts.yml"
    alerts.write_text(monitoring_render.prometheus_alerts(s))
    config = directory / "prometheus.yml"
    config.write_text(monitoring_render.prometheus_config(s, monitoring.scrape_targets(s, inventory), rule_files=[str(alerts)]))
    return config, alerts


@needs_promtool
@pytest.mark.parametrize(
    "overrides", [{}, {"monitoring_scrape_interval_s": 1, "monitoring_rate_window_s": 10}, {"monitoring_listen_address": "::1"}]
)
def test_promtool_accepts_the_rendered_config_and_rules(tmp_path: Path, overrides: dict[str, Any]) -> None:
    config, alerts = render_files(tmp_path, fleet({"mon1": overrides}))
    checked = run(str(PROMTOOL), "check", "config", str(config))
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "SUCCESS: 1 rule files found" in checked.stdout and "is valid prometheus config file syntax" in checked.stdout
    rules = run(str(PROMTOOL), "check", "rules", str(alerts))
    assert rules.returncode == 0, rules.stdout + rules.stderr
    assert f"SUCCESS: {len(ALERTS)} rules found" in rules.stdout

    parsed = yaml.safe_load(config.read_text())
    interval = overrides.get("monitoring_scrape_interval_s", 15)
    assert parsed["global"] == {
        "scrape_interval": f"{interval}s",
        "scrape_timeout": f"{min(interval, 10)}s",
        "evaluation_interval": f"{interval}s",
    }
    assert [job["job_name"] for job in parsed["scrape_configs"]] == ["node", "triton", "gateway", "dcgm", "haproxy", "prometheus"]
    by_instance = {
        (job["job_name"], group["labels"]["instance"]): (group["targets"], group["labels"]["role"])
        for job in parsed["scrape_configs"]
        for group in job["static_configs"]
    }
    assert by_instance[("dcgm", "gpu-01")] == (["192.0.2.1:9400"], "triton")
    assert by_instance[("haproxy", "front1")] == (["192.0.2.3:8405"], "front_door")
    self_address = "[::1]:9090" if overrides.get("monitoring_listen_address") == "::1" else "127.0.0.1:9090"
    assert by_instance[("prometheus", "mon1")] == ([self_address], "monitoring")


@needs_promtool
@pytest.mark.parametrize(
    "old,new,error",
    [
        ("scrape_timeout: 10s", "scrape_timeout: 20s", "scrape timeout greater than scrape interval"),
        ('job_name: "gateway"', 'job_name: "node"', 'found multiple scrape configs with job name "node"'),
        ("alerts.yml", "no-such-alerts.yml", "no-such-alerts.yml"),
    ],
)
def test_promtool_check_config_can_fail(tmp_path: Path, old: str, new: str, error: str) -> None:
    config, _ = render_files(tmp_path, fleet())
    text = config.read_text()
    assert old in text
    config.write_text(text.replace(old, new, 1))
    checked = run(str(PROMTOOL), "check", "config", str(config))
    assert checked.returncode != 0 and error in checked.stdout + checked.stderr


@needs_promtool
@pytest.mark.parametrize(
    "old,new,error",
    [
        ("== 0\n", "== \n", "parse error"),  # a broken expression
        ("for: 60s", "for: sixty", "not a valid duration string"),
    ],
)
def test_promtool_check_rules_can_fail(tmp_path: Path, old: str, new: str, error: str) -> None:
    _, alerts = render_files(tmp_path, fleet())
    text = alerts.read_text()
    assert old in text
    alerts.write_text(text.replace(old, new, 1))
    checked = run(str(PROMTOOL), "check", "rules", str(alerts))
    assert checked.returncode != 0 and error in checked.stdout + checked.stderr


def promtool_test_rules(directory: Path, **overrides: Any) -> subprocess.CompletedProcess[str]:
    """tests/promtool/alerts.test.yml against the rules rendered with RULE_SETTINGS and ``overrides``."""
    s = settings.parse("mon1", {**RULE_SETTINGS, **overrides})
    (directory / "alerts.yml").write_text(monitoring_render.prometheus_alerts(s))
    shutil.copy(ALERTS_TEST, directory / "alerts.test.yml")
    return run(str(PROMTOOL), "test", "rules", str(directory / "alerts.test.yml"))


@needs_promtool
def test_promtool_test_rules_pass(tmp_path: Path) -> None:
    tested = promtool_test_rules(tmp_path)
    assert tested.returncode == 0, tested.stdout + tested.stderr
    assert "SUCCESS" in tested.stdout


def test_every_alert_has_firing_and_quiet_cases() -> None:
    rules = metric_names.alert_expressions(monitoring_render.prometheus_alerts(settings.parse("mon1", RULE_SETTINGS)))
    assert tuple(rules) == ALERTS
    cases = [case for group in yaml.safe_load(ALERTS_TEST.read_text())["tests"] for case in group["alert_rule_test"]]
    for alert in ALERTS:
        assert any(c["alertname"] == alert and c["exp_alerts"] for c in cases), f"{alert}: no firing case"
        assert any(c["alertname"] == alert and not c["exp_alerts"] for c in cases), f"{alert}: no quiet case"
    assert {c["alertname"] for c in cases} == set(ALERTS)
    assert {alert for alert, _ in BREAKS} == set(ALERTS)


@needs_promtool
@pytest.mark.parametrize("alert,overrides", BREAKS, ids=[f"{a}-{next(iter(o))}={next(iter(o.values()))}" for a, o in BREAKS])
def test_each_alerts_cases_can_fail(tmp_path: Path, alert: str, overrides: dict[str, Any]) -> None:
    tested = promtool_test_rules(tmp_path, **overrides)
    assert tested.returncode == 1, tested.stdout + tested.stderr
    assert f"alertname: {alert}," in tested.stdout + tested.stderr


def test_alert_rules_use_the_settings() -> None:
    s = settings.parse("mon1", {**RULE_SETTINGS, "monitoring_rate_window_s": 120, "monitoring_p95_latency_s": 0.25, "model_name": "m-2"})
    rules = {rule["alert"]: rule for group in yaml.safe_load(monitoring_render.prometheus_alerts(s))["groups"] for rule in group["rules"]}
    assert "[120s]" in rules["GatewayErrorRatioHigh"]["expr"] and "[300s]" not in rules["GatewayErrorRatioHigh"]["expr"]
    assert rules["GatewayLatencyP95High"]["expr"].endswith("> 0.25")
    assert 'model="m-2"' in rules["TritonModelNotReady"]["expr"] and 'model="m-2"' in rules["TritonQueueTimeHigh"]["expr"]
    assert f'proxy="{paths.HAPROXY_BACKEND}"' in rules["FrontDoorBackendDown"]["expr"]
    assert {name: rule["for"] for name, rule in rules.items()} == {
        "TritonModelNotReady": "60s",
        "FrontDoorBackendDown": "60s",
        "FrontDoorBackendDrained": "60s",
        "FrontDoorNoBackend": "60s",
        "GatewayErrorRatioHigh": "300s",
        "GatewayLatencyP95High": "300s",
        "TritonQueueTimeHigh": "300s",
        "GpuMemoryNearlyFull": "300s",
        "DiskNearlyFull": "300s",
        "HostDown": "60s",
    }
    assert {rule["labels"]["severity"] for rule in rules.values()} == {"critical", "warning"}


# -- /etc/default files, and the real binaries running them --


def test_defaults_files() -> None:
    s = settings.parse(
        "mon1", {"monitoring_retention": "30d", "monitoring_listen_address": "fd00::9", "monitoring_exporter_address": "10.0.0.9"}
    )
    assert args_of(monitoring_render.prometheus_defaults(s)) == [
        f"--config.file={paths.PROMETHEUS_CONFIG}",
        f"--storage.tsdb.path={paths.PROMETHEUS_DATA_DIR}",
        "--storage.tsdb.retention.time=30d",
        "--web.listen-address=[fd00::9]:9090",
    ]
    assert args_of(monitoring_render.node_exporter_defaults(s)) == ["--web.listen-address=10.0.0.9:9100"]
    with pytest.raises(RenderError, match="cannot be one word"):
        monitoring_render.prometheus_defaults(s, data_dir="/var/lib/my prometheus")


@pytest.mark.skipif(PROMETHEUS is None or PROMTOOL is None, reason="prometheus is not installed (tests/system_deps.sh installs it)")
def test_prometheus_runs_the_rendered_files(tmp_path: Path) -> None:
    port = free_port()
    mon1 = {
        "monitoring_port": port,
        "monitoring_retention": "3d",
        "monitoring_scrape_interval_s": 1,
        "monitoring_rate_window_s": 10,
        "monitoring_host_down_for_s": 45,
    }
    inventory = fleet({"mon1": mon1})
    config, _ = render_files(tmp_path, inventory)
    s = monitoring_host(inventory)
    argv = [str(PROMETHEUS), *args_of(monitoring_render.prometheus_defaults(s, config_file=str(config), data_dir=str(tmp_path / "data")))]
    api = f"http://127.0.0.1:{port}"
    log = tmp_path / "prometheus.log"
    with started(argv, log):
        wait_for(lambda: get(f"{api}/-/ready") is not None, 30, "Prometheus ready", log)
        flags = json.loads(get(f"{api}/api/v1/status/flags"))["data"]
        assert flags["storage.tsdb.retention.time"] == "3d"
        assert flags["web.listen-address"] == f"127.0.0.1:{port}"
        groups = json.loads(get(f"{api}/api/v1/rules"))["data"]["groups"]
        loaded = {rule["name"]: rule for group in groups for rule in group["rules"]}
        assert set(loaded) == set(ALERTS) and all(rule["health"] != "err" for rule in loaded.values())
        assert loaded["HostDown"]["duration"] == 45 and loaded["GatewayErrorRatioHigh"]["duration"] == 300
        expected = {(t.job, t.instance, t.role) for t in monitoring.scrape_targets(s, inventory)}

        def targets() -> list[dict[str, Any]]:
            return json.loads(get(f"{api}/api/v1/targets?state=active"))["data"]["activeTargets"]

        wait_for(lambda: len(targets()) == len(expected), 10, "every target active", log)
        assert {(t["labels"]["job"], t["labels"]["instance"], t["labels"]["role"]) for t in targets()} == expected
        # Its own target answers: the scrape config works end to end (the others are TEST-NET addresses).
        wait_for(lambda: any(t["labels"]["job"] == "prometheus" and t["health"] == "up" for t in targets()), 15, "self-scrape up", log)


@pytest.mark.skipif(NODE_EXPORTER is None, reason="prometheus-node-exporter is not installed (tests/system_deps.sh installs it)")
def test_node_exporter_runs_its_rendered_args_and_exports_the_documented_names(tmp_path: Path) -> None:
    port = free_port()
    s = settings.parse("gpu-01", {"monitoring_node_exporter_port": port})
    log = tmp_path / "node-exporter.log"
    with started([str(NODE_EXPORTER), *args_of(monitoring_render.node_exporter_defaults(s))], log):
        text: list[str] = []
        wait_for(lambda: text.append(get(f"http://127.0.0.1:{port}/metrics").decode()) is None, 15, "node exporter /metrics", log)
    documented = set(metric_names.EXPORTED_METRICS[monitoring.JOB_NODE])
    names = exposition_names(text[0])
    assert documented <= names, sorted(documented - names)


@dataclass(frozen=True)
class Gateway:
    name: str
    address: str
    port: int
    health_port: int = 6081


@pytest.mark.skipif(HAPROXY is None, reason="haproxy is not installed (tests/system_deps.sh installs it)")
def test_haproxy_exports_the_documented_names(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    if os.geteuid() != 0:
        pytest.skip("the rendered config chroots to /var/lib/haproxy and runs as user haproxy: needs root")
    monkeypatch.setattr(paths, "HAPROXY_ADMIN_SOCKET", str(tmp_path / "admin.sock"))
    metrics_port = free_port()
    s = settings.parse(
        "front1", {"front_door_listen_address": "127.0.0.1", "front_door_port": free_port(), "front_door_metrics_port": metrics_port}
    )
    config = tmp_path / "haproxy.cfg"
    config.write_text(front_door_render.haproxy_config(s, [Gateway("gpu-01", "127.0.0.1", free_port())], ""))
    log = tmp_path / "haproxy.log"
    with started([str(HAPROXY), "-W", "-db", "-f", str(config)], log):
        text: list[str] = []
        wait_for(lambda: text.append(get(f"http://127.0.0.1:{metrics_port}/metrics").decode()) is None, 10, "HAProxy /metrics", log)
    names = exposition_names(text[0])
    documented = set(metric_names.EXPORTED_METRICS[monitoring.JOB_HAPROXY])
    assert documented <= names, sorted(documented - names)
    # The proxies the alerts and the dashboard select exist under those names.
    assert f'haproxy_backend_active_servers{{proxy="{paths.HAPROXY_BACKEND}"}}' in text[0]
    # FrontDoorNoBackend reads the checked backend only; the fallback's unchecked servers count as active.
    assert f'haproxy_backend_active_servers{{proxy="{paths.HAPROXY_FALLBACK_BACKEND}"}} 1' in text[0]
    assert 'haproxy_frontend_http_requests_total{proxy="embeddings"}' in text[0]
    assert f'haproxy_server_status{{proxy="{paths.HAPROXY_BACKEND}",server="gpu-01",state="DOWN"}}' in text[0]


def test_triton_exports_the_documented_names_once_the_model_is_loaded(hub: Path, tmp_path: Path) -> None:
    """The real tritonserver (nvidia-pytriton's, with the onnxruntime stand-in) on the tiny model: the
    documented names (GPU ones aside: no GPU here) are in its /metrics, and the model's counters are
    there at 0 right after the load, which TritonModelNotReady relies on."""
    pytest.importorskip("pytriton")
    from tests.support import tritonserver as ts

    root = ts.triton_dir(tmp_path / "triton", hub, ts.cpu_config())
    with ts.serve(root / "models", tmp_path / "work") as server:
        text = get(f"http://127.0.0.1:{server.metrics_port}/metrics").decode()
    documented = {name for name in metric_names.EXPORTED_METRICS[monitoring.JOB_TRITON] if not name.startswith("nv_gpu_")}
    names = exposition_names(text)
    assert documented <= names, sorted(documented - names)
    assert re.search(r'^nv_inference_request_success\{model="embeddinggemma",version="1"\} 0$', text, re.MULTILINE)


# -- metric names: what the alerts and the dashboard use is what the fleet exports --


def exposition_names(text: str) -> set[str]:
    return {re.split(r"[{ ]", line, maxsplit=1)[0] for line in text.splitlines() if line and not line.startswith("#")}


def used_expressions() -> dict[str, str]:
    alerts = metric_names.alert_expressions(monitoring_render.prometheus_alerts(settings.parse("mon1", {})))
    return {
        **{f"alert {name}": expr for name, expr in alerts.items()},
        **metric_names.dashboard_expressions(monitoring_render.grafana_dashboard()),
    }


def test_gateway_metric_names_come_from_its_registry() -> None:
    names = metric_names.gateway_metric_names()
    for name in (
        "embeddings_gateway_requests_total",
        "embeddings_gateway_request_seconds_bucket",
        "embeddings_gateway_triton_batch_size_sum",
        "embeddings_gateway_triton_batch_size_count",
        "embeddings_gateway_triton_errors_total",
        "embeddings_gateway_queued",
    ):
        assert name in names
    assert "embeddings_gateway_requests" not in names  # a counter's samples end in _total


def test_every_metric_the_alerts_and_the_dashboard_use_is_exported() -> None:
    exported = metric_names.exported_metric_names()
    expressions = used_expressions()
    assert len(expressions) > len(ALERTS) + 10
    unknown = {}
    for where, expr in expressions.items():
        used = metric_names.promql_metric_names(expr)
        assert used, f"{where}: no metric name found in {expr!r}"
        if used - set(exported):
            unknown[where] = sorted(used - set(exported))
    assert not unknown, unknown
    used_jobs = {exported[name] for expr in expressions.values() for name in metric_names.promql_metric_names(expr)}
    assert used_jobs == {"gateway (embeddings_gateway/app.py)", "triton", "haproxy", "node", "dcgm", "*"}


def test_the_metric_name_check_can_fail() -> None:
    text = monitoring_render.grafana_dashboard().replace("nv_inference_queue_duration_us", "nv_inference_queue_time_us")
    exported = set(metric_names.exported_metric_names())
    unknown = {n for expr in metric_names.dashboard_expressions(text).values() for n in metric_names.promql_metric_names(expr)} - exported
    assert unknown == {"nv_inference_queue_time_us"}


@pytest.mark.parametrize(
    "expr,names",
    [
        ('sum by (instance, le) (rate(a_bucket{job="x", code=~"5.."}[5m]))', {"a_bucket"}),
        ('rate(b_total{instance=~"$instance"}[$__rate_interval]) / on (instance) group_left (role) c > 1e3', {"b_total", "c"}),
        ('up == 0 or (up == 1 unless on (instance) d{model="m"}) and bool e offset 5m', {"up", "d", "e"}),
        ('histogram_quantile(0.95, sum without (pod) (rate(f{le!="", x="or"}[1m]))) * 100', {"f"}),
        ('label_replace(g, "dst", "$1", "src", "(.*)")', {"g"}),
        ("max_over_time(h[10m:1m]) @ 1609746000", {"h"}),
    ],
)
def test_promql_metric_names(expr: str, names: set[str]) -> None:
    assert metric_names.promql_metric_names(expr) == names


@needs_promtool
def test_dashboard_expressions_parse_as_promql(tmp_path: Path) -> None:
    """promtool parses every dashboard query (Grafana's variables replaced by values), as recording rules."""
    rules = []
    for n, expr in enumerate(metric_names.dashboard_expressions(monitoring_render.grafana_dashboard()).values()):
        query = expr.replace("$__rate_interval", "1m").replace("$instance", ".*")
        rules.append({"record": f"dashboard:query_{n}", "expr": query})
    path = tmp_path / "dashboard-rules.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}))
    checked = run(str(PROMTOOL), "check", "rules", str(path))
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert f"SUCCESS: {len(rules)} rules found" in checked.stdout


# -- Grafana: the dashboard and the provisioning files --


def test_dashboard_shape() -> None:
    dashboard = json.loads(monitoring_render.grafana_dashboard())
    panels = dashboard["panels"]
    assert len({p["id"] for p in panels}) == len(panels)
    for panel in panels:
        assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}, panel["title"]
        assert set(panel["gridPos"]) == {"h", "w", "x", "y"}
        refs = [t["refId"] for t in panel["targets"]]
        assert refs and len(set(refs)) == len(refs)
        assert all(t["datasource"] == panel["datasource"] for t in panel["targets"])
    titles = " | ".join(p["title"] for p in panels).lower()
    for topic in ("requests/s", "p50 / p95", "errors", "batch sizes", "queue", "gpu utilisation", "gpu memory"):
        assert topic in titles, topic
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource" and variables["datasource"]["query"] == "prometheus"
    assert variables["datasource"]["current"]["value"] == monitoring_render.GRAFANA_DATASOURCE_UID
    assert variables["instance"]["query"]["query"] == "label_values(up, instance)"


def test_grafana_provisioning_files() -> None:
    s = settings.parse(
        "mon1",
        {
            "monitoring_listen_address": "10.0.0.9",
            "monitoring_port": 9091,
            "monitoring_scrape_interval_s": 5,
            "monitoring_rate_window_s": 60,
        },
    )
    datasource = yaml.safe_load(monitoring_render.grafana_datasource(s))
    assert datasource["apiVersion"] == 1
    [source] = datasource["datasources"]
    assert source["type"] == "prometheus" and source["access"] == "proxy"
    assert source["url"] == "http://10.0.0.9:9091" and source["uid"] == monitoring_render.GRAFANA_DATASOURCE_UID
    assert source["jsonData"] == {"timeInterval": "5s"}
    everywhere = yaml.safe_load(monitoring_render.grafana_datasource(settings.parse("mon1", {"monitoring_listen_address": "0.0.0.0"})))
    assert everywhere["datasources"][0]["url"] == "http://mon1:9090"
    assert (
        yaml.safe_load(monitoring_render.grafana_datasource(settings.parse("mon1", {"monitoring_listen_address": "fd00::9"})))[
            "datasources"
        ][0]["url"]
        == "http://[fd00::9]:9090"
    )

    [provider] = yaml.safe_load(monitoring_render.grafana_dashboards_provider())["providers"]
    assert provider["type"] == "file" and provider["options"]["path"] == paths.GRAFANA_DASHBOARDS_DIR
    assert yaml.safe_load(monitoring_render.grafana_dashboards_provider("/srv/dash"))["providers"][0]["options"]["path"] == "/srv/dash"


def test_broken_dashboard_is_a_render_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    copy = tmp_path / "templates"
    shutil.copytree(render.TEMPLATES_DIR, copy)
    monkeypatch.setattr(render, "TEMPLATES_DIR", copy)
    dashboard = copy / monitoring_render.GRAFANA_DASHBOARD
    dashboard.write_text(dashboard.read_text()[:-3])
    with pytest.raises(RenderError, match="is not JSON"):
        monitoring_render.grafana_dashboard()
