"""The whole deploy through the real pyinfra CLI on `@fake` hosts (tests/fake_hosts.py).

The fake connector executes nothing and answers commands with canned, realistic outputs, so these
tests show what the deploy would do on a fresh Ubuntu 24.04 GPU host and a Debian 13 CPU host, that
bad hosts end the run before anything runs, and which commands would be sent.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.hub_server import start_with_lock

ROOT = Path(__file__).resolve().parent.parent
PYINFRA = str(Path(sys.executable).parent / "pyinfra")
CANARY_KEY = "nvapi-canary-" + "Zq7" * 12


# Small stand-ins for the model repository's files (the Hub is out of reach; tests/hub_server.py
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


def run_fleet(tmp_path: Path, hub, hosts_code: str, *args: str, deploy: str = "deploys/all.py") -> subprocess.CompletedProcess:
    """Write an inventory of fake hosts and run `pyinfra INVENTORY DEPLOY -y --json ARGS`."""
    url, data = hub
    inventory = tmp_path / "inventory.py"
    inventory.write_text(
        "import json\nfrom tests import fake_hosts as f\n\n"
        f"f.SETTINGS.update(json.loads({json.dumps(json.dumps(data))}))\n"
        "fleet = [\n" + hosts_code + "\n]\n"
    )
    env = {**os.environ, "NGC_API_KEY": CANARY_KEY, "HF_ENDPOINT": url, "PYINFRA_FAKE_DELAY": "0", "PYINFRA_FAKE_DELAY_JITTER": "0"}
    return subprocess.run(
        [PYINFRA, str(inventory), deploy, "-y", "--json", *args],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=300,
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
    for step in ("Docker | Docker packages", "Docker | Docker daemon config /etc/docker/daemon.json (merged)",
                 "Triton | Triton model config (config.pbtxt)", "Triton | Triton compose file",
                 "Triton | Start Triton (docker compose up -d)"):
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
    ],
    ids=["old-driver", "no-driver", "no-gpu", "debian12-distro-docker", "full-disk", "typo"],
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
    assert "host unreachable.invalid: unreachable over SSH (1 host(s): unreachable.invalid); fix SSH access" in result.stderr, result.stderr[-2000:]
    assert "Traceback" not in result.stderr
    assert "--> Beginning operation run" not in result.stderr


def test_example_inventory_fails_cleanly_when_nothing_answers():
    result = subprocess.run(
        [PYINFRA, "inventories/prod.py", "deploys/all.py", "--dry", "-y"],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
    )
    assert result.returncode != 0
    assert "Traceback" not in result.stdout + result.stderr
    assert "pyinfra error" in result.stderr and "Could not resolve hostname" in result.stderr
