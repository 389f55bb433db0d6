"""Our facts on pyinfra's @fake connector, the way the deploy's planned-command tests feed them.

Shows the substring keys that pick each fact's command out of ``fake_responses`` and that a canned
output without our status markers parses the same as the real command's output.
"""

from __future__ import annotations

from typing import Any

from pyinfra.api import Config, Inventory, State
from pyinfra.api.connect import connect_all
from pyinfra.api.facts import get_fact

from facts.docker import DockerContainer, DockerDaemonJson, DockerRuntimes
from facts.gpu import NvidiaGpus
from facts.triton import TritonHealth

ROW = "0, NVIDIA H100 80GB HBM3, GPU-3f6e5a1b-9c2d-4e7f-8a0b-1c2d3e4f5a6b, 575.57.08, 81559, 9.0"


def fake_host(responses: dict[str, Any]) -> tuple[State, Any]:
    inventory = Inventory(
        (
            [
                (
                    "@fake/gpu-1",
                    {"fake_responses": responses, "fake_delay": 0, "fake_delay_jitter": 0},
                )
            ],
            {},
        )
    )
    state = State(inventory, Config())
    connect_all(state)
    return state, inventory.get_host("@fake/gpu-1")


def test_fresh_fake_host_reads_defaults() -> None:
    state, host = fake_host({})
    assert get_fact(state, host, NvidiaGpus) == NvidiaGpus.default()
    assert get_fact(state, host, DockerDaemonJson) is None
    assert get_fact(state, host, DockerRuntimes) == []
    assert get_fact(state, host, DockerContainer, args=["triton"]) is None
    assert get_fact(state, host, TritonHealth, args=[6000, "embeddinggemma"]) == TritonHealth.default()


def test_converged_fake_host() -> None:
    state, host = fake_host(
        {
            "nvidia-smi --query-gpu": [ROW],
            "/etc/docker/daemon.json": ['{"runtimes": {"nvidia": {"path": "nvidia-container-runtime"}}}'],
            "docker info --format": ['{"nvidia":{"path":"nvidia-container-runtime"},"runc":{"path":"runc"}}'],
            "/v2/health/live": ["live 200", "ready 200", "model_ready 200"],
        }
    )
    gpus = get_fact(state, host, NvidiaGpus)
    assert gpus["error"] is None and gpus["gpus"][0]["driver_major"] == 575
    assert get_fact(state, host, DockerDaemonJson) == {"runtimes": {"nvidia": {"path": "nvidia-container-runtime"}}}
    assert get_fact(state, host, DockerRuntimes) == ["nvidia", "runc"]
    assert get_fact(state, host, TritonHealth, args=[6000, "embeddinggemma"]) == {
        "live": True,
        "ready": True,
        "model_ready": True,
    }
    assert not state.failed_hosts
