"""Faults on a real fleet (sandbox ``faults``, 2 hosts, tests/sandbox): what a bad release, a crashed
Triton, a rebooted host and a cut model transfer do, and that the fleet heals or is healed.

In order, on one fleet converged by the real deploy:

1. a release with a broken config (a wrong output name, through ``triton_config_template``) rolled
   out with ``python -m deploys.rollout``: the canary (host1) does not come READY, is rolled back
   automatically and serves the previous release READY (read back from Triton's
   ``/v2/models/NAME/config``) with that release's files intact; host2 is not touched;
2. the Triton process killed inside host1: the restart policy brings it back READY;
3. a model transfer cut halfway on host1 (the store file gone, half a ``.partial`` left): Triton keeps
   serving from its release's hard links, and the next run sends the file again, checks its
   sha256, installs it and verifies;
4. host1's container restarted (a reboot): systemd starts Docker, Docker starts Triton, READY.
"""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.sandbox import fleet
from tests.sandbox.deploy import run_deploy, sandbox_env

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[1]
NAME = "faults"
HOSTS = ("host1", "host2")
CANARY = "canary-ngc-" + secrets.token_hex(12)
MODEL = "embeddinggemma"
TRITON_DIR = "/opt/triton-embeddinggemma"
HTTP_PORT = 6000
CONTAINER = f"triton-{MODEL}"
# The broken config: the deploy's own template with one output renamed (the graph has no such
# output, so Triton refuses to load the model). Written under templates/ for the test only.
BROKEN_TEMPLATE = "e2e-fault-wrong-output.config.pbtxt.j2"
WRONG_OUTPUT = "sentence_embedding_wrong"


def _env() -> dict[str, str]:
    return sandbox_env(NAME, CANARY)


def deploy(*args: str, timeout: int = 900) -> subprocess.CompletedProcess[str]:
    """``pyinfra inventories/sandbox.py deploys/all.py -y ARGS`` against this fleet."""
    return run_deploy(NAME, CANARY, *args, timeout=timeout)


def host_sh(host: str, command: str, check: bool = True) -> str:
    """Run ``command`` in a sandbox host (docker exec: out of band, not through the deploy)."""
    proc = subprocess.run(
        ["docker", "exec", fleet.host_container(NAME, host), "sh", "-c", command], capture_output=True, text=True, timeout=60
    )
    if check:
        assert proc.returncode == 0, f"{host}: {command}: {proc.stderr}"
    return proc.stdout


def model_ready(host: str) -> bool:
    code = host_sh(host, f"curl -s -o /dev/null -w '%{{http_code}}' http://127.0.0.1:{HTTP_PORT}/v2/models/{MODEL}/ready", check=False)
    return code.strip() == "200"


def wait_ready(host: str, timeout: float) -> float:
    """Seconds until the model answers READY on ``host``; fails after ``timeout``."""
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        try:
            if model_ready(host):
                return time.monotonic() - start
        except subprocess.TimeoutExpired:
            pass
        time.sleep(2)
    raise AssertionError(f"{host}: model not READY within {timeout:.0f}s")


# Triton's restricted APIs (model config, repository, logging, trace) want the host's key header;
# the key is read inside the host, so it is on no command line here.
TRITON_KEY_FILE = f"{TRITON_DIR}/triton-api/key"
KEY_HEADER = f'-H "triton-api-key: $(cat {TRITON_KEY_FILE})"'


def served_outputs(host: str) -> list[str]:
    """Output names of the config Triton serves (its model config endpoint, a restricted API)."""
    config = json.loads(host_sh(host, f"curl -fsS {KEY_HEADER} http://127.0.0.1:{HTTP_PORT}/v2/models/{MODEL}/config"))
    return sorted(output["name"] for output in config["output"])


def link(host: str, name: str) -> str:
    return host_sh(host, f"readlink {TRITON_DIR}/{name} || true").strip().rsplit("/", 1)[-1]


def started_at(host: str) -> str:
    return host_sh(host, f"docker inspect -f '{{{{.State.StartedAt}}}}' {CONTAINER}").strip()


def release_files(host: str, release: str) -> str:
    """sha256 of every file of a release (config, compose file, model files)."""
    return host_sh(host, f"cd {TRITON_DIR}/releases/{release} && find . -type f | sort | xargs sha256sum")


@pytest.fixture(scope="module")
def sandbox() -> Iterator[dict[str, Any]]:
    """A fresh 2-host fleet, converged by the real deploy; removed afterwards."""
    subprocess.run(["bash", str(ROOT / "tests/sandbox/docker_daemon.sh")], check=True)
    fleet.down(NAME)
    old = os.environ.get("NGC_API_KEY")
    os.environ["NGC_API_KEY"] = CANARY  # the sandbox registry's password
    try:
        state = fleet.up(NAME, len(HOSTS))
    finally:
        os.environ.pop("NGC_API_KEY") if old is None else os.environ.__setitem__("NGC_API_KEY", old)
    proc = deploy("--json")
    assert proc.returncode == 0, proc.stderr[-4000:]
    yield state
    if os.environ.get("SANDBOX_KEEP") != "1":
        fleet.down(NAME)


@pytest.fixture
def broken_template() -> Iterator[str]:
    """templates/<BROKEN_TEMPLATE>: config.pbtxt.j2 naming an output the model does not have."""
    source = (ROOT / "templates/config.pbtxt.j2").read_text()
    assert source.count('name: "sentence_embedding"') == 1
    path = ROOT / "templates" / BROKEN_TEMPLATE
    path.write_text(source.replace('name: "sentence_embedding"', f'name: "{WRONG_OUTPUT}"'))
    try:
        yield BROKEN_TEMPLATE
    finally:
        path.unlink(missing_ok=True)


def test_broken_release_canary_rolled_back(sandbox: dict[str, Any], broken_template: str, tmp_path: Path) -> None:
    good = {h: link(h, "current") for h in HOSTS}
    assert all(good.values())
    good_files = release_files("host1", good["host1"])
    host2_started = started_at("host2")

    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "deploys.rollout",
            "inventories/sandbox.py",
            "--batch-size",
            "1",
            "--data",
            f"triton_config_template={broken_template}",
            "--data",
            "triton_ready_timeout_s=60",
            "--report-dir",
            str(tmp_path),
        ],
        cwd=ROOT,
        env=_env(),
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert proc.returncode == 1, proc.stderr[-6000:]
    assert "not READY within 60s (triton_ready_timeout_s)" in proc.stderr  # the canary failed its READY gate
    assert "rollout: the canary failed; stopping" in proc.stderr
    [report_file] = (tmp_path / "rollouts").glob("*.json")
    report = {h["host"]: h for h in json.loads(report_file.read_text())["hosts"]}

    # The canary: a new release went live, failed, and was rolled back to the previous one.
    canary = report["host1"]
    assert canary["old"] == good["host1"] and canary["new"] and canary["new"] != canary["old"], canary
    assert canary["verdict"] == "rolled back" and canary["rolled_back"] is True, canary
    assert canary["serving"] == good["host1"] and canary["ready"] is True, canary
    summary = proc.stderr[proc.stderr.index("Rollout summary") :]
    print(summary)  # shown with pytest -s
    assert f"host1  {good['host1']}  {canary['new']}  rolled back  yes" in summary, summary
    # Read back from Triton itself: the previous release's config, READY.
    assert model_ready("host1")
    assert served_outputs("host1") == ["last_hidden_state", "sentence_embedding"]
    assert link("host1", "current") == good["host1"]
    assert release_files("host1", good["host1"]) == good_files  # its files intact
    # The failed release stays on disk for inspection.
    assert WRONG_OUTPUT in host_sh("host1", f"cat {TRITON_DIR}/releases/{canary['new']}/models/{MODEL}/config.pbtxt")

    # host2 was never touched.
    assert report["host2"]["verdict"] == "skipped" and report["host2"]["new"] is None
    assert link("host2", "current") == good["host2"]
    assert started_at("host2") == host2_started
    assert served_outputs("host2") == ["last_hidden_state", "sentence_embedding"]


def test_killed_triton_comes_back(sandbox: dict[str, Any]) -> None:
    restarts = int(host_sh("host1", f"docker inspect -f '{{{{.RestartCount}}}}' {CONTAINER}").strip())
    pid = host_sh("host1", f"docker inspect -f '{{{{.State.Pid}}}}' {CONTAINER}").strip()
    host_sh("host1", f"kill -9 {pid}")  # tritonserver dies as in an OOM kill
    deadline = time.monotonic() + 60
    while int(host_sh("host1", f"docker inspect -f '{{{{.RestartCount}}}}' {CONTAINER}").strip()) == restarts:
        assert time.monotonic() < deadline, "Docker did not restart the killed Triton container"
        time.sleep(1)
    wait_ready("host1", 180)
    assert served_outputs("host1") == ["last_hidden_state", "sentence_embedding"]


def test_cut_model_transfer_resumes_and_verifies(sandbox: dict[str, Any]) -> None:
    store = f"{TRITON_DIR}/models/{MODEL}/1/model.onnx_data"
    wanted = host_sh("host1", f"sha256sum {store}").split()[0]
    started = started_at("host1")
    # What a transfer cut halfway leaves: half the bytes in .partial, the file not installed.
    host_sh("host1", f"head -c $(( $(stat -c %s {store}) / 2 )) {store} > {store}.partial && rm {store}")
    # The live release holds its own hard links: Triton keeps serving meanwhile.
    assert model_ready("host1")

    proc = deploy("--json", "--limit", "host1")
    assert proc.returncode == 0, proc.stderr[-4000:]
    changed = [op["name"] for op in json.loads(proc.stdout)["results"]["operations"] if op["success"]]
    assert "Model files (pinned, checksummed) | Check sha256 and install model.onnx_data" in changed, changed
    assert not [name for name in changed if name.startswith("Triton |")], changed  # same release: no restart
    assert "[host1] parity PASS" in proc.stderr
    assert host_sh("host1", f"sha256sum {store}").split()[0] == wanted
    assert host_sh("host1", f"test -e {store}.partial && echo left || echo gone").strip() == "gone"
    assert started_at("host1") == started


def test_rebooted_host_brings_docker_and_triton_back(sandbox: dict[str, Any]) -> None:
    container = fleet.host_container(NAME, "host1")
    subprocess.run(["docker", "restart", container], check=True, capture_output=True, timeout=120)
    took = wait_ready("host1", 240)
    assert host_sh("host1", "systemctl is-active docker").strip() == "active"
    assert host_sh("host1", "systemctl is-enabled docker").strip() == "enabled"
    assert served_outputs("host1") == ["last_hidden_state", "sentence_embedding"]
    print(f"host1 READY {took:.0f}s after its restart")


# ---------------------------------------------------------------------------------------------
# restricted APIs: Triton's control APIs answer only with the host's key header (issue 11, item 1)

RESTRICTED_CALLS = (("POST", "/v2/repository/index"), ("GET", "/v2/logging"), ("GET", "/v2/trace/setting"))


def restricted_codes(host: str, with_key: bool) -> dict[str, str]:
    """HTTP status of each restricted call on ``host``, with or without the key header."""
    header = KEY_HEADER if with_key else ""
    return {
        f"{method} {path}": host_sh(
            host,
            f"curl -s --max-time 10 -o /dev/null -w '%{{http_code}}' -X {method} {header} http://127.0.0.1:{HTTP_PORT}{path}",
            check=False,
        ).strip()
        for method, path in RESTRICTED_CALLS
    }


def changed_on(proc: subprocess.CompletedProcess[str], host: str) -> list[str]:
    assert proc.returncode == 0, proc.stderr[-4000:]
    return [op["name"] for op in json.loads(proc.stdout)["results"]["operations"] if host in op["success"]]


def test_restricted_control_apis_need_the_host_key(sandbox: dict[str, Any]) -> None:
    refused = restricted_codes("host1", with_key=False)
    assert all(code in ("401", "403") for code in refused.values()), refused
    assert set(restricted_codes("host1", with_key=True).values()) == {"200"}
    unload = host_sh(
        "host1",
        f"curl -s --max-time 10 -o /dev/null -w '%{{http_code}}' -X POST http://127.0.0.1:{HTTP_PORT}/v2/repository/models/{MODEL}/unload",
    )
    assert unload.strip() in ("401", "403") and model_ready("host1")
    # The key: 0600 root, in a 0700 directory; not in the compose file nor in docker inspect.
    assert host_sh("host1", f"stat -c '%a %U %G' {TRITON_KEY_FILE} {TRITON_DIR}/triton-api").split("\n")[:2] == [
        "600 root root",
        "700 root root",
    ]
    key = host_sh("host1", f"cat {TRITON_KEY_FILE}").strip()
    assert len(key) == 64
    assert key not in host_sh("host1", f"cat {TRITON_DIR}/current/docker-compose.yml")
    assert key not in host_sh("host1", f"docker inspect {CONTAINER}")
    assert key not in host_sh("host1", f"cat {TRITON_DIR}/gateway/gateway.json")
    label = host_sh("host1", f"docker inspect -f '{{{{index .Config.Labels \"io.triton-embeddinggemma.api-key-sha256\"}}}}' {CONTAINER}")
    assert label.strip() == host_sh("host1", f"sha256sum {TRITON_KEY_FILE}").split()[0]
    # Health and inference stay open; the gateway (it reads max_batch_size, a restricted API) serves.
    assert host_sh("host1", f"curl -s -o /dev/null -w '%{{http_code}}' http://127.0.0.1:{HTTP_PORT}/v2/health/ready").strip() == "200"
    # (The sandbox's gateway listens on the host's private address: gateway.json says which.)
    listen = host_sh("host1", f"python3 -c \"import json; print(json.load(open('{TRITON_DIR}/gateway/gateway.json'))['listen_address'])\"")
    assert host_sh("host1", f"curl -s -o /dev/null -w '%{{http_code}}' http://{listen.strip()}:6080/ready").strip() == "200"
    assert served_outputs("host1") == ["last_hidden_state", "sentence_embedding"]
    # A re-run: verify passes (it reads the model config with the key) and nothing changes.
    started = started_at("host1")
    proc = deploy("--json", "--limit", "host1")
    assert changed_on(proc, "host1") == []
    assert "[host1] parity PASS" in proc.stderr
    assert started_at("host1") == started
    assert key not in proc.stdout + proc.stderr


def test_restricted_new_key_restarts_triton_once(sandbox: dict[str, Any]) -> None:
    old = host_sh("host1", f"cat {TRITON_KEY_FILE}").strip()
    started = started_at("host1")
    host_sh(
        "host1",
        f"umask 077; head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \\n' > {TRITON_KEY_FILE}.new && mv {TRITON_KEY_FILE}.new {TRITON_KEY_FILE}",
    )
    new = host_sh("host1", f"cat {TRITON_KEY_FILE}").strip()
    assert new != old and len(new) == 64
    proc = deploy("--json", "--limit", "host1")
    changed = changed_on(proc, "host1")
    assert "Triton | Start Triton (docker compose up -d)" in changed, changed
    assert "[host1] parity PASS" in proc.stderr
    assert started_at("host1") != started
    wait_ready("host1", 180)
    assert set(restricted_codes("host1", with_key=True).values()) == {"200"}  # the new key
    old_key = host_sh(
        "host1",
        f"curl -s --max-time 10 -o /dev/null -w '%{{http_code}}' -H 'triton-api-key: {old}' http://127.0.0.1:{HTTP_PORT}/v2/logging",
    )
    assert old_key.strip() in ("401", "403")
    # The gateway's copy follows; a further run changes nothing.
    assert host_sh("host1", f"cmp {TRITON_KEY_FILE} {TRITON_DIR}/gateway/triton-api.key && echo same").strip() == "same"
    assert changed_on(deploy("--json", "--limit", "host1"), "host1") == []
