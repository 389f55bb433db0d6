"""The whole deploy through the real pyinfra CLI on `@fake` hosts (tests/support/fake_hosts.py).

The fake connector executes nothing and answers commands with canned, realistic outputs, so these
tests show what the deploy would do on a fresh Ubuntu 24.04 GPU host and a Debian 13 CPU host, that
the same hosts once converged plan 0 changes (and only the dependent operations when one setting or
one fact changes), that bad hosts end the run before anything runs, and which commands would be sent.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from deploys.core import settings
from deploys.core.paths import DOCKER_CE_KEYRING
from tests.support import fake_hosts as f
from tests.support import leak_probe
from tests.support.hub_server import start_with_lock

ROOT = Path(__file__).resolve().parent.parent
PYINFRA = str(Path(sys.executable).parent / "pyinfra")
CANARY_KEY = "nvapi-canary-" + "Zq7" * 12


# Small stand-ins for the model repository's files (the Hub is out of reach; tests/support/hub_server.py
# serves them the way the Hub does, with a lock that pins them).
MODEL_FILES = {
    "onnx/model.onnx": b"onnx graph " * 100,
    "onnx/model.onnx_data": b"\x00\x01weights" * 1000,
    "tokenizer.json": b'{"version": "1.0"}',
    "tokenizer_config.json": b"{}",
    "special_tokens_map.json": b"{}",
}


@pytest.fixture
def hub(tmp_path):
    """A local Hub serving MODEL_FILES; yields (url, host data pointing the model step at it)."""
    server, data = start_with_lock(tmp_path, MODEL_FILES)
    try:
        yield server.url, data
    finally:
        server.stop()


def write_inventory(tmp_path: Path, hub, hosts_code: str, front_door: str = "", monitoring: str = "", registry_cache: str = "") -> Path:
    """An inventory of fake hosts: group ``fleet``, and ``front_door`` / ``monitoring`` /
    ``registry_cache`` when given."""
    _, data = hub
    inventory = tmp_path / "inventory.py"
    inventory.write_text(
        "import json\nimport os\nfrom tests.support import fake_hosts as f\n\n"
        f"f.SETTINGS.update(json.loads({json.dumps(json.dumps(data))}))\n"
        "fleet = [\n"
        + hosts_code
        + "\n]\n"
        + (f"front_door = [\n{front_door}\n]\n" if front_door else "")
        + (f"monitoring = [\n{monitoring}\n]\n" if monitoring else "")
        + (f"registry_cache = [\n{registry_cache}\n]\n" if registry_cache else "")
    )
    return inventory


def run_fleet(
    tmp_path: Path,
    hub,
    hosts_code: str,
    *args: str,
    deploy: str = "deploys/all.py",
    front_door: str = "",
    monitoring: str = "",
    registry_cache: str = "",
) -> subprocess.CompletedProcess:
    """Write an inventory of fake hosts (:func:`write_inventory`) and run `pyinfra INVENTORY DEPLOY -y --json ARGS`."""
    url, _ = hub
    inventory = write_inventory(tmp_path, hub, hosts_code, front_door, monitoring, registry_cache)
    env = {**os.environ, "NGC_API_KEY": CANARY_KEY, "HF_ENDPOINT": url, "PYINFRA_FAKE_DELAY": "0", "PYINFRA_FAKE_DELAY_JITTER": "0"}
    return subprocess.run(
        [PYINFRA, str(inventory), deploy, "-y", "--json", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


def changed_ops(result: subprocess.CompletedProcess) -> dict[str, list[str]]:
    """Operation name → hosts where it ran commands (a change), from `--json`'s results."""
    payload = json.loads(result.stdout)
    return {op["name"]: op["success"] for op in payload["results"]["operations"] if op["success"]}


# A host's data: the fake connector's canned answers plus its settings.
FRESH_GPU = 'f.host("gpu-ubuntu", {"gpu": True, **f.SETTINGS}, f.responses(f.UBUNTU_2404_RELEASE, f.H100_X2, f.DF_PLENTY))'
FRESH_CPU = 'f.host("cpu-debian", {"gpu": False, **f.SETTINGS}, f.responses(f.DEBIAN_13_RELEASE, None, f.DF_PLENTY))'


def test_fresh_hosts_plan_the_whole_chain(tmp_path, hub):
    result = run_fleet(tmp_path, hub, FRESH_GPU + ",\n" + FRESH_CPU)
    assert result.returncode == 0, result.stderr[-3000:]
    ops = changed_ops(result)
    gpu, cpu = "@fake/gpu-ubuntu", "@fake/cpu-debian"
    for step in (
        "Docker | Docker packages",
        "Docker | Docker daemon config /etc/docker/daemon.json (merged)",
        "Triton | Triton model config (config.pbtxt)",
        "Triton | Triton compose file",
        "Triton | Start Triton (docker compose up -d)",
    ):
        assert sorted(ops[step]) == [cpu, gpu], step
    toolkit = [name for name in ops if name.startswith("NVIDIA Container Toolkit |")]
    assert toolkit and all(ops[name] == [gpu] for name in toolkit), "toolkit only on the GPU host"
    assert ops["Triton | GPU smoke test: the Triton image sees the GPUs"] == [gpu]
    assert any(name.startswith("Registry login and image pull | Docker login") for name in ops)
    assert any(name.startswith("Model files") for name in ops)
    # The chain is in order: docker before the toolkit before login before the model before Triton.
    order = [name.split(" | ")[0] for name in ops]
    steps = ["Docker", "NVIDIA Container Toolkit", "Registry login and image pull", "Model files (pinned, checksummed)", "Triton"]
    firsts = [order.index(step) for step in steps]
    assert firsts == sorted(firsts), order
    assert CANARY_KEY not in result.stdout + result.stderr


def test_fresh_host_plans_the_gateway_after_triton_and_before_verify(tmp_path, hub):
    cpu = 'f.host("cpu-debian", {**f.SETTINGS, "gpu": False, "gateway_enabled": True}, f.responses(f.DEBIAN_13_RELEASE, None, f.DF_PLENTY))'
    result = run_fleet(tmp_path, hub, cpu)
    assert result.returncode == 0, result.stderr[-3000:]
    names = list(changed_ops(result))
    gateway = [name for name in names if name.startswith("Embeddings gateway |")]
    for op in (
        "Embeddings gateway | Service user embeddings-gateway",
        "Embeddings gateway | Install the gateway runtime (pinned)",
        "Embeddings gateway | Gateway config (gateway.json)",
        "Embeddings gateway | Gateway API key hashes (sha256 only)",
        "Embeddings gateway | Gateway unit embeddings-gateway.service",
        "Embeddings gateway | Restart the gateway (code, pins, config or unit changed)",
        "Embeddings gateway | Wait for the gateway READY (≤ 60s)",
    ):
        assert op in gateway, op
    last_triton = max(i for i, name in enumerate(names) if name.startswith("Triton |"))
    assert names.index(gateway[0]) > last_triton, names


@pytest.mark.parametrize(
    "data, message",
    [
        ({"gateway_listen_address": "10.0.0.5"}, "needs API keys; add gateway_api_keys"),
        ({"gateway_listen_port": 6001}, "setting gateway_listen_port=6001 is invalid (Triton's ports"),
        ({"gateway_max_tokens": 4096}, "setting gateway_max_tokens=4096 is invalid (allowed: an integer from 1 to 2048)"),
        (
            {"gateway_length_buckets": [64, 32]},
            "setting gateway_length_buckets=[64, 32] is invalid (allowed: a non-empty, strictly ascending",
        ),
    ],
    ids=["beyond-loopback-without-keys", "port-clash", "max-tokens", "buckets"],
)
def test_bad_gateway_settings_end_the_run_with_one_line(tmp_path, hub, data, message):
    host = f'f.host("cpu-debian", {{**f.SETTINGS, "gpu": False, "gateway_enabled": True, **{data!r}}}, f.responses(f.DEBIAN_13_RELEASE, None, f.DF_PLENTY))'
    result = run_fleet(tmp_path, hub, host)
    assert result.returncode != 0
    assert message in result.stderr, result.stderr[-2000:]
    assert "Traceback" not in result.stderr
    assert json.loads(result.stdout or "{}").get("results", {}).get("totals", {}).get("success", 0) == 0


FRONT_DOOR = 'f.host("front1", dict(f.SETTINGS), f.responses(f.DEBIAN_13_RELEASE, None, f.DF_PLENTY))'


@pytest.mark.parametrize(
    "hosts, message",
    [
        ("", "the front door has no backends: the inventory has no host outside the front_door group"),
        (
            'f.host("cpu-debian", {**f.SETTINGS, "gpu": False, "gateway_enabled": True}, f.responses(f.DEBIAN_13_RELEASE, None, f.DF_PLENTY))',
            "setting gateway_listen_address='127.0.0.1' is loopback",
        ),
    ],
    ids=["no-backends", "loopback-gateway"],
)
def test_front_door_without_reachable_backends_ends_the_run_with_one_line(tmp_path, hub, hosts, message):
    result = run_fleet(tmp_path, hub, hosts, front_door=FRONT_DOOR)
    assert result.returncode != 0
    assert message in result.stderr, result.stderr[-2000:]
    assert "Traceback" not in result.stderr
    assert json.loads(result.stdout or "{}").get("results", {}).get("totals", {}).get("success", 0) == 0


# A monitoring host, and a CPU host whose metrics endpoints listen on its private address.
MONITOR = 'f.host("mon1", {**f.SETTINGS, "monitoring_exporter_address": "10.0.0.9", "monitoring_listen_address": "10.0.0.9"}, f.responses(f.DEBIAN_13_RELEASE, None, f.DF_PLENTY))'
SCRAPED_CPU = 'f.host("cpu-debian", {"gpu": False, **f.SETTINGS, "triton_metrics_address": "10.0.0.2", "monitoring_exporter_address": "10.0.0.2"}, f.responses(f.DEBIAN_13_RELEASE, None, f.DF_PLENTY))'


def test_monitoring_host_gets_prometheus_and_every_host_the_node_exporter(tmp_path, hub):
    result = run_fleet(tmp_path, hub, SCRAPED_CPU, monitoring=MONITOR)
    assert result.returncode == 0, result.stderr[-3000:]
    ops = changed_ops(result)
    mon, cpu = "@fake/mon1", "@fake/cpu-debian"
    assert ops["Monitoring | Check the candidates with promtool, then make them live"] == [mon]
    assert ops["Monitoring | Install Prometheus, Alertmanager and curl"] == [mon]
    assert ops["Monitoring | Check the Alertmanager config with amtool, then make it live"] == [mon]
    assert sorted(ops["Node exporter | Install prometheus-node-exporter"]) == [cpu, mon]
    assert sorted(ops["Node exporter | Node exporter flags (/etc/default/prometheus-node-exporter)"]) == [cpu, mon]
    assert not [name for name, hosts in ops.items() if mon in hosts and name.split(" | ")[0] not in ("Monitoring", "Node exporter")]
    assert "Triton | Triton compose file" in ops and ops["Triton | Triton compose file"] == [cpu]


SCRAPED_GPU = 'f.host("gpu-ubuntu", {"gpu": True, **f.SETTINGS, "triton_metrics_address": "10.0.0.3", "monitoring_exporter_address": "10.0.0.3"}, f.responses(f.UBUNTU_2404_RELEASE, f.H100_X2, f.DF_PLENTY))'


def test_gpu_hosts_of_a_monitored_fleet_run_dcgm_exporter(tmp_path, hub):
    result = run_fleet(tmp_path, hub, SCRAPED_GPU + ",\n" + SCRAPED_CPU, monitoring=MONITOR)
    assert result.returncode == 0, result.stderr[-3000:]
    ops = changed_ops(result)
    gpu = "@fake/gpu-ubuntu"
    assert ops["dcgm-exporter | Start dcgm-exporter (docker compose up -d)"] == [gpu]
    assert ops["dcgm-exporter | dcgm-exporter compose file"] == [gpu]
    [pull] = [name for name in ops if name.startswith("Registry login and image pull | Pull image nvcr.io/nvidia/k8s/dcgm-exporter:")]
    assert ops[pull] == [gpu]


def test_fleet_status_is_one_read_only_table(tmp_path, hub):
    result = run_fleet(tmp_path, hub, CONVERGED_CPU, deploy="deploys/status.py")
    assert result.returncode == 0, result.stderr[-3000:]
    assert json.loads(result.stdout)["results"]["totals"]["success"] == 0
    table = result.stderr[result.stderr.index("Fleet status") :].splitlines()
    [row] = [line.split() for line in table if line.startswith("@fake/cpu-debian ")]
    assert row[1] == "triton" and row[3] == "yes" and row[4:] == ["-"] * 6, row  # no front door, no Prometheus, no Alertmanager
    assert f"Triton fleet on one release: {row[2]} (1 host(s))" in table


def test_monitoring_of_a_loopback_endpoint_ends_the_run_with_one_line(tmp_path, hub):
    result = run_fleet(tmp_path, hub, FRESH_CPU, monitoring=MONITOR)
    assert result.returncode != 0
    assert "host @fake/cpu-debian: setting monitoring_exporter_address='127.0.0.1' is loopback" in result.stderr, result.stderr[-2000:]
    assert "Traceback" not in result.stderr
    assert json.loads(result.stdout or "{}").get("results", {}).get("totals", {}).get("success", 0) == 0


# The same two hosts after a successful deploy: every fact answers what the deploy left behind,
# computed by tests/support/fake_hosts.py:converged_responses from the deploy's own renderers and lock.
CONVERGED_GPU = (
    'f.converged_host("gpu-ubuntu", {"gpu": True, **f.SETTINGS}, f.UBUNTU_2404_RELEASE, f.H100_X2, f.DF_PLENTY, os.environ["NGC_API_KEY"])'
)
CONVERGED_CPU = (
    'f.converged_host("cpu-debian", {"gpu": False, **f.SETTINGS}, f.DEBIAN_13_RELEASE, None, f.DF_PLENTY, os.environ["NGC_API_KEY"])'
)
STEPS = ("Docker", "NVIDIA Container Toolkit", "Registry login and image pull", "Model files (pinned, checksummed)", "Triton")


def test_converged_hosts_plan_zero_changes(tmp_path, hub):
    result = run_fleet(tmp_path, hub, CONVERGED_GPU + ",\n" + CONVERGED_CPU)
    assert result.returncode == 0, result.stderr[-3000:]
    payload = json.loads(result.stdout)
    assert payload["results"]["failed_hosts"] == []
    changed = changed_ops(result)
    assert not changed, f"a re-run on converged hosts would change: {changed}"
    assert payload["results"]["totals"]["success"] == 0
    # Not vacuous: every step planned its operations on both hosts and found them in place.
    untouched = {op["name"]: sorted(op["no_change"]) for op in payload["results"]["operations"]}
    both = ["@fake/cpu-debian", "@fake/gpu-ubuntu"]
    for name in (
        "Docker | Docker packages",
        "Docker | Docker enabled and running",
        "Model files (pinned, checksummed) | Directory /opt/triton-embeddinggemma/models/embeddinggemma/1",
        "Triton | Triton model config (config.pbtxt)",
        "Triton | Triton compose file",
    ):
        assert untouched.get(name) == both, name
    assert untouched.get("NVIDIA Container Toolkit | NVIDIA Container Toolkit packages (pinned)") == ["@fake/gpu-ubuntu"]
    # The facts that decide login, pull, model upload and (re)start were read, and said "in place".
    for line in ("model: all 5 files match their sha256; 0 B to send", "Triton already READY with this configuration"):
        assert result.stderr.count(line) == 2, line
    assert "registry:" not in result.stderr  # no "logging in" on either host
    assert CANARY_KEY not in result.stdout + result.stderr


TRITON_RESTART = ("Triton | Start Triton (docker compose up -d)", "Triton | Wait for model embeddinggemma READY (≤ 600s)")
# A new release: its directory, config, compose file, the model files linked from the store, the switch.
NEW_RELEASE = (
    "Triton | Release model directory",
    "Triton | Triton model config (config.pbtxt)",
    "Triton | Triton compose file",
    "Triton | Hard-link model.onnx into the release",
    "Triton | Hard-link model.onnx_data into the release",
    "Triton | Switch current to this release",
)


@pytest.mark.parametrize("change", ["triton_max_batch_size=16", "triton_http_port=7000"], ids=["max-batch-size", "http-port"])
def test_one_setting_changes_only_what_depends_on_it(tmp_path, hub, change):
    # A config (max batch size) or compose input (port) change is a new release: it is built beside
    # the live one, switched to and started; nothing before the Triton step moves.
    result = run_fleet(tmp_path, hub, CONVERGED_GPU + ",\n" + CONVERGED_CPU, "--data", change)
    assert result.returncode == 0, result.stderr[-3000:]
    gpu, cpu = "@fake/gpu-ubuntu", "@fake/cpu-debian"
    expected = {name: [cpu, gpu] for name in (*NEW_RELEASE, *TRITON_RESTART)}
    expected["Triton | GPU smoke test: the Triton image sees the GPUs"] = [gpu]  # before any GPU (re)start
    changed = {name: sorted(hosts) for name, hosts in changed_ops(result).items()}
    assert changed == expected, f"changed operations: {sorted(changed)}"
    assert not [name for name in changed if name.split(" | ")[0] in STEPS[:4]], "docker/toolkit/login/model must stay untouched"
    assert result.stderr.count(" goes live (was ") == 2


def test_a_changed_host_binding_keeps_the_release_and_still_reaches_the_host(tmp_path, hub):
    # The host's own addresses are not part of the release id (deploys/triton/release.py): a new
    # metrics address builds no new release and switches nothing, but the release's compose file is
    # written again and Triton is started on it (its bindings label differs), on both hosts.
    result = run_fleet(tmp_path, hub, CONVERGED_GPU + ",\n" + CONVERGED_CPU, "--data", "triton_metrics_address=10.0.0.5")
    assert result.returncode == 0, result.stderr[-3000:]
    gpu, cpu = "@fake/gpu-ubuntu", "@fake/cpu-debian"
    expected = {name: [cpu, gpu] for name in ("Triton | Triton compose file", *TRITON_RESTART)}
    expected["Triton | GPU smoke test: the Triton image sees the GPUs"] = [gpu]
    changed = {name: sorted(hosts) for name, hosts in changed_ops(result).items()}
    assert changed == expected, f"changed operations: {sorted(changed)}"
    assert " goes live (was " not in result.stderr
    assert result.stderr.count("Triton (re)start: configuration changed") == 2


def test_old_releases_are_pruned_but_never_current_or_previous(tmp_path, hub):
    # Four releases on the host, keep 3 (default): a new release prunes the two oldest, keeping the
    # one that was live (it becomes previous).
    releases = '["current releases/cafe00000001", "previous releases/cafe00000002", "release 1760000400 releases/cafe00000001/", "release 1760000300 releases/cafe00000003/", "release 1760000200 releases/cafe00000002/", "release 1760000100 releases/cafe00000004/"]'
    result = run_fleet(tmp_path, hub, f'f.drifted({CONVERGED_CPU}, "readlink current", {releases})', "--data", "triton_max_batch_size=16")
    assert result.returncode == 0, result.stderr[-3000:]
    changed = changed_ops(result)
    assert "Triton | Prune old releases (keep 3)" in changed
    payload = json.loads(result.stdout)
    prune = [op for op in payload["results"]["operations"] if op["name"] == "Triton | Prune old releases (keep 3)"]
    assert prune and prune[0]["success"] == ["@fake/cpu-debian"]
    # The exact command is in the debug output: releases 2 (old previous) and 4 go; 1 (now previous) and 3 stay.
    verbose = run_fleet(
        tmp_path, hub, f'f.drifted({CONVERGED_CPU}, "readlink current", {releases})', "--data", "triton_max_batch_size=16", "-vv"
    )
    line = next(line for line in verbose.stderr.splitlines() if "rm -rf releases/" in line)
    assert "for r in cafe00000002 cafe00000004; do" in line
    assert "cafe00000001" not in line and "cafe00000003" not in line
    # Re-checked on the host when it runs (tests/test_deploy_lock.py runs the command).
    assert "readlink current" in line and "docker ps -q --filter label=" in line


@pytest.mark.parametrize(
    "drift,expected",
    [
        (
            # One model file on the host no longer has the locked sha256.
            '"sha256sum /opt/triton-embeddinggemma/tokenizer/tokenizer.json 2>", ["0" * 64 + "  /opt/triton-embeddinggemma/tokenizer/tokenizer.json"]',
            [
                "Model files (pinned, checksummed) | Check sha256 and install tokenizer.json",
                "Model files (pinned, checksummed) | Upload model file tokenizer.json (18 B)",
            ],
        ),
        (
            # The container runs with the right labels but the model is not READY: recreate it.
            '"/v2/health/live", ["live 200", "ready 200", "model_ready 400"]',
            ["Triton | GPU smoke test: the Triton image sees the GPUs", *TRITON_RESTART],
        ),
        (
            # The live release's model.onnx_data is another file than the store's (a damaged copy
            # moved over it; its own sha256 is not the lock's): linked again, Triton recreated.
            """"stat -c 'release", f.model_links_answer({"model.onnx": "", "model.onnx_data": ""}, {"model.onnx_data": 99})""",
            [
                "Triton | Hard-link model.onnx_data into the release",
                "Triton | GPU smoke test: the Triton image sees the GPUs",
                *TRITON_RESTART,
            ],
        ),
        (
            # Docker holds a login made with an older key.
            '"python3 -I -c", [__import__("facts.docker").docker.registry_auth_digest("$oauthtoken", "nvapi-old")]',
            ["Registry login and image pull | Docker login to nvcr.io (password on stdin)"],
        ),
        (
            # NVIDIA's keyring on the host carries another key: fetched again (and checked), apt index refreshed.
            '"apt-key-fingerprints", ["21DE425651F7F7E6DCFAB7F30872227395AC1514"]',
            [
                "NVIDIA Container Toolkit | NVIDIA toolkit apt key (signed-by keyring, fingerprint checked)",
                "NVIDIA Container Toolkit | Refresh apt index (toolkit repository or packages changed)",
            ],
        ),
    ],
    ids=["model-file-corrupt", "model-not-ready", "served-file-replaced", "rotated-key", "apt-key-other-fingerprint"],
)
def test_drift_on_a_converged_host_plans_exactly_its_repair(tmp_path, hub, drift, expected):
    # The converged fixture is not blind: one fact drifting away from "deployed" brings back
    # exactly the operations that repair it, on that host only.
    result = run_fleet(tmp_path, hub, f"f.drifted({CONVERGED_GPU}, {drift}),\n" + CONVERGED_CPU)
    assert result.returncode == 0, result.stderr[-3000:]
    changed = changed_ops(result)
    assert sorted(changed) == sorted(expected), f"changed operations: {sorted(changed)}"
    assert all(hosts == ["@fake/gpu-ubuntu"] for hosts in changed.values()), changed
    assert CANARY_KEY not in result.stdout + result.stderr


def test_served_file_damaged_with_the_store_is_sent_linked_after_it_and_restarted(tmp_path, hub):
    # The served model.onnx_data is the store's inode and its sha256 is no longer the lock's (bytes
    # appended in place): the model step sends it again (a rename: a new inode), the triton step
    # links the release to it after that, and Triton, serving this very release, is recreated.
    store = "/opt/triton-embeddinggemma/models/embeddinggemma/1/model.onnx_data"
    drift = f'"sha256sum {store} 2>", ["{"0" * 64}  {store}"]'
    result = run_fleet(tmp_path, hub, f"f.drifted({CONVERGED_CPU}, {drift})", "-vv")
    assert result.returncode == 0, result.stderr[-3000:]
    order = [op["name"] for op in json.loads(result.stdout)["results"]["operations"] if op["success"]]
    install = "Model files (pinned, checksummed) | Check sha256 and install model.onnx_data"
    relink = "Triton | Hard-link model.onnx_data into the release"
    assert install in order and relink in order, order
    assert order.index(install) < order.index(relink) < order.index(TRITON_RESTART[0]), order
    assert "Triton | Hard-link model.onnx into the release" not in order  # the intact graph stays linked
    assert "--force-recreate" in result.stderr  # an unchanged compose file: `up -d` alone would keep the container
    assert "model files re-linked to the store: model.onnx_data" in result.stderr


@pytest.mark.parametrize(
    "hosts_code,message",
    [
        (
            'f.host("old-driver", {"gpu": True, **f.SETTINGS}, f.responses(f.UBUNTU_2404_RELEASE, f.RTX4090_OLD_DRIVER, f.DF_PLENTY))',
            "host @fake/old-driver: setting nvidia_min_driver=575: GPU 0 (NVIDIA GeForce RTX 4090) runs driver 550.144.03; upgrade the driver to ≥ 575",
        ),
        (
            'f.host("no-driver", {"gpu": "auto", **f.SETTINGS}, f.responses(f.UBUNTU_2404_RELEASE, f.SMI_NO_DRIVER, f.DF_PLENTY))',
            "host @fake/no-driver: gpu=true but nvidia-smi fails (NVIDIA-SMI has failed because it couldn't communicate with the NVIDIA driver",
        ),
        (
            'f.host("no-gpu", {"gpu": True, **f.SETTINGS}, f.responses(f.UBUNTU_2404_RELEASE, None, f.DF_PLENTY))',
            "host @fake/no-gpu: gpu=true but no NVIDIA GPU is visible",
        ),
        (
            'f.host("bookworm", {"gpu": False, **f.SETTINGS}, f.responses(f.DEBIAN_12_RELEASE, None, f.DF_PLENTY))',
            "host @fake/bookworm: setting docker_source=distro: debian 12 packages no docker compose v2; set docker_source: docker-ce",
        ),
        (
            'f.host("full-disk", {"gpu": True, **f.SETTINGS}, f.responses(f.UBUNTU_2404_RELEASE, f.H100_X2, f.DF_ALMOST_FULL))',
            "host @fake/full-disk: 2.3 GiB free for /var/lib/docker, 25 GiB needed (preflight_min_free_gib)",
        ),
        (
            'f.host("typo", {"gpu": False, "triton_max_batchsize": 4, **f.SETTINGS}, f.responses(f.DEBIAN_13_RELEASE, None, f.DF_PLENTY))',
            "host @fake/typo: unknown setting 'triton_max_batchsize'; did you mean triton_max_batch_size?",
        ),
        (
            'f.host("http-apt", {"gpu": False, "docker_source": "docker-ce", "docker_ce_apt_url": "http://mirror.example/linux", **f.SETTINGS}, f.responses(f.DEBIAN_12_RELEASE, None, f.DF_PLENTY))',
            "host @fake/http-apt: setting docker_ce_apt_url='http://mirror.example/linux' is invalid (plain http:// is refused; use https://, or set allow_plain_http: true to accept it)",
        ),
        (
            'f.host("bad-pin", {"gpu": True, "nvidia_toolkit_key_fingerprint": "DDCAE044F796ECB0", **f.SETTINGS}, f.responses(f.UBUNTU_2404_RELEASE, f.H100_X2, f.DF_PLENTY))',
            "host @fake/bad-pin: setting nvidia_toolkit_key_fingerprint='DDCAE044F796ECB0' is invalid (allowed: a 40-hex-digit (v4) or 64-hex-digit (v6) key fingerprint",
        ),
    ],
    ids=["old-driver", "no-driver", "no-gpu", "debian12-distro-docker", "full-disk", "typo", "http-apt-url", "short-key-id"],
)
def test_bad_host_ends_the_run_before_any_change(tmp_path, hub, hosts_code, message):
    # A healthy host beside the bad one: it must not be touched either.
    result = run_fleet(tmp_path, hub, hosts_code + ",\n" + FRESH_CPU)
    assert result.returncode != 0
    assert message in result.stderr, result.stderr[-2000:]
    assert "Traceback" not in result.stderr
    assert "--> Beginning operation run" not in result.stderr  # nothing executed on any host
    error_lines = [line for line in result.stderr.splitlines() if "pyinfra error" in line]
    assert len(error_lines) == 1, error_lines


def test_commands_carry_no_secret_and_every_operation_is_named(tmp_path, hub):
    result = run_fleet(tmp_path, hub, FRESH_GPU, "-vvv")
    assert result.returncode == 0, result.stderr[-3000:]
    assert CANARY_KEY not in result.stdout + result.stderr
    assert "docker login --username '$oauthtoken' --password-stdin nvcr.io" in result.stderr
    payload = json.loads(result.stdout)
    for op in payload["results"]["operations"]:
        assert op["args"] == [], f"unnamed operation prints its arguments: {op['name']}"


def test_unreachable_host_ends_the_run_before_any_change(tmp_path, hub):
    result = run_fleet(tmp_path, hub, FRESH_CPU + ',\n    ("unreachable.invalid", {})')
    assert result.returncode != 0
    assert "host unreachable.invalid: unreachable over SSH (1 host(s): unreachable.invalid); fix SSH access" in result.stderr, (
        result.stderr[-2000:]
    )
    assert "Traceback" not in result.stderr
    assert "--> Beginning operation run" not in result.stderr


def test_example_inventory_fails_cleanly_when_nothing_answers():
    result = subprocess.run(
        [PYINFRA, "inventories/prod.py", "deploys/all.py", "--dry", "-y"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode != 0
    assert "Traceback" not in result.stdout + result.stderr
    assert "pyinfra error" in result.stderr and "Could not resolve hostname" in result.stderr


# -- the registry cache (group registry_cache): Triton hosts pull through it -------------------------

PIN = "sha256:" + "5b" * 32
CACHE_DATA = '{**f.SETTINGS, "registry_cache_listen_address": "10.0.0.7", "registry_cache_insecure": True}'
FRESH_CACHE = f'f.host("cache1", {CACHE_DATA}, f.responses(f.DEBIAN_13_RELEASE, None, f.DF_PLENTY))'
CONVERGED_CACHE = f'f.host("cache1", {CACHE_DATA}, f.converged_cache_responses(f.DEBIAN_13_RELEASE, f.DF_PLENTY, {CACHE_DATA}, os.environ["NGC_API_KEY"], "cache1"))'
PINNED_GPU = f'f.host("gpu-ubuntu", {{"gpu": True, **f.SETTINGS, "triton_image_digest": "{PIN}"}}, f.responses(f.UBUNTU_2404_RELEASE, f.H100_X2, f.DF_PLENTY))'
PINNED_CPU = f'f.host("cpu-debian", {{"gpu": False, **f.SETTINGS, "triton_image_digest": "{PIN}"}}, f.responses(f.DEBIAN_13_RELEASE, None, f.DF_PLENTY))'
CACHED_IMAGE = f"10.0.0.7:5000/nvidia/tritonserver:25.05-py3@{PIN}"


def probe_fleet(tmp_path: Path, hub, hosts_code: str, *args: str, deploy: str = "deploys/all.py", **groups: str) -> leak_probe.Result:
    """:func:`run_fleet` through tests/support/leak_probe.py: every command, its stdin and every uploaded text, per host."""
    url, _ = hub
    inventory = write_inventory(tmp_path, hub, hosts_code, **groups)
    return leak_probe.run(tmp_path, ["--json", *args, str(inventory), deploy], env={"NGC_API_KEY": CANARY_KEY, "HF_ENDPOINT": url})


def test_a_fleet_with_a_registry_cache_pulls_through_it_and_no_triton_host_gets_the_key(tmp_path, hub):
    # --diff and -vvv: neither the cache's config (it holds the key) nor any command may show it.
    result = probe_fleet(tmp_path, hub, PINNED_GPU + ",\n" + PINNED_CPU, "--diff", "-vvv", registry_cache=FRESH_CACHE)
    assert result.rc == 0, result.output[-3000:]
    payload = json.loads(result.stdout)
    ops = {op["name"]: sorted(op["success"]) for op in payload["results"]["operations"] if op["success"]}
    cache, triton = "@fake/cache1", ["@fake/cpu-debian", "@fake/gpu-ubuntu"]
    for name in (
        "Registry cache | Install docker-registry (the distribution registry), curl and python3",
        "Registry cache | Registry cache config /etc/docker/registry/config.yml (checked; 0600, on stdin: it holds the upstream's password)",
        "Registry cache | Restart docker-registry and wait for its /v2/ (the previous config back if it does not answer)",
    ):
        assert ops[name] == [cache], name
    assert not [name for name, hosts in ops.items() if cache in hosts and not name.startswith("Registry cache |")], (
        "the cache host runs its role only"
    )
    # Triton hosts: the digest-pinned image through the cache, no login anywhere.
    pull = f"Registry login and image pull | Pull image {CACHED_IMAGE} (registry cache @fake/cache1)"
    assert ops[pull] == triton
    assert not [name for name in ops if "login" in name.lower() and "Pull image" not in name], sorted(ops)
    # The cache is up and has fetched the image once before any Triton host pulls (one warm per image).
    warm = f"Registry cache | Warm the cache: nvidia/tritonserver@{PIN} (linux/amd64; one fetch from the upstream)"
    assert ops[warm] == [cache]
    assert [name for name in ops if "Warm the cache" in name] == [warm]
    names = [op["name"] for op in payload["results"]["operations"]]
    restart = "Registry cache | Restart docker-registry and wait for its /v2/ (the previous config back if it does not answer)"
    assert names.index(restart) < names.index(warm) < names.index(pull)
    # The key: on the cache host's stdin (its config) only; in no command, output or upload anywhere.
    assert CANARY_KEY not in result.output
    cache_stdins = [r["stdin"] for r in result.records if r["host"] == cache and r.get("stdin")]
    assert any(CANARY_KEY in stdin for stdin in cache_stdins)
    for record in result.records:
        assert CANARY_KEY not in record.get("command", "") + record.get("content", ""), record.get("command", record.get("dest"))
        if record["host"] != cache:
            assert CANARY_KEY not in (record.get("stdin") or ""), record["command"]
    # What the Triton hosts were sent: daemon.json trusts the plain-HTTP cache, compose runs its image.
    puts = {(r["host"], r["dest"]): r.get("content", "") for r in result.records if r["kind"] == "put"}
    for name in triton:
        daemon = json.loads(puts[(name, "/etc/docker/daemon.json")])
        assert daemon["insecure-registries"] == ["10.0.0.7:5000"]
        [compose] = [text for (h, dest), text in puts.items() if h == name and dest.endswith("/docker-compose.yml")]
        assert yaml.safe_load(compose)["services"]["triton"]["image"] == CACHED_IMAGE
    assert not any(r["dest"].startswith("/etc/docker/certs.d") for r in result.records if r["kind"] == "put")  # plain HTTP: no CA


def test_a_converged_fleet_with_a_converged_cache_plans_zero_changes(tmp_path, hub):
    hosts = ",\n".join(
        f'f.converged_host("{name}", {{"gpu": {gpu}, **f.SETTINGS, "triton_image_digest": "{PIN}"}}, {release}, {smi}, f.DF_PLENTY, os.environ["NGC_API_KEY"], cache="10.0.0.7:5000")'
        for name, gpu, release, smi in (
            ("gpu-ubuntu", True, "f.UBUNTU_2404_RELEASE", "f.H100_X2"),
            ("cpu-debian", False, "f.DEBIAN_13_RELEASE", "None"),
        )
    )
    result = run_fleet(tmp_path, hub, hosts, registry_cache=CONVERGED_CACHE)
    assert result.returncode == 0, result.stderr[-3000:]
    changed = changed_ops(result)
    assert not changed, f"a re-run with the cache would change: {changed}"
    untouched = {op["name"]: sorted(op["no_change"]) for op in json.loads(result.stdout)["results"]["operations"]}
    assert untouched["Registry cache | docker-registry enabled and running"] == ["@fake/cache1"]
    assert untouched["Registry cache | Cache storage /var/lib/docker-registry"] == ["@fake/cache1"]
    assert untouched["Triton | Triton compose file"] == ["@fake/cpu-debian", "@fake/gpu-ubuntu"]
    assert untouched["Docker | Docker enabled and running"] == ["@fake/cpu-debian", "@fake/gpu-ubuntu"]
    assert CANARY_KEY not in result.stdout + result.stderr


def test_adding_a_cache_to_a_converged_fleet_moves_its_hosts_to_the_cache(tmp_path, hub):
    # Hosts converged before the cache existed: daemon.json gains the cache, the stored upstream login
    # goes, the image is pulled through the cache, and that is a new release (its compose file's image).
    result = run_fleet(tmp_path, hub, CONVERGED_GPU + ",\n" + CONVERGED_CPU, registry_cache=CONVERGED_CACHE)
    assert result.returncode == 0, result.stderr[-3000:]
    changed = {name: sorted(hosts) for name, hosts in changed_ops(result).items()}
    both = ["@fake/cpu-debian", "@fake/gpu-ubuntu"]
    for name in (
        "Docker | Docker daemon config /etc/docker/daemon.json (merged)",
        "Docker | Restart Docker (packages or config changed)",
        "Registry login and image pull | Docker logout from nvcr.io (pulls go through the registry cache)",
        *NEW_RELEASE,
        *TRITON_RESTART,
    ):
        assert changed.get(name) == both, name
    assert not [name for name in changed if "@fake/cache1" in changed[name]], "the converged cache host changes nothing"
    assert not [name for name in changed if "Docker login" in name]
    assert result.stderr.count(" goes live (was ") == 2


@pytest.mark.parametrize(
    "data, message",
    [
        ('{**f.SETTINGS, "registry_cache_insecure": True}', "host @fake/cache1: setting registry_cache_listen_address is empty"),
        (
            '{**f.SETTINGS, "registry_cache_listen_address": "10.0.0.7"}',
            "host @fake/cache1: the registry cache needs registry_cache_tls: true",
        ),
        (
            '{**f.SETTINGS, "registry_cache_listen_address": "10.0.0.7", "registry_cache_tls": True, "registry_cache_insecure": True}',
            "host @fake/cache1: setting registry_cache_insecure=True is invalid (registry_cache_tls is on",
        ),
    ],
    ids=["no-address", "no-transport", "both"],
)
def test_bad_cache_settings_end_the_run_before_any_change(tmp_path, hub, data, message):
    cache = f'f.host("cache1", {data}, f.responses(f.DEBIAN_13_RELEASE, None, f.DF_PLENTY))'
    result = run_fleet(tmp_path, hub, FRESH_CPU, registry_cache=cache)
    assert result.returncode != 0
    assert message in result.stderr, result.stderr[-2000:]
    assert "Traceback" not in result.stderr
    assert "--> Beginning operation run" not in result.stderr
    assert len([line for line in result.stderr.splitlines() if "pyinfra error" in line]) == 1


# -- image lifecycle: the images of kept releases stay, the others go; a rollback pulls what is missing --

RELEASES = '["current releases/cafe00000001", "previous releases/cafe00000002", "release 1760000400 releases/cafe00000001/", "release 1760000300 releases/cafe00000003/", "release 1760000200 releases/cafe00000002/", "release 1760000100 releases/cafe00000004/"]'
REPO = "nvcr.io/nvidia/tritonserver"
RELEASE_IMAGES = [
    f'cafe00000001 "{REPO}:25.05-py3"',
    f'cafe00000002 "{REPO}:25.04-py3"',
    f'cafe00000003 "{REPO}:25.05-py3"',
    f'cafe00000004 "{REPO}:24.12-py3"',
]
LOCAL_IMAGES = [
    f"{REPO} 25.05-py3 sha256:{'a1' * 32} {{kept}}",
    f"{REPO} 25.04-py3 sha256:{'b2' * 32} sha256:{'0b' * 32}",
    f"{REPO} 24.12-py3 sha256:{'c3' * 32} sha256:{'0c' * 32}",
]


def with_releases_and_images(host_code: str) -> str:
    answers = {
        "for f in */docker-compose.yml": RELEASE_IMAGES,
        f"image ls --digests --no-trunc --format '{{{{.Repository}}}} {{{{.Tag}}}} {{{{.Digest}}}} {{{{.ID}}}}' {REPO}": [
            line.replace("{kept}", "__KEPT__") for line in LOCAL_IMAGES
        ],
    }
    code = f"f.answering(f.drifted({host_code}, 'readlink current', {RELEASES}), {answers!r})"
    return code.replace("'__KEPT__'", "f.TRITON_IMAGE_ID").replace("__KEPT__", "' + f.TRITON_IMAGE_ID + '")


def test_after_a_deploy_only_the_images_of_kept_releases_stay(tmp_path, hub):
    # A new release prunes releases 2 and 4 (keep 3): their images, 25.04 and 24.12, go; 25.05
    # (releases 1 and 3, and the new one) stays.
    host = with_releases_and_images(CONVERGED_CPU)
    result = run_fleet(tmp_path, hub, host, "--data", "triton_max_batch_size=16", "-vv")
    assert result.returncode == 0, result.stderr[-3000:]
    changed = changed_ops(result)
    assert changed.get("Image prune | Remove images no kept release uses") == ["@fake/cpu-debian"]
    names = list(changed)
    assert names.index("Image prune | Remove images no kept release uses") > names.index(
        "Triton | Wait for model embeddinggemma READY (≤ 600s)"
    )
    [line] = [line for line in result.stderr.splitlines() if "docker image rm" in line and "for r in" in line]
    assert f"{REPO}:25.04-py3" in line and f"{REPO}:24.12-py3" in line and f"{REPO}:25.05-py3" not in line
    off = run_fleet(tmp_path, hub, host, "--data", "triton_max_batch_size=16", "--data", "registry_image_prune=False")
    assert off.returncode == 0, off.stderr[-3000:]
    assert "Image prune | Remove images no kept release uses" not in changed_ops(off)


def test_converged_host_with_only_kept_images_prunes_nothing(tmp_path, hub):
    answers = {
        f"image ls --digests --no-trunc --format '{{{{.Repository}}}} {{{{.Tag}}}} {{{{.Digest}}}} {{{{.ID}}}}' {REPO}": [
            f"{REPO} 25.05-py3 sha256:{'a1' * 32} __KEPT__"
        ]
    }
    host = f"f.answering({CONVERGED_CPU}, {answers!r})".replace("__KEPT__", "' + f.TRITON_IMAGE_ID + '")
    result = run_fleet(tmp_path, hub, host)
    assert result.returncode == 0, result.stderr[-3000:]
    assert not changed_ops(result)


def _rollback_host(host_code: str) -> str:
    # current is release 1 (25.05), previous release 2 (25.04), whose image was pruned.
    answers = {"for f in */docker-compose.yml": RELEASE_IMAGES, f"image inspect --format '{{{{.Id}}}}' {REPO}:25.04-py3": [""]}
    return f"f.answering(f.drifted({host_code}, 'readlink current', {RELEASES}), {answers!r})"


def test_rollback_pulls_the_previous_release_image_when_it_is_missing(tmp_path, hub):
    result = run_fleet(tmp_path, hub, _rollback_host(CONVERGED_CPU), deploy="deploys/rollback.py")
    assert result.returncode == 0, result.stderr[-3000:]
    names = list(changed_ops(result))
    assert names[:2] == [f"Rollback | Pull image {REPO}:25.04-py3", "Rollback | Switch current back to the previous release"], names
    assert "is not on the host: pulling it" in result.stderr


def test_rollback_through_the_cache_pulls_from_it_and_tags_the_release_image(tmp_path, hub):
    result = run_fleet(tmp_path, hub, _rollback_host(CONVERGED_CPU), "-vv", deploy="deploys/rollback.py", registry_cache=CONVERGED_CACHE)
    assert result.returncode == 0, result.stderr[-3000:]
    changed = changed_ops(result)
    assert changed.get("Rollback | Pull image 10.0.0.7:5000/nvidia/tritonserver:25.04-py3 (registry cache @fake/cache1)") == [
        "@fake/cpu-debian"
    ]
    assert f"docker tag 10.0.0.7:5000/nvidia/tritonserver:25.04-py3 {REPO}:25.04-py3" in result.stderr
    assert CANARY_KEY not in result.stdout + result.stderr


def test_gpu_without_a_reported_compute_capability_is_a_warning_not_a_crash(tmp_path, hub):
    # nvidia-smi prints [N/A] for compute_cap on vGPU guests: the capability is unknown, so
    # preflight says so in one line and goes on (the driver check still applies).
    vgpu = 'f.host("vgpu", {"gpu": True, **f.SETTINGS}, f.responses(f.UBUNTU_2404_RELEASE, f.VGPU_CC_UNKNOWN, f.DF_PLENTY))'
    result = run_fleet(tmp_path, hub, vgpu)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Traceback" not in result.stderr
    warning = "GPU 0 (GRID H100-40C): nvidia-smi does not report its compute capability; nvidia_min_compute_capability=7.5 not checked"
    assert result.stderr.count(warning) == 1, result.stderr[-3000:]
    assert "Triton | Start Triton (docker compose up -d)" in changed_ops(result)


def test_converged_host_bound_to_an_ipv6_address_plans_zero_changes(tmp_path, hub):
    # The health fact probes http://[fd00::5]:6000 (bracketed); the converged answer sits there.
    data = '{"gpu": False, **f.SETTINGS, "triton_bind_address": "fd00::5", "triton_bind_beyond_loopback": True}'
    converged = f'f.converged_host("cpu-v6", {data}, f.DEBIAN_13_RELEASE, None, f.DF_PLENTY, os.environ["NGC_API_KEY"])'
    result = run_fleet(tmp_path, hub, converged)
    assert result.returncode == 0, result.stderr[-3000:]
    assert not changed_ops(result)
    assert "Triton already READY with this configuration" in result.stderr


NO_CURL = "{'dpkg -l': [line for line in f.DPKG_HEADER if ' curl ' not in line]}"


@pytest.mark.parametrize("source", ["distro", "docker-ce"])
def test_a_host_without_curl_gets_it_before_anything_uses_it(tmp_path, hub, source):
    # Debian's minbase has no curl; files.download (Docker's and NVIDIA's apt keys), the health
    # fact and the READY wait all call it.
    bare = f'f.host("bare", {{"gpu": False, **f.SETTINGS, "docker_source": "{source}"}}, f.responses(f.DEBIAN_13_RELEASE, None, f.DF_PLENTY, {NO_CURL}))'
    result = run_fleet(tmp_path, hub, bare)
    assert result.returncode == 0, result.stderr[-3000:]
    names = list(changed_ops(result))
    install = "Docker | Install curl (apt key downloads, Triton's health checks and READY wait)"
    assert "Docker | Refresh apt index (curl missing)" in names and install in names, names
    assert names.index("Docker | Refresh apt index (curl missing)") < names.index(install)
    users = [
        n for n in names if n in ("Docker | Docker apt key (signed-by keyring)", "Triton | Wait for model embeddinggemma READY (≤ 600s)")
    ]
    assert users and all(names.index(install) < names.index(n) for n in users), names
    # One refresh serves Docker's distribution packages; Docker's own repository needs its own.
    assert ("Docker | Refresh apt index (Docker packages missing)" in names) == (source == "docker-ce")


def test_a_host_with_curl_does_not_install_it_again(tmp_path, hub):
    result = run_fleet(tmp_path, hub, FRESH_CPU)
    assert result.returncode == 0, result.stderr[-3000:]
    assert not [n for n in changed_ops(result) if "curl" in n]


def test_converged_host_with_little_free_disk_re_runs_but_a_fresh_one_does_not(tmp_path, hub):
    # 2 GiB free: a fresh host (image to pull) needs preflight_min_free_gib_cpu=5; the converged one
    # adds nothing, so its margin of 2 GiB is enough and the re-run changes nothing.
    converged = (
        'f.converged_host("cpu-debian", {"gpu": False, **f.SETTINGS}, f.DEBIAN_13_RELEASE, None, f.DF_TWO_GIB, os.environ["NGC_API_KEY"])'
    )
    result = run_fleet(tmp_path, hub, converged)
    assert result.returncode == 0, result.stderr[-3000:]
    assert not changed_ops(result)
    fresh = 'f.host("cpu-debian", {"gpu": False, **f.SETTINGS}, f.responses(f.DEBIAN_13_RELEASE, None, f.DF_TWO_GIB))'
    result = run_fleet(tmp_path, hub, fresh)
    assert result.returncode != 0
    assert (
        "host @fake/cpu-debian: 2.0 GiB free for /var/lib/docker, 5 GiB needed (preflight_min_free_gib_cpu); "
        "the image nvcr.io/nvidia/tritonserver:25.05-py3 is not on the host yet" in result.stderr
    ), result.stderr[-2000:]
    assert "Traceback" not in result.stderr


def test_disk_check_counts_the_model_files_this_run_adds(tmp_path, hub):
    # The image is there, but tokenizer.json (18 B) differs: 2 GiB + 18 B are needed, 2 GiB free.
    converged = (
        'f.converged_host("cpu-debian", {"gpu": False, **f.SETTINGS}, f.DEBIAN_13_RELEASE, None, f.DF_TWO_GIB, os.environ["NGC_API_KEY"])'
    )
    drift = '"sha256sum /opt/triton-embeddinggemma/tokenizer/tokenizer.json 2>", ["0" * 64 + "  /opt/triton-embeddinggemma/tokenizer/tokenizer.json"]'
    result = run_fleet(tmp_path, hub, f"f.drifted({converged}, {drift})")
    assert result.returncode != 0
    assert (
        "host @fake/cpu-debian: 2.0 GiB free for /opt/triton-embeddinggemma, 2.1 GiB needed "
        "(18 B of model files to add + preflight_margin_gib=2); free space or lower the setting" in result.stderr
    ), result.stderr[-2000:]
    assert "--> Beginning operation run" not in result.stderr
    # With a smaller margin the same host goes ahead and sends exactly that file.
    result = run_fleet(tmp_path, hub, f"f.drifted({converged}, {drift})", "--data", "preflight_margin_gib=1")
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Model files (pinned, checksummed) | Upload model file tokenizer.json (18 B)" in changed_ops(result)


DOCKER_CE_BOOKWORM = 'f.host("bookworm-ce", {"gpu": False, "docker_source": "docker-ce", **f.SETTINGS}, f.responses(f.DEBIAN_12_RELEASE, None, f.DF_PLENTY, EXTRA))'


@pytest.mark.parametrize("installed", [None, "21DE425651F7F7E6DCFAB7F30872227395AC1514", "9DC858229FC7DD38854AE2D88D81803C0EBFCD88"])
def test_docker_apt_key_is_fetched_and_checked_unless_already_pinned(tmp_path, hub, installed):
    # Docker's apt key: fetched on the host and checked against docker_ce_key_fingerprint before it
    # is installed; a keyring that already carries exactly that fingerprint is left alone.
    extra = {} if installed is None else dict([f.key_fingerprint_answer(DOCKER_CE_KEYRING, [installed])])
    code = DOCKER_CE_BOOKWORM.replace("EXTRA", repr(extra))
    result = run_fleet(tmp_path, hub, code, "-vv")
    assert result.returncode == 0, result.stderr[-3000:]
    payload = json.loads(result.stdout)
    changed = {op["name"] for op in payload["results"]["operations"] if op["success"]}
    key_op = "Docker | Docker apt key (signed-by keyring, fingerprint checked)"
    if installed == settings.DOCKER_KEY_FINGERPRINT:
        assert key_op not in changed
        assert "Docker | Docker apt repository" in changed  # the fake host has no source file yet
    else:
        assert key_op in changed, sorted(changed)
        command = result.stderr[result.stderr.index("mktemp /etc/apt/keyrings/docker.asc.download.") :]
        assert "https://download.docker.com/linux/debian/gpg" in command and "--proto =https" in command
        assert f'[ "$found" != {settings.DOCKER_KEY_FINGERPRINT} ]' in command
        assert 'mv -f "$tmp" /etc/apt/keyrings/docker.asc' in command
    assert "Docker | Refresh apt index (Docker packages missing)" in changed
