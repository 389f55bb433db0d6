"""Faults on a real fleet (sandbox ``faults``, 2 Triton hosts pulling through the registry cache
cache1, tests/sandbox): what a bad release, a crashed Triton, a rebooted host, a cut model transfer
and a cache that is down do, and that the fleet heals or is healed.

In order, on one fleet converged by the real deploy:

1. a release with a broken config (a wrong output name, through ``triton_config_template``) rolled
   out with ``python -m deploys.rollout``: the canary (host1) does not come READY, is rolled back
   automatically and serves the previous release READY (read back from Triton's
   ``/v2/models/NAME/config``) with that release's files intact; host2 is not touched;
2. the Triton process killed inside host1: the restart policy brings it back READY;
3. a model transfer cut halfway on host1 (the store file gone, half a ``.partial`` left): Triton keeps
   serving from its release's hard links, and the next run sends the file again, checks its
   sha256, installs it and verifies;
4. (run last) host1's container restarted (a reboot): systemd starts Docker, Docker starts Triton, READY;
5. served file integrity: a served model file damaged in place (so the store's too: one inode) is
   sent again, linked again and Triton restarted; one replaced by a damaged copy fails verify (the
   sha256 differs from the lock) and the deploy links it again and restarts Triton;
6. the rollout driver with host2 unreachable (its sshd stopped): host2 is reported ``unreachable``
   and untouched, the canary host1 is still rolled back READY; and SIGTERM to the driver during the
   canary's deploy: the canary is finished (rolled back), no batch starts, the report is written;
7. the deploy lock: a lock held on host1 fails the next deploy there at once with one line naming
   the holder, two deploys started at once leave one run and one such line, a stale lock (a pid gone
   from this controller, an old lock of another) is taken over, and the re-run converges;
8. Triton's restricted APIs: control endpoints refuse requests without the host's key header and
   answer with it; a new key restarts Triton once.

Then the registry cache (issue 15): the upstream (the stand-in for nvcr.io) served the image once for
the whole fleet, no Triton host holds its credential; releases under other tags of the image and a
prune leave only the kept releases' images; a rollback to a release whose image is gone pulls it
through the cache; the cache down is one line per host.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from tests.sandbox import fleet
from tests.sandbox.deploy import run_deploy, sandbox_env

pytestmark = [pytest.mark.e2e, pytest.mark.fleet]  # fleet: a sandbox fleet with fixed container names, never in parallel

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


def said(output: str, host: str, text: str) -> bool:
    """Whether pyinfra's ``output`` has ``text`` on a line of ``host`` (pyinfra pads the ``[host]``
    prefix to the inventory's longest host name)."""
    return re.search(rf"\[{re.escape(host)}\]\s+{re.escape(text)}", output) is not None


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
        state = fleet.up(NAME, len(HOSTS), registry_cache=True, model="tiny")
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
    source = (ROOT / "templates/triton/config.pbtxt.j2").read_text()
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
    # The release's old link is not the new store file: linked again, but its bytes were intact, so no restart.
    assert "Triton | Hard-link model.onnx_data into the release" in changed, changed
    assert not [name for name in changed if name.startswith("Triton |") and "Hard-link" not in name], changed
    assert said(proc.stderr, "host1", "parity PASS")
    assert host_sh("host1", f"sha256sum {store}").split()[0] == wanted
    assert host_sh("host1", f"test -e {store}.partial && echo left || echo gone").strip() == "gone"
    assert started_at("host1") == started


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
    assert said(proc.stderr, "host1", "parity PASS")
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
    assert said(proc.stderr, "host1", "parity PASS")
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


# -- deploy lock (issue 11, problem 5): one run at a time changes a host ---------------------------
#
# The lock as deploys/deploy_lock/logic.py keeps it on every host (spelled here, not imported: the
# tests must fail on code without the lock, not only at import).
LOCK_DIR = "/run/lock/triton-embeddinggemma-deploy"


def _hold_lock(host: str, holder: str, pid: int, run_id: str, age_s: int = 0) -> None:
    """Write a lock record on ``host`` out of band, as a run ``age_s`` old would have left it."""
    record = " ".join(f"'{line}'" for line in (f"holder={holder}", f"pid={pid}", "started=2026-12-02T06:00:00Z", f"run={run_id}"))
    age = f" && touch -d @$(( $(date +%s) - {age_s} )) {LOCK_DIR}/held" if age_s else ""
    host_sh(host, f"mkdir -p {LOCK_DIR} && mkdir {LOCK_DIR}/held && printf '%s\\n' {record} > {LOCK_DIR}/held/record{age}")


def _lock_record(host: str) -> str:
    return host_sh(host, f"cat {LOCK_DIR}/held/record 2>/dev/null || echo none", check=False).strip()


def _changed(proc: subprocess.CompletedProcess[str]) -> list[str]:
    if not proc.stdout.strip():
        return []
    return [op["name"] for op in json.loads(proc.stdout)["results"]["operations"] if op["success"]]


def _dead_pid() -> int:
    child = subprocess.Popen(["true"])
    child.wait()
    return child.pid


def test_lock_held_lock_fails_the_host_at_once_naming_the_holder(sandbox: dict[str, Any]) -> None:
    current, started = link("host1", "current"), started_at("host1")
    holder = f"tester@{socket.gethostname()}"  # this controller, a live pid: not stale
    _hold_lock("host1", holder, os.getpid(), "e2e-lock-held")
    try:
        # A change the deploy would make (a new release goes live) if it got the lock.
        proc = deploy("--json", "--limit", "host1", "--data", "triton_max_batch_size=16")
        assert proc.returncode != 0, proc.stderr[-4000:]
        lines = [line for line in proc.stderr.splitlines() if "deploy lock held by" in line]
        assert len(lines) == 1, proc.stderr[-4000:]
        expected = f"{holder} (pid {os.getpid()}, since 2026-12-02T06:00:00Z, run e2e-lock-held)"
        assert expected in lines[0] and f"rm -rf {LOCK_DIR}/held" in lines[0], lines[0]
        print(lines[0])
        assert "Traceback" not in proc.stderr
        assert _changed(proc) == [], _changed(proc)
        assert link("host1", "current") == current and started_at("host1") == started
        assert "run=e2e-lock-held" in _lock_record("host1")  # the holder's lock stays as it was
    finally:
        host_sh("host1", f"rm -rf {LOCK_DIR}/held")  # the documented way to clear a lock
    assert served_outputs("host1") == ["last_hidden_state", "sentence_embedding"]


def test_lock_two_deploys_at_once_one_runs_the_other_fails(sandbox: dict[str, Any]) -> None:
    current, started = link("host1", "current"), started_at("host1")
    with ThreadPoolExecutor(max_workers=2) as pool:
        runs = list(pool.map(lambda _: deploy("--json", "--limit", "host1"), range(2)))
    passed = [proc for proc in runs if proc.returncode == 0]
    failed = [proc for proc in runs if proc.returncode != 0]
    assert len(passed) == 1 and len(failed) == 1, [proc.stderr[-2000:] for proc in runs]
    assert _changed(passed[0]) == [], _changed(passed[0])  # converged: the run that ran changed nothing
    assert said(passed[0].stderr, "host1", "parity PASS")
    # The other ends with one line: the lock held by the first run (named by its record, or, when it
    # asked between the first run's mkdir and its record's write, "a deploy whose record is not
    # written yet"), or (its plan read the host before the first run ended) a plan made stale by that run.
    lines = [
        line
        for line in failed[0].stderr.splitlines()
        if "deploy lock held by" in line or "changed this host after this run read it" in line
    ]
    assert len(lines) == 1, failed[0].stderr[-4000:]
    print(lines[0])
    if "held by" in lines[0] and "record is not written yet" not in lines[0]:
        assert f"@{socket.gethostname()} (pid " in lines[0] and ", run " in lines[0], lines[0]
    assert _changed(failed[0]) == []
    assert link("host1", "current") == current and started_at("host1") == started
    assert _lock_record("host1") == "none"  # given back
    assert host_sh("host1", f"ls {TRITON_DIR} | grep -c '\\.new' || true").strip() == "0"  # no working names left


def test_lock_stale_lock_is_taken_over_and_the_rerun_converges(sandbox: dict[str, Any]) -> None:
    current = link("host1", "current")
    # A pid gone from this same controller: taken over at once.
    pid = _dead_pid()
    _hold_lock("host1", f"tester@{socket.gethostname()}", pid, "e2e-lock-dead-pid")
    try:
        proc = deploy("--json", "--limit", "host1")
        assert proc.returncode == 0, proc.stderr[-4000:]
        warnings = [line for line in proc.stderr.splitlines() if "is stale" in line]
        assert len(warnings) == 1 and f"its pid {pid} no longer runs on {socket.gethostname()}" in warnings[0], proc.stderr[-4000:]
        assert "run e2e-lock-dead-pid" in warnings[0] and "taken over" in warnings[0]
        print(warnings[0])
        assert _changed(proc) == [], _changed(proc)
        assert _lock_record("host1") == "none"

        # Another controller's lock, older than deploy_lock_stale_s: taken over too.
        _hold_lock("host1", "someone@another-controller", 1, "e2e-lock-old", age_s=5 * 3600)
        proc = deploy("--json", "--limit", "host1")
        assert proc.returncode == 0, proc.stderr[-4000:]
        warnings = [line for line in proc.stderr.splitlines() if "is stale" in line]
        assert len(warnings) == 1 and "older than deploy_lock_stale_s=14400s" in warnings[0], proc.stderr[-4000:]
        print(warnings[0])
        assert _changed(proc) == [], _changed(proc)
    finally:
        host_sh("host1", f"rm -rf {LOCK_DIR}/held")
    assert _lock_record("host1") == "none" and link("host1", "current") == current
    # Unlocked: a plain re-run converges with 0 changes.
    proc = deploy("--json", "--limit", "host1")
    assert proc.returncode == 0 and _changed(proc) == [], proc.stderr[-4000:]


# -- rollout driver: an unreachable host, SIGTERM (python -m deploys.rollout) ------------------------


def _rollout_cmd(template: str, report_dir: Path) -> list[str]:
    """The broken release of test_broken_release_canary_rolled_back, rolled out one host at a time."""
    return [
        sys.executable,
        "-m",
        "deploys.rollout",
        "inventories/sandbox.py",
        "--batch-size",
        "1",
        "--data",
        f"triton_config_template={template}",
        "--data",
        "triton_ready_timeout_s=60",
        "--report-dir",
        str(report_dir),
    ]


def _report(report_dir: Path) -> tuple[dict[str, Any], dict[str, dict[str, Any]]]:
    [path] = (report_dir / "rollouts").glob("*.json")
    report = json.loads(path.read_text())
    return report, {h["host"]: h for h in report["hosts"]}


def _assert_rolled_back(host: str, outcome: dict[str, Any], good: str, good_files: str) -> None:
    """``host``: the broken release went live, failed READY and was rolled back to ``good`` (READY)."""
    assert outcome["old"] == good and outcome["new"] and outcome["new"] != good, outcome
    assert outcome["verdict"] == "rolled back" and outcome["rolled_back"] is True, outcome
    assert outcome["serving"] == good and outcome["ready"] is True, outcome
    assert model_ready(host) and link(host, "current") == good
    assert served_outputs(host) == ["last_hidden_state", "sentence_embedding"]
    assert release_files(host, good) == good_files


def test_rollout_driver_unreachable_host_is_reported_and_canary_rolled_back(
    sandbox: dict[str, Any], broken_template: str, tmp_path: Path
) -> None:
    # host2's sshd stopped before the rollout: the fleet-wide state read fails, each host is read
    # alone; host1 (the canary) gets the broken release and is rolled back, host2 is "unreachable".
    good = {h: link(h, "current") for h in HOSTS}
    good_files = release_files("host1", good["host1"])
    host2_started = started_at("host2")
    host_sh("host2", "systemctl stop ssh.socket 2>/dev/null; systemctl stop ssh")
    try:
        proc = subprocess.run(_rollout_cmd(broken_template, tmp_path), cwd=ROOT, env=_env(), capture_output=True, text=True, timeout=900)
    finally:
        host_sh("host2", "systemctl start ssh")
        fleet._wait_ssh(fleet._published_port(fleet.host_container(NAME, "host2"), "22/tcp"))
    assert proc.returncode == 1, proc.stderr[-6000:]
    assert "host2: unreachable over SSH" in proc.stderr, proc.stderr[-6000:]
    assert "rollout: the canary failed; stopping" in proc.stderr
    _, report = _report(tmp_path)
    print(proc.stderr[proc.stderr.index("Rollout summary") :])  # shown with pytest -s
    _assert_rolled_back("host1", report["host1"], good["host1"], good_files)
    host2 = report["host2"]
    assert host2["verdict"] == "unreachable" and host2["wave"] is None and host2["new"] is None, host2
    # Read alone, host2's run ends at pyinfra's own connect error (sshd down: no SSH banner): its event.
    assert "host host2: could not connect (" in host2["message"], host2
    assert any(e in host2["message"] for e in ("SSH error", "Could not connect", "EOF error", "Unable to connect")), host2
    # host2 was never touched.
    assert link("host2", "current") == good["host2"] and started_at("host2") == host2_started
    assert model_ready("host2")


def test_rollout_driver_sigterm_during_the_canary_finishes_it_and_writes_the_report(
    sandbox: dict[str, Any], broken_template: str, tmp_path: Path
) -> None:
    # SIGTERM to the driver's whole process group (as a terminal's Ctrl-C or a service manager would)
    # while the canary deploys: the pyinfra runs (their own session) are not cut, the canary is
    # finished (failed READY, rolled back), no batch starts, the report is written, exit 128+15.
    good = {h: link(h, "current") for h in HOSTS}
    good_files = release_files("host1", good["host1"])
    host2_started = started_at("host2")
    driver = subprocess.Popen(
        _rollout_cmd(broken_template, tmp_path), cwd=ROOT, env=_env(), stderr=subprocess.PIPE, text=True, start_new_session=True
    )
    lines: list[str] = []
    try:
        for line in driver.stderr:  # type: ignore[union-attr]
            lines.append(line)
            if "deploys/all.py -y --json --limit host1" in line:
                time.sleep(5)  # inside the canary's deploy
                os.killpg(driver.pid, signal.SIGTERM)
                break
        lines += driver.stderr.readlines()  # type: ignore[union-attr]
        driver.wait(900)
    finally:
        if driver.poll() is None:
            driver.kill()
    stderr = "".join(lines)
    assert driver.returncode == 128 + signal.SIGTERM, stderr[-6000:]
    assert "rollout: SIGTERM: finishing the wave in flight" in stderr
    assert (
        stderr.strip()
        .splitlines()[-1]
        .startswith("rollout interrupted (SIGTERM): the wave in flight was finished, 1 host(s) not started; report: ")
    )
    assert "deploys/all.py -y --json --limit host2" not in stderr
    report, hosts = _report(tmp_path)
    assert report["interrupted"] == "SIGTERM"
    _assert_rolled_back("host1", hosts["host1"], good["host1"], good_files)
    assert hosts["host2"]["verdict"] == "skipped" and hosts["host2"]["wave"] is None
    assert link("host2", "current") == good["host2"] and started_at("host2") == host2_started


# -- served file integrity: a damaged file in the live release is found by verify and healed by the deploy --

SERVED_DATA = f"{TRITON_DIR}/current/models/{MODEL}/1/model.onnx_data"
STORE_DATA = f"{TRITON_DIR}/models/{MODEL}/1/model.onnx_data"


def _integrity_lock_sha(sandbox: dict[str, Any]) -> str:
    """The lock's sha256 of the served data file (the sandbox's own lock)."""
    model = sandbox["model"]
    lock = json.loads((ROOT / model["model_lock_file"]).read_text())["models"][model["model_repo_id"]][model["model_revision"]]
    return lock["onnx/model.onnx_data"]["sha256"]


def _integrity_inode(path: str) -> str:
    return host_sh("host1", f"stat -c %d:%i {path}").strip()


def _integrity_sha(path: str) -> str:
    return host_sh("host1", f"sha256sum {path}").split()[0]


def _integrity_report(stderr: str) -> dict[str, Any]:
    """host1's parity report, from the path the verify step logs (``(report: reports/<run>/host1.json)``)."""
    marker = "(report: "
    line = next(line for line in stderr.splitlines() if "[host1]" in line and marker in line)
    path = line[line.index(marker) + len(marker) :].split(")")[0]
    return json.loads((ROOT / path).read_text())


def _integrity_changed(proc: subprocess.CompletedProcess[str]) -> list[str]:
    return [op["name"] for op in json.loads(proc.stdout)["results"]["operations"] if op["success"]]


def _integrity_healed(sandbox: dict[str, Any], proc: subprocess.CompletedProcess[str], started: str) -> None:
    """After a healing deploy: the release's file is the store's again, intact, Triton restarted READY, parity passed."""
    lock = _integrity_lock_sha(sandbox)
    assert proc.returncode == 0, proc.stderr[-6000:]
    changed = _integrity_changed(proc)
    assert "Triton | Hard-link model.onnx_data into the release" in changed, changed
    assert "Triton | Start Triton (docker compose up -d)" in changed, changed
    assert "Triton | Hard-link model.onnx into the release" not in changed, changed  # the intact graph stays
    assert _integrity_inode(SERVED_DATA) == _integrity_inode(STORE_DATA)
    assert _integrity_sha(SERVED_DATA) == lock
    assert started_at("host1") != started
    assert model_ready("host1")
    assert said(proc.stderr, "host1", "parity PASS")
    report = _integrity_report(proc.stderr)
    assert report["model"]["files"]["model.onnx_data"] == lock and report["model"]["differs"] == [], report["model"]


def test_integrity_damaged_store_link_is_resent_relinked_and_restarted(sandbox: dict[str, Any]) -> None:
    lock = _integrity_lock_sha(sandbox)
    assert _integrity_inode(SERVED_DATA) == _integrity_inode(STORE_DATA)  # a hard link of the store's file
    started = started_at("host1")
    # Bytes appended to the served data file: the external data's offsets still hold, so Triton
    # and ONNX Runtime agree on it; being the store's inode, the store is damaged too.
    host_sh("host1", f"printf 'damaged' >> {SERVED_DATA}")
    assert _integrity_sha(STORE_DATA) != lock

    proc = deploy("--json", "--limit", "host1")
    assert "Model files (pinned, checksummed) | Check sha256 and install model.onnx_data" in _integrity_changed(proc), proc.stderr[-4000:]
    _integrity_healed(sandbox, proc, started)
    assert _integrity_sha(STORE_DATA) == lock


def test_integrity_replaced_served_file_fails_verify_and_the_deploy_heals(sandbox: dict[str, Any]) -> None:
    lock = _integrity_lock_sha(sandbox)
    store_inode = _integrity_inode(STORE_DATA)
    started = started_at("host1")
    # A damaged copy moved over the served file: another inode, the store intact.
    host_sh("host1", f"cp {SERVED_DATA} {SERVED_DATA}.bad && printf 'damaged' >> {SERVED_DATA}.bad && mv {SERVED_DATA}.bad {SERVED_DATA}")
    damaged = _integrity_sha(SERVED_DATA)
    assert damaged != lock and _integrity_inode(SERVED_DATA) != store_inode and _integrity_sha(STORE_DATA) == lock

    # Verify alone names the mismatch: the file, the host, expected vs found, the fix; the table shows it.
    proc = run_deploy(NAME, CANARY, "--limit", "host1", deploy="deploys/verify.py")
    assert proc.returncode != 0, proc.stderr[-4000:]
    line = next((line for line in proc.stderr.splitlines() if "differ from the lock" in line), "")
    assert "host host1:" in line and "model.onnx_data has sha256" in line, proc.stderr[-4000:]
    assert f"{damaged[:12]}, the lock says {lock[:12]}" in line, line
    assert "re-run the deploy" in line, line
    assert f"{damaged[:12]} DIFFERS from lock" in proc.stderr  # the fleet table's model sha column
    assert "Traceback" not in proc.stderr
    assert started_at("host1") == started  # verify changes nothing

    proc = deploy("--json", "--limit", "host1")
    assert not [name for name in _integrity_changed(proc) if name.startswith("Model files")], _integrity_changed(proc)  # store intact
    _integrity_healed(sandbox, proc, started)
    assert _integrity_inode(STORE_DATA) == store_inode

    # Converged: a re-run changes nothing and restarts nothing.
    healed = started_at("host1")
    proc = deploy("--json", "--limit", "host1")
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert _integrity_changed(proc) == [], _integrity_changed(proc)
    assert started_at("host1") == healed


# -- registry cache (issue 15) -------------------------------------------------------------------------

CACHE = "cache1"
IMAGE_REPO = "sandbox-registry:5000/nvidia/tritonserver"  # the hosts' triton_image, without its tag


def cache_endpoint(sandbox: dict[str, Any]) -> str:
    return f"{sandbox['registry_cache']['address']}:{fleet.REGISTRY_CACHE_PORT}"


def image_refs(host: str) -> set[str]:
    """The Triton image references Docker holds on ``host``."""
    return set(host_sh(host, "docker image ls --format '{{.Repository}}:{{.Tag}}' | grep /nvidia/tritonserver: || true").split())


def cache_blob_clients() -> set[str]:
    """Addresses that fetched blobs from the cache (its access log in the journal)."""
    log = host_sh(CACHE, "journalctl -u docker-registry --no-pager -o cat")
    return {line.split()[0] for line in log.splitlines() if '"GET /v2/nvidia/tritonserver/blobs/' in line and '" 200 ' in line}


def test_cache_pulls_go_through_it_and_the_upstream_serves_the_image_once(sandbox: dict[str, Any]) -> None:
    image = fleet.image_bytes(NAME)
    upstream = fleet.upstream_blob_bytes(NAME)
    print(f"image_bytes {image}, upstream served {upstream} ({upstream / image:.3f} x) for {len(HOSTS)} hosts")
    assert image <= upstream <= 1.05 * image, (image, upstream)
    endpoint = cache_endpoint(sandbox)
    for host in HOSTS:
        assert image_refs(host) == {f"{endpoint}/nvidia/tritonserver:25.05-py3"}, image_refs(host)
    addresses = {h["address"] for h in sandbox["hosts"]}
    assert addresses <= cache_blob_clients(), (addresses, cache_blob_clients())


def test_cache_no_triton_host_holds_the_upstream_credential(sandbox: dict[str, Any]) -> None:
    password = CANARY  # the registry password the fixture vaulted
    dirs = "/etc /root /opt /home /usr/local /srv /var/lib/docker/containers"

    def holders(host: str) -> list[str]:
        # The password goes through stdin (grep -f), never on a command line.
        proc = subprocess.run(
            ["docker", "exec", "-i", fleet.host_container(NAME, host), "sh", "-c", f"grep -rlsF -f /dev/stdin {dirs} || true"],
            input=password + "\n",
            capture_output=True,
            text=True,
            timeout=120,
        )
        return proc.stdout.split()

    # The check finds it where it must be: the cache's config, 0600 for the registry's user.
    assert holders(CACHE) == ["/etc/docker/registry/config.yml"]
    assert host_sh(CACHE, "stat -c '%a %U' /etc/docker/registry/config.yml").strip() == "600 docker-registry"
    for host in HOSTS:
        assert holders(host) == [], f"{host} holds the upstream credential in {holders(host)}"
        assert "sandbox-registry" not in host_sh(host, "cat /root/.docker/config.json 2>/dev/null || true")


def test_cache_releases_of_other_tags_prune_and_rollback_to_a_removed_image(sandbox: dict[str, Any]) -> None:
    endpoint = cache_endpoint(sandbox)
    first = {h: link(h, "current") for h in HOSTS}
    tag_b, tag_c = (fleet.push_tag(NAME, tag) for tag in ("25.05-py3-b", "25.05-py3-c"))
    try:
        proc = deploy("--data", f"triton_image={tag_b}")
        assert proc.returncode == 0, proc.stderr[-4000:]
        proc = deploy("--data", f"triton_image={tag_c}", "--data", "triton_releases_keep=2")
        assert proc.returncode == 0, proc.stderr[-4000:]
        # Releases: the tag-b one (previous) and the tag-c one (current); the first is pruned and so is its tag.
        for host in HOSTS:
            assert first[host] not in host_sh(host, f"ls {TRITON_DIR}/releases").split()
            assert image_refs(host) == {f"{endpoint}/nvidia/tritonserver:25.05-py3-b", f"{endpoint}/nvidia/tritonserver:25.05-py3-c"}
        previous = link("host1", "previous")

        # The previous release's image gone from host1 (an earlier prune, a hand clean-up): rollback pulls it.
        host_sh("host1", f"docker image rm {endpoint}/nvidia/tritonserver:25.05-py3-b")
        proc = run_deploy(NAME, CANARY, "--limit", "host1", deploy="deploys/rollback.py")
        assert proc.returncode == 0, proc.stderr[-4000:]
        assert "is not on the host: pulling it" in proc.stderr
        assert link("host1", "current") == previous
        assert model_ready("host1")
        assert f"{endpoint}/nvidia/tritonserver:25.05-py3-b" in image_refs("host1")
        # Three tags of one image: still one copy's worth from the upstream.
        assert fleet.upstream_blob_bytes(NAME) <= 1.05 * fleet.image_bytes(NAME)
    finally:
        proc = deploy()  # back to the defaults (the first tag) on every host
        assert proc.returncode == 0, proc.stderr[-4000:]
    for host in HOSTS:
        assert model_ready(host)


def test_cache_down_is_one_line_per_host_and_changes_nothing(sandbox: dict[str, Any]) -> None:
    tag_d = fleet.push_tag(NAME, "25.05-py3-d")
    before = {h: (link(h, "current"), started_at(h)) for h in HOSTS}
    host_sh(CACHE, "systemctl stop docker-registry")
    try:
        # The Triton hosts only (the cache step would start the cache again): a new tag needs a pull.
        proc = deploy("--limit", "sandbox", "--data", f"triton_image={tag_d}", timeout=600)
        assert proc.returncode != 0
        assert "Traceback" not in proc.stderr
        for host in HOSTS:
            lines = [line for line in proc.stderr.splitlines() if f"[{host}]" in line and "through the registry cache" in line]
            assert len(lines) == 1, proc.stderr[-4000:]
            assert f"(host {CACHE}) failed: is docker-registry running there" in lines[0], lines[0]
            assert (link(host, "current"), started_at(host)) == before[host]
            assert model_ready(host)
    finally:
        host_sh(CACHE, "systemctl start docker-registry")


# -- last: a restarted host container gets new published ports (the state file keeps the old ones) --


def test_rebooted_host_brings_docker_and_triton_back(sandbox: dict[str, Any]) -> None:
    container = fleet.host_container(NAME, "host1")
    subprocess.run(["docker", "restart", container], check=True, capture_output=True, timeout=120)
    took = wait_ready("host1", 240)
    assert host_sh("host1", "systemctl is-active docker").strip() == "active"
    assert host_sh("host1", "systemctl is-enabled docker").strip() == "enabled"
    assert served_outputs("host1") == ["last_hidden_state", "sentence_embedding"]
    print(f"host1 READY {took:.0f}s after its restart")
