"""End to end: the front door (HAProxy from Debian's apt) in front of a 2-host sandbox fleet.

One fleet (sandbox ``door``: host1, host2 and the front-door host front1) serves every test in
order: converge and the openai SDK through the front door; a re-run changes nothing; Triton killed
on one host under load; a host container stopped under load; bad front-door settings. The load
loops send a few requests per second through the front door only (the controller's loopback),
check every answer against local ONNX Runtime, and stop by themselves.
"""

from __future__ import annotations

import json
import os
import random
import secrets
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from tests.load import LoadResult, run_threads
from tests.openai_checks import MODEL, Reference, check_sdk_parity, cosines
from tests.sandbox import fleet
from tests.sandbox.deploy import run_deploy
from verify.samples import samples

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[1]
NAME = "door"
HOSTS = ("host1", "host2")
CANARY = "canary-ngc-" + secrets.token_hex(12)
OUT_WITHIN_S = 3.0  # a host that stops answering READY leaves the pool within this


def deploy(*args: str, timeout: int = 900) -> subprocess.CompletedProcess[str]:
    return run_deploy(NAME, CANARY, *args, timeout=timeout)


def results(proc: subprocess.CompletedProcess[str]) -> dict[str, Any]:
    assert proc.returncode == 0, f"deploy failed (rc {proc.returncode}):\n{proc.stderr[-4000:]}"
    return json.loads(proc.stdout)["results"]


def in_container(container: str, command: str, check: bool = True) -> str:
    proc = subprocess.run(["docker", "exec", container, "sh", "-c", command], capture_output=True, text=True, timeout=60)
    assert not check or proc.returncode == 0, f"{container}: {command}: {proc.stderr}"
    return proc.stdout


def pool() -> dict[str, str]:
    """Server name → HAProxy's operational state (2 = UP) of every gateway, from its runtime API."""
    out = in_container(
        fleet.host_container(NAME, fleet.FRONT_DOOR),
        "echo 'show servers state gateways' | socat stdio unix-connect:/run/haproxy/admin.sock",
    )
    states = {}
    for line in out.splitlines():
        parts = line.split()
        if len(parts) > 5 and parts[0].isdigit():
            states[parts[3]] = "up" if parts[5] == "2" else "down"
    return states


def wait_pool(host: str, wanted: str, timeout_s: float) -> float:
    """Seconds until ``host`` is ``wanted`` ("up"/"down") in the pool; fails past ``timeout_s``."""
    start = time.monotonic()
    while time.monotonic() - start < timeout_s:
        if pool().get(host) == wanted:
            return time.monotonic() - start
        time.sleep(0.1)
    raise AssertionError(f"{host} not {wanted} in the front door's pool within {timeout_s:.0f}s: {pool()}")


class Traffic(threading.Thread):
    """A bounded load loop through the front door: 2 workers, a request each every ~0.2 s, every
    answer compared with local ONNX Runtime (a wrong vector counts as a failure)."""

    def __init__(self, url: str, key: str, expected: dict[str, np.ndarray], seconds: float) -> None:
        super().__init__(daemon=True)
        self.url, self.key, self.expected, self.seconds = url, key, expected, seconds
        self.result = LoadResult()
        self.client = httpx.Client(timeout=30)

    def call(self) -> int:
        text = random.choice(list(self.expected))
        body = {"model": MODEL, "input": [text], "encoding_format": "float", "input_type": "none"}
        response = self.client.post(f"{self.url}/v1/embeddings", json=body, headers={"Authorization": f"Bearer {self.key}"})
        if response.status_code != 200:
            raise RuntimeError(f"HTTP {response.status_code}: {response.text[:200]}")
        got = np.array([response.json()["data"][0]["embedding"]], dtype=np.float32)
        cos = float(cosines(got, self.expected[text][None])[0])
        if cos < 0.9999:
            raise AssertionError(f"cosine {cos} for {text[:40]!r}")
        time.sleep(0.2)
        return 1

    def run(self) -> None:
        self.result = run_threads(self.call, targets=[self.url], concurrency=2, max_requests=2000, max_seconds=self.seconds)


def fleet_up() -> dict[str, Any]:
    """Create or refresh the fleet (a restarted container publishes new loopback ports)."""
    old = os.environ.get("NGC_API_KEY")
    os.environ["NGC_API_KEY"] = CANARY  # the sandbox registry's password is the canary
    try:
        return fleet.up(NAME, len(HOSTS), front_door=True)
    finally:
        os.environ.pop("NGC_API_KEY") if old is None else os.environ.__setitem__("NGC_API_KEY", old)


@pytest.fixture(scope="module")
def sandbox() -> Iterator[dict[str, Any]]:
    subprocess.run(["bash", str(ROOT / "tests/sandbox/docker_daemon.sh")], check=True)
    fleet.down(NAME)
    state = fleet_up()
    yield state
    if os.environ.get("SANDBOX_KEEP") != "1":
        fleet.down(NAME)


@pytest.fixture(scope="module")
def reference() -> Reference:
    return Reference(fleet.MODEL_MIRROR)


@pytest.fixture(scope="module")
def expected(reference: Reference) -> dict[str, np.ndarray]:
    texts = [sample.text for sample in samples() if sample.id != "d-long-max"]
    vectors, _ = reference.embed(texts)
    return dict(zip(texts, vectors, strict=True))


def front() -> tuple[str, str]:
    status = fleet.status_json(NAME)
    return status["front_door_url"], Path(status["api_key_file"]).read_text().strip()


def test_fleet_with_a_front_door_converges_and_serves_the_openai_sdk(sandbox: dict[str, Any], reference: Reference) -> None:
    res = results(deploy("--json"))
    assert res["failed_hosts"] == []
    ops = {op["name"]: op["success"] for op in res["operations"] if op["success"]}
    assert ops.get("Front door | Check the candidate with haproxy -c, then make it live") == [fleet.FRONT_DOOR]
    assert all(fleet.FRONT_DOOR not in hosts for name, hosts in ops.items() if not name.startswith("Front door |"))
    assert wait_pool("host1", "up", 10) >= 0 and wait_pool("host2", "up", 10) >= 0
    url, key = front()
    check_sdk_parity(url, key, reference, "sdk-default")
    check_sdk_parity(url, key, reference, "float")


def test_rerun_changes_nothing_on_any_host(sandbox: dict[str, Any]) -> None:
    res = results(deploy("--json"))
    changed = {op["name"]: op["success"] for op in res["operations"] if op["success"]}
    assert changed == {}, changed


def test_triton_killed_under_load_fails_no_request(sandbox: dict[str, Any], expected: dict[str, np.ndarray]) -> None:
    url, key = front()
    traffic = Traffic(url, key, expected, seconds=25)
    traffic.start()
    time.sleep(3)
    container = fleet.host_container(NAME, "host1")
    # tritonserver dies as in an OOM kill (docker kill would count as a stop: no restart)
    in_container(
        container, "kill -9 $(docker inspect -f '{{.State.Pid}}' $(docker ps -q --filter label=com.docker.compose.service=triton))"
    )
    out_after = wait_pool("host1", "down", OUT_WITHIN_S + 2)
    assert out_after <= OUT_WITHIN_S, f"host1 left the pool after {out_after:.1f}s"
    wait_pool("host1", "up", 120)  # restart: unless-stopped brings Triton back, then READY
    traffic.join(timeout=60)
    result = traffic.result
    assert result.count > 50, f"the load loop barely ran: {result.as_dict()}"
    assert result.failures == 0, result.as_dict()


def test_host_stopped_under_load_fails_no_request(sandbox: dict[str, Any], expected: dict[str, np.ndarray]) -> None:
    url, key = front()
    traffic = Traffic(url, key, expected, seconds=15)
    traffic.start()
    time.sleep(3)
    container = fleet.host_container(NAME, "host2")
    subprocess.run(["docker", "stop", "-t", "2", container], check=True, capture_output=True, timeout=60)
    try:
        out_after = wait_pool("host2", "down", OUT_WITHIN_S + 5)
        traffic.join(timeout=60)
    finally:
        subprocess.run(["docker", "start", container], check=True, capture_output=True, timeout=60)
    assert out_after <= OUT_WITHIN_S + 2, f"host2 left the pool after {out_after:.1f}s (stop itself takes up to 2 s)"
    result = traffic.result
    assert result.count > 30 and result.failures == 0, result.as_dict()
    wait_pool("host2", "up", 180)  # systemd boots the host: Docker, Triton, gateway, READY
    fleet_up()  # its SSH port was published anew


@pytest.mark.parametrize(
    "data, key",
    [
        ("front_door_metrics_port=8080", "front_door_metrics_port"),
        ("front_door_tls=true", "front_door_tls"),
        ("gateway_listen_address=127.0.0.1", "gateway_listen_address"),
    ],
    ids=["port-clash", "no-certificate", "unreachable-backend"],
)
def test_bad_front_door_settings_fail_cleanly(sandbox: dict[str, Any], data: str, key: str) -> None:
    door = fleet.host_container(NAME, fleet.FRONT_DOOR)
    before = in_container(door, "sha256sum /etc/haproxy/haproxy.cfg")
    proc = deploy("--data", data, timeout=300)
    assert proc.returncode != 0
    output = proc.stdout + proc.stderr
    assert "Traceback" not in output
    assert [line for line in output.splitlines() if key in line and "host" in line], output[-2000:]
    assert in_container(door, "sha256sum /etc/haproxy/haproxy.cfg") == before
