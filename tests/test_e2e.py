"""End to end: the real deploy (deploys/all.py) on a 2-host sandbox fleet (tests/sandbox).

One fleet (sandbox ``e2e``) serves every test in this module, in order: converge, no-op re-run,
one setting changed, one host rebuilt, secret audit, bad input. The registry's password (the
sandbox's NGC key) is a canary generated per run: it must never show up in pyinfra's output or in
the hosts' process command lines.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import secrets
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from deploys.core import paths, settings
from tests.sandbox import fleet
from tests.sandbox.deploy import run_deploy, sandbox_env
from tests.support.openai_checks import BAD_REQUESTS, Reference, assert_error, check_sdk_parity, good_request, too_many_inputs

pytestmark = [pytest.mark.e2e, pytest.mark.fleet]  # fleet: a sandbox fleet with fixed container names, never in parallel

ROOT = Path(__file__).resolve().parents[1]
NAME = "e2e"
HOSTS = ("host1", "host2")
CANARY = "canary-ngc-" + secrets.token_hex(12)
MODEL = "embeddinggemma"
HTTP_PORT = 6000  # triton_http_port default, inside each host


def _env() -> dict[str, str]:
    return sandbox_env(NAME, CANARY)


def deploy(*args: str, timeout: int = 900) -> subprocess.CompletedProcess[str]:
    """``pyinfra inventories/sandbox.py deploys/all.py -y ARGS`` against this fleet."""
    return run_deploy(NAME, CANARY, *args, timeout=timeout)


def results(proc: subprocess.CompletedProcess[str]) -> dict[str, Any]:
    """The ``--json`` results block (stdout is pure JSON with --json)."""
    assert proc.returncode == 0, f"deploy failed (rc {proc.returncode}):\n{proc.stderr[-4000:]}"
    return json.loads(proc.stdout)["results"]


def changed(res: dict[str, Any], host: str) -> list[str]:
    """Names of the operations that changed ``host``."""
    return [op["name"] for op in res["operations"] if host in op["success"]]


def host_sh(host: str, command: str) -> str:
    """Run ``command`` in a sandbox host (docker exec: out of band, not through the deploy)."""
    proc = subprocess.run(
        ["docker", "exec", fleet.host_container(NAME, host), "sh", "-c", command], capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 0, f"{host}: {command}: {proc.stderr}"
    return proc.stdout


def triton_get(host: str, path: str) -> str:
    """GET Triton's HTTP endpoint inside ``host`` (the port binds to the host's loopback), with the
    host's restricted-API key header (read inside the host: the model config is restricted)."""
    key = paths.layout(settings.parse(host, {})).triton_key
    return host_sh(host, f'curl -fsS -H "triton-api-key: $(cat {key})" http://127.0.0.1:{HTTP_PORT}{path}')


def compose_digests() -> dict[str, str]:
    """sha256 of every host's Triton directory files (compose file, config.pbtxt), by host."""
    out = {}
    for host in HOSTS:
        listing = host_sh(
            host,
            "cd /opt/triton-embeddinggemma 2>/dev/null && find . -maxdepth 3 -type f \\( -name '*.yml' -o -name '*.yaml' -o -name '*.pbtxt' \\) | sort | xargs -r sha256sum",
        )
        out[host] = hashlib.sha256(listing.encode()).hexdigest() + f" ({len(listing.splitlines())} files)"
    return out


@pytest.fixture(scope="module")
def sandbox() -> Iterator[dict[str, Any]]:
    """A fresh 2-host e2e fleet (images reused when built before); removed afterwards."""
    subprocess.run(["bash", str(ROOT / "tests/sandbox/docker_daemon.sh")], check=True)
    fleet.down(NAME)
    old = os.environ.get("NGC_API_KEY")
    os.environ["NGC_API_KEY"] = CANARY  # the sandbox registry's password is the canary
    try:
        state = fleet.up(NAME, len(HOSTS))
    finally:
        if old is None:
            os.environ.pop("NGC_API_KEY", None)
        else:
            os.environ["NGC_API_KEY"] = old
    yield state
    if os.environ.get("SANDBOX_KEEP") != "1":
        fleet.down(NAME)


def test_fresh_fleet_converges(sandbox: dict[str, Any]) -> None:
    proc = deploy("--json")
    res = results(proc)
    assert res["failed_hosts"] == []
    for host in HOSTS:
        assert changed(res, host), f"{host}: a fresh host should change"
        assert re.search(rf"\[{host}\] parity PASS", proc.stderr), f"{host}: no parity PASS line"
        assert re.search(rf"^{host}\s.*\srepaired\s", proc.stderr, re.M), f"{host}: the fleet table's window column is not 'repaired'"
        assert host_sh(host, f"curl -s -o /dev/null -w '%{{http_code}}' http://127.0.0.1:{HTTP_PORT}/v2/health/ready") == "200"
        config = json.loads(triton_get(host, f"/v2/models/{MODEL}/config"))
        assert config["platform"] == "onnxruntime_onnx"
        assert config["instance_group"][0]["kind"] == "KIND_CPU"


def test_rerun_changes_nothing(sandbox: dict[str, Any]) -> None:
    res = results(deploy("--json"))
    for host in HOSTS:
        assert changed(res, host) == [], f"{host}: a re-run changed {changed(res, host)}"


def served_graph_sha(host: str) -> str:
    graph = f"{paths.layout(settings.parse(host, {})).version_dir}/model.onnx"
    return host_sh(host, f"sha256sum {graph}").split()[0]


def last_report(host: str) -> dict[str, Any]:
    """``host``'s last verify report (written by the deploy's parity check, on the host)."""
    return json.loads(host_sh(host, f"cat {paths.layout(settings.parse(host, {})).verify.report}"))


def test_attention_window_repaired_then_upstream_rolls_back(sandbox: dict[str, Any]) -> None:
    """The e2e fleet's model (fleet.SandboxModel gemma3) is exported without its window: the deploy serves
    the repaired graph (the same bytes as the model's ``served`` copy) and verify passed on every host with
    the long samples past the window (sized by it: verify/samples.py); upstream rolls back; the default
    serves the repaired graph again."""
    model = fleet.sandbox_model(sandbox)
    assert model.kind == "gemma3"
    repaired = hashlib.sha256((model.served / "onnx" / "model.onnx").read_bytes()).hexdigest()
    upstream = hashlib.sha256((model.mirror / "onnx" / "model.onnx").read_bytes()).hexdigest()
    assert repaired != upstream
    for host in HOSTS:
        assert served_graph_sha(host) == repaired, f"{host}: the served graph is not the repaired one"
        report = last_report(host)  # test_rerun_changes_nothing's check of the repaired graph
        tokens = {row["id"]: row["tokens"] for row in report["samples"] if row["id"].startswith("d-long-") and row["id"] != "d-long-max"}
        assert report["verdict"] == "pass" and report["window"] == model.window, (host, report["verdict"], report.get("window"))
        assert len(tokens) == 4 and min(tokens.values()) > model.window + 1, (
            f"{host}: long samples {tokens} not past the window {model.window}"
        )
    proc = deploy("--json", "--data", "model_attention_window=upstream")
    res = results(proc)
    for host in HOSTS:
        assert served_graph_sha(host) == upstream, f"{host}: model_attention_window=upstream did not serve the upstream graph"
        assert re.search(rf"\[{host}\] parity PASS", proc.stderr) and re.search(rf"^{host}\s.*\supstream\s", proc.stderr, re.M)
        assert changed(res, host), f"{host}: rolling back to the upstream graph changed nothing"
    proc = deploy("--json")  # back to the default: repaired (recorded on the controller: no repair again)
    res = results(proc)
    for host in HOSTS:
        assert served_graph_sha(host) == repaired, f"{host}: the default did not serve the repaired graph again"
        assert re.search(rf"^{host}\s.*\srepaired\s", proc.stderr, re.M), f"{host}: the fleet table's window column is not 'repaired'"


def gateway(host: str = "host1") -> tuple[str, str]:
    """(base URL on the controller's loopback, API key) of ``host``'s embeddings gateway."""
    status = fleet.status_json(NAME)
    url = next(h["gateway_url"] for h in status["hosts"] if h["name"] == host)
    return url, Path(status["api_key_file"]).read_text().strip()


def triton_started(host: str) -> str:
    """When ``host``'s Triton container last started (docker's StartedAt)."""
    return host_sh(host, "docker inspect -f '{{.State.StartedAt}}' $(docker ps -q --filter label=com.docker.compose.service)").strip()


def gateway_pid(host: str) -> str:
    return host_sh(host, "systemctl show -p MainPID --value embeddings-gateway.service").strip()


@pytest.mark.parametrize("encoding", ["sdk-default", "float"])
def test_gateway_serves_the_openai_sdk_like_local_onnx_runtime(sandbox: dict[str, Any], encoding: str) -> None:
    url, key = gateway()
    model = fleet.sandbox_model(sandbox)
    check_sdk_parity(url, key, Reference(model.served, model.window, model.max_tokens), encoding)


def test_gateway_bad_requests_get_openai_errors(sandbox: dict[str, Any]) -> None:
    url, key = gateway()
    auth = {"Authorization": f"Bearer {key}"}
    for what, body, status, code, param in [*BAD_REQUESTS, too_many_inputs(2048)]:
        raw = body if isinstance(body, bytes) else json.dumps(body).encode()
        response = httpx.post(f"{url}/v1/embeddings", content=raw, headers=auth, timeout=30)
        try:
            assert_error(response, status, code, param)
        except AssertionError as error:
            raise AssertionError(f"case {what!r}: {error}") from None
    assert_error(httpx.post(f"{url}/v1/embeddings", json=good_request(), timeout=30), 401, "invalid_api_key")
    wrong = {"Authorization": "Bearer sandbox-not-the-key-0000000000"}
    assert_error(httpx.post(f"{url}/v1/embeddings", json=good_request(), headers=wrong, timeout=30), 401, "invalid_api_key")
    big = json.dumps({**good_request(), "input": ["word " * 1000] * 1000}).encode()  # past the 4 MiB default
    assert_error(httpx.post(f"{url}/v1/embeddings", content=big, headers=auth, timeout=30), 413, "request_too_large")
    assert_error(httpx.get(f"{url}/v1/nothing", headers=auth, timeout=30), 404, "unknown_url")
    response = httpx.post(f"{url}/v1/embeddings", json=good_request(), headers=auth, timeout=30)
    assert response.status_code == 200 and len(response.json()["data"][0]["embedding"]) == 768


def test_gateway_setting_change_restarts_only_the_gateway(sandbox: dict[str, Any]) -> None:
    triton = {h: triton_started(h) for h in HOSTS}
    pids = {h: gateway_pid(h) for h in HOSTS}
    res = results(deploy("--json", "--data", "gateway_max_inputs=64"))
    url, key = gateway()
    over = httpx.post(
        f"{url}/v1/embeddings", json={**good_request(), "input": ["x"] * 65}, headers={"Authorization": f"Bearer {key}"}, timeout=30
    )
    assert_error(over, 400, "too_many_inputs", "input")
    for host in HOSTS:
        ops = changed(res, host)
        assert ops and all(op.startswith("Embeddings gateway |") for op in ops), f"{host}: {ops}"
        assert "Embeddings gateway | Restart the gateway (code, pins, config or unit changed)" in ops
        assert triton_started(host) == triton[host], f"{host}: Triton restarted for a gateway setting"
        assert gateway_pid(host) != pids[host], f"{host}: the gateway was not restarted"
    res = results(deploy("--json"))  # back to the defaults
    assert all(op.startswith("Embeddings gateway |") for h in HOSTS for op in changed(res, h))


def test_rotated_api_key_reloads_the_gateway_without_restarts(sandbox: dict[str, Any]) -> None:
    _, old_key = gateway()
    triton = {h: triton_started(h) for h in HOSTS}
    pids = {h: gateway_pid(h) for h in HOSTS}
    new_key = fleet.rotate_api_key(NAME)
    res = results(deploy("--json"))
    for host in HOSTS:
        assert changed(res, host) == [
            "Embeddings gateway | Gateway API key hashes (sha256 only)",
            "Embeddings gateway | Reload the gateway's API keys (SIGHUP)",
            "Verify | Gateway key of the verify step (0600, root)",  # derived from the vault's keys
        ], f"{host}: {changed(res, host)}"
        assert triton_started(host) == triton[host] and gateway_pid(host) == pids[host], f"{host}: something restarted"
    for host in HOSTS:
        host_url, _ = gateway(host)
        ok = httpx.post(f"{host_url}/v1/embeddings", json=good_request(), headers={"Authorization": f"Bearer {new_key}"}, timeout=30)
        assert ok.status_code == 200, ok.text
        old = httpx.post(f"{host_url}/v1/embeddings", json=good_request(), headers={"Authorization": f"Bearer {old_key}"}, timeout=30)
        assert_error(old, 401, "invalid_api_key")
    mode = host_sh("host1", "stat -c '%a %U' /opt/triton-embeddinggemma/gateway/api-keys.sha256").strip()
    assert mode == "600 embeddings-gateway"
    assert new_key not in host_sh("host1", "cat /opt/triton-embeddinggemma/gateway/api-keys.sha256"), "a raw key on the host"


def test_setting_change_touches_only_dependents(sandbox: dict[str, Any]) -> None:
    started = {
        h: host_sh(h, "docker inspect -f '{{.State.StartedAt}}' $(docker ps -q --filter label=com.docker.compose.service)").strip()
        for h in HOSTS
    }
    res = results(deploy("--json", "--data", "triton_max_batch_size=16"))
    for host in HOSTS:
        ops = changed(res, host)
        assert ops, f"{host}: changing triton_max_batch_size changed nothing"
        unrelated = [op for op in ops if re.search(r"(?i)apt|docker\.io|daemon\.json|login|pull|model file|upload .*onnx", op)]
        assert unrelated == [], f"{host}: operations unrelated to max_batch_size changed: {unrelated}"
        config = json.loads(triton_get(host, f"/v2/models/{MODEL}/config"))
        assert config["max_batch_size"] == 16
        now = host_sh(host, "docker inspect -f '{{.State.StartedAt}}' $(docker ps -q --filter label=com.docker.compose.service)").strip()
        assert now != started[host], f"{host}: Triton was not recreated"
    # back to the defaults (the following tests expect them)
    res = results(deploy("--json"))
    for host in HOSTS:
        assert json.loads(triton_get(host, f"/v2/models/{MODEL}/config"))["max_batch_size"] == 8


def test_rebuilt_host_converges_other_unchanged(sandbox: dict[str, Any]) -> None:
    fleet.remove_host(NAME, "host2")
    old = os.environ.get("NGC_API_KEY")
    os.environ["NGC_API_KEY"] = CANARY
    try:
        fleet.up(NAME, len(HOSTS))  # host2 from scratch; host1 untouched
    finally:
        os.environ.pop("NGC_API_KEY") if old is None else os.environ.__setitem__("NGC_API_KEY", old)
    res = results(deploy("--json"))
    assert changed(res, "host1") == [], f"host1 changed: {changed(res, 'host1')}"
    assert changed(res, "host2"), "the rebuilt host2 did not change"
    assert json.loads(triton_get("host2", f"/v2/models/{MODEL}/config"))["max_batch_size"] == 8


class CommandLineSampler(threading.Thread):
    """Samples every process command line inside the hosts while a run goes on."""

    def __init__(self) -> None:
        super().__init__(daemon=True)
        self.stop = threading.Event()
        self.samples: list[str] = []

    def run(self) -> None:
        while not self.stop.is_set():
            for host in HOSTS:
                proc = subprocess.run(
                    [
                        "docker",
                        "exec",
                        fleet.host_container(NAME, host),
                        "sh",
                        "-c",
                        "for f in /proc/[0-9]*/cmdline; do tr '\\0' ' ' < $f; echo; done 2>/dev/null",
                    ],
                    capture_output=True,
                    text=True,
                )
                self.samples.append(proc.stdout)
            time.sleep(0.2)


@pytest.mark.parametrize("flags", [("-vvv",), ("--debug",)], ids=["vvv", "debug"])
def test_secret_never_shown(sandbox: dict[str, Any], flags: tuple[str, ...]) -> None:
    for host in HOSTS:  # forget the login so the run has to use the key
        host_sh(host, "rm -f /root/.docker/config.json")
    sampler = CommandLineSampler()
    sampler.start()
    try:
        proc = deploy(*flags)
    finally:
        sampler.stop.set()
        sampler.join()
    assert proc.returncode == 0, proc.stderr[-4000:]
    output = proc.stdout + proc.stderr
    row = re.search(r"Docker login to \S+ \(password on stdin\)\s+(\d+)\s+(\d+)", output)
    assert row and row.group(2) == str(len(HOSTS)), "the run did not log in on every host: the audit saw nothing"
    assert output.count(CANARY) == 0, "the NGC key appeared in pyinfra's output"
    assert len(sampler.samples) > 2
    assert not any(CANARY in s for s in sampler.samples), "the NGC key appeared in a host's process command line"
    for host in HOSTS:
        assert host_sh(host, "test -s /root/.docker/config.json && echo ok").strip() == "ok"


@pytest.mark.parametrize(
    "data, key",
    [
        ("triton_max_batch_size=0", "triton_max_batch_size"),
        ("model_variant=fp16", "model_variant"),
        ("triton_max_batch=4", "triton_max_batch"),
        ("triton_bind_address=localhost", "triton_bind_address"),
    ],
)
def test_bad_setting_fails_cleanly(sandbox: dict[str, Any], data: str, key: str) -> None:
    before = compose_digests()
    proc = deploy("--data", data, timeout=300)
    assert proc.returncode != 0
    output = proc.stdout + proc.stderr
    assert "Traceback" not in output
    lines = [line for line in output.splitlines() if key in line and "host" in line]
    assert lines, f"no line names {key}:\n{output[-2000:]}"
    assert compose_digests() == before
