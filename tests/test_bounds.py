"""Every remote command that can hang is bounded (deploys/core/bounds.py).

- The plan: the real pyinfra CLI on @fake hosts (-vv prints every command sent, facts included);
  each curl carries --max-time (or -m), each docker pull, docker compose up, docker run and pip
  install runs under coreutils ``timeout N``.
- The shell: the READY waits, run here with sh and bash against a socket that accepts TCP and never
  answers, end within their bound with one line naming the step and the host; ``bounded`` ends a
  command that outlives its bound the same way.
"""

from __future__ import annotations

import http.server
import re
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from deploys.core import bounds, endpoints, operations, settings
from deploys.triton import triton_service
from tests.support.operation_runner import shell_of
from tests.test_plan import MODEL_FILES, run_fleet
from tests.test_plan import hub as hub  # the pytest fixture (a local Hub with the lock)

SHELLS = [sh for sh in ("sh", "bash") if shutil.which(sh)]

# -- the plan ------------------------------------------------------------------------------------

# A fresh GPU host (toolkit key download, smoke run) and a fresh CPU host with Docker's own apt
# repository (its key download) whose model files come from the Hub to the host (curl downloads);
# both with the gateway and verify on (the runtimes' installs, the gateway's READY wait).
PLAN_HOSTS = (
    'f.host("gpu-ubuntu", {"gpu": True, **f.SETTINGS, "gateway_enabled": True, "verify_enabled": True}, '
    "f.responses(f.UBUNTU_2404_RELEASE, f.H100_X2, f.DF_PLENTY)),\n"
    'f.host("cpu-debian", {"gpu": False, **f.SETTINGS, "gateway_enabled": True, "verify_enabled": True, '
    '"docker_source": "docker-ce", "model_fetch": "host"}, f.responses(f.DEBIAN_13_RELEASE, None, f.DF_PLENTY))'
)

_QUOTED = re.compile(r"'[^']*'")
_BOUNDED = r"timeout(?: -k \d+)? \d+ "
# What must run under `timeout N`: (label, pattern of the invocation).
MUST_BE_TIMED = {
    "docker pull": r"docker pull\b",
    "docker compose up": r"docker compose\b[^;|&]*\bup\b",
    "docker run": r"docker run\b",
    "runtime install": r"\S*pip3? install\b|\S*/uv(?:-[\w.]+)? pip (?:sync|install)\b",
}
_CURL = re.compile(r"(?<![\w./-])curl(?=\s)")


def sent_commands(stderr: str) -> list[str]:
    """The commands pyinfra -vv shows as sent (``[host] >>> COMMAND``), facts included."""
    return [line.split(">>> ", 1)[1] for line in stderr.splitlines() if ">>> " in line]


def unbounded(command: str) -> list[str]:
    """What in ``command`` could hang without a bound (empty: nothing)."""
    text = _QUOTED.sub("Q", command)  # messages and URLs: an echoed 'docker run' is not one
    problems = []
    for label, pattern in MUST_BE_TIMED.items():
        for match in re.finditer(pattern, text):
            # (a venv's python running pip from its wheel: `timeout N venv/bin/python pip-….whl/pip install`)
            if not re.search(_BOUNDED + r"(?:\S+/python3? )?$", text[: match.start()]):
                problems.append(f"{label} without timeout: {command}")
    for match in _CURL.finditer(text):
        if re.search(r"command -v\s+$", text[: match.start()]):
            continue  # a presence check, not a call
        call = re.split(r";|\|\||&&|\||\)", text[match.start() :], maxsplit=1)[0]
        if not re.search(r"(?:--max-time|-m)\s+\S+", call):
            problems.append(f"curl without --max-time: {command}")
    return problems


def test_the_checker_catches_unbounded_commands() -> None:
    # Not vacuous: today's code before the bounds, and what a careless edit would bring back.
    for bad in (
        "docker pull --quiet nvcr.io/nvidia/tritonserver:25.05-py3",
        "docker compose -p triton-embeddinggemma -f /x/docker-compose.yml up -d --remove-orphans",
        "docker run --rm --gpus all --entrypoint nvidia-smi img -L",
        "/opt/t/verify/venv/bin/pip install --quiet -r /opt/t/verify/requirements.txt && cp a b",
        "/opt/t/verify/venv/bin/python /opt/t/wheels/pip-25.3-py3-none-any.whl/pip install -r r.txt && cp a b",
        "/opt/t/uv/uv-0.13.9 pip sync --quiet --python /opt/t/verify/venv/bin/python r.txt && cp a b",
        '[ "$(curl -s -o /dev/null -w "%{http_code}" http://127.0.0.1:6000/v2/models/m/ready)" = 200 ]',
        "( curl -sSLf https://nvidia.github.io/libnvidia-container/gpgkey -o /tmp/x ) || ( wget -q x )",
    ):
        assert unbounded(bad), bad
    for good in (
        "timeout -k 10 3600 docker pull --quiet img || { rc=$?; echo 'docker pull did not finish' >&2; exit $rc; }",
        "timeout -k 10 1800 /opt/t/verify/venv/bin/python /opt/t/wheels/pip-25.3-py3-none-any.whl/pip install -r r.txt",
        "timeout -k 10 1800 /opt/t/uv/uv-0.13.9 pip sync --quiet --python /opt/t/verify/venv/bin/python r.txt",
        "if command -v curl >/dev/null 2>&1; then echo \"live $(curl -s --connect-timeout 2 --max-time 5 -o /dev/null 'u')\"; fi",
        "( curl -sSLf --connect-timeout '30' --max-time '120' https://x/gpgkey -o /tmp/x ) || ( wget -q x )",
    ):
        assert not unbounded(good), good


def test_every_command_the_deploy_plans_that_can_hang_is_bounded(tmp_path, hub) -> None:
    result = run_fleet(tmp_path, hub, PLAN_HOSTS, "-vv")
    # The parity check fails on a fake host (no Triton answers); every operation before it ran.
    assert "Traceback" not in result.stderr
    commands = sent_commands(result.stderr)
    seen = {label for label, pattern in MUST_BE_TIMED.items() if any(re.search(pattern, _QUOTED.sub("Q", c)) for c in commands)}
    assert seen == set(MUST_BE_TIMED), f"not exercised: {set(MUST_BE_TIMED) - seen}"
    # Model downloads (into .partial files); the apt key downloads have their own check (tests/test_apt_keys.py).
    curls = [c for c in commands if _CURL.search(_QUOTED.sub("Q", c)) and "curl --fail" in c and ".partial" in c]
    assert len(curls) == len(MODEL_FILES), "the CPU host downloads each model file with curl"
    assert any("nvidia.github.io" in c and "curl" in c for c in commands) and any("download.docker.com" in c for c in commands)
    assert any("/v2/models/embeddinggemma/ready" in c for c in commands) and any("6080/ready" in c for c in commands)
    problems = [p for c in commands for p in unbounded(c)]
    assert not problems, "\n".join(problems)


# -- the shell -----------------------------------------------------------------------------------


@pytest.fixture
def silent_port() -> Iterator[int]:
    """A TCP port on 127.0.0.1 that accepts connections and never sends a byte."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(64)
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        server.settimeout(0.2)
        while not stop.is_set():
            try:
                held.append(server.accept()[0])
            except OSError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        yield server.getsockname()[1]
    finally:
        stop.set()
        thread.join()
        for conn in held:
            conn.close()
        server.close()


@pytest.fixture
def ok_port() -> Iterator[int]:
    """A port answering 200 to every GET (a READY Triton or gateway)."""

    class Ok(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Ok)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def stub_path(tmp_path: Path) -> str:
    """PATH with stand-ins for docker and journalctl (this machine's Docker is not ours to touch)."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name in ("docker", "journalctl"):
        stub = bin_dir / name
        stub.write_text(f"#!/bin/sh\necho 'stub {name}: last log line'\n")
        stub.chmod(0o755)
    return f"{bin_dir}:/usr/bin:/bin"


def run_shell(shell: str, command: str, path: str, limit_s: float) -> tuple[subprocess.CompletedProcess, float]:
    started = time.monotonic()
    proc = subprocess.run([shell, "-c", command], env={"PATH": path}, capture_output=True, text=True, timeout=limit_s)
    return proc, time.monotonic() - started


needs_curl = pytest.mark.skipif(not shutil.which("curl"), reason="needs curl on this machine")


@needs_curl
@pytest.mark.parametrize("shell", SHELLS)
def test_triton_ready_wait_ends_within_its_bound_against_a_silent_server(shell, silent_port, stub_path) -> None:
    s = settings.parse("gpu-01", {"gpu": False, "triton_http_port": silent_port, "triton_ready_timeout_s": 10})
    # Without a bound per try, the first curl would wait on the silent socket for ever.
    proc, elapsed = run_shell(shell, triton_service.wait_ready_command(s), stub_path, limit_s=60)
    assert proc.returncode == 1, proc
    assert 9 <= elapsed <= 13, elapsed
    lines = proc.stderr.splitlines()
    assert lines[0] == "Triton on host gpu-01: model embeddinggemma not READY within 10s (triton_ready_timeout_s); last log lines:"
    assert "stub docker: last log line" in lines


@needs_curl
@pytest.mark.parametrize("shell", SHELLS)
def test_gateway_ready_wait_ends_within_its_bound_against_a_silent_server(shell, silent_port, stub_path) -> None:
    s = settings.parse("gpu-01", {"gpu": False, "gateway_listen_port": silent_port, "gateway_ready_timeout_s": 5})
    proc, elapsed = run_shell(shell, shell_of(operations.wait_ready, **endpoints.ready_args(s)), stub_path, limit_s=60)
    assert proc.returncode == 1, proc
    assert 4 <= elapsed <= 8, elapsed
    assert proc.stderr.splitlines()[0].startswith(
        f"Embeddings gateway on host gpu-01: not ready within 5s at http://127.0.0.1:{silent_port}/ready (gateway_ready_timeout_s)"
    )


@needs_curl
@pytest.mark.parametrize("shell", SHELLS)
def test_ready_wait_returns_as_soon_as_the_server_answers(shell, ok_port, stub_path) -> None:
    s = settings.parse("gpu-01", {"gpu": False, "triton_http_port": ok_port, "triton_ready_timeout_s": 10})
    proc, elapsed = run_shell(shell, triton_service.wait_ready_command(s), stub_path, limit_s=30)
    assert proc.returncode == 0 and elapsed < 3, (proc, elapsed)
    assert proc.stderr == ""


@pytest.mark.parametrize("shell", SHELLS)
def test_bounded_ends_a_command_past_its_bound_with_one_line(shell, stub_path) -> None:
    command = bounds.bounded("sleep 30", 1, "Registry login and image pull", "gpu-01", "docker pull img", "docker_pull_timeout_s")
    proc, elapsed = run_shell(shell, command + "; echo not reached", stub_path, limit_s=20)
    assert proc.returncode == 124 and elapsed < 5, (proc, elapsed)
    assert proc.stderr.splitlines() == [
        "Registry login and image pull on host gpu-01: docker pull img did not finish within 1s (docker_pull_timeout_s)"
    ]
    assert proc.stdout == ""


@pytest.mark.parametrize("shell", SHELLS)
def test_bounded_keeps_a_command_s_own_status_and_chains(shell, stub_path) -> None:
    failed, _ = run_shell(shell, bounds.bounded("sh -c 'exit 3'", 5, "Verify", "h", "pip install") + " && echo next", stub_path, 20)
    assert failed.returncode == 3 and failed.stdout == "" and failed.stderr == ""
    passed, _ = run_shell(shell, bounds.bounded("true", 5, "Verify", "h", "pip install") + " && echo next", stub_path, 20)
    assert passed.returncode == 0 and passed.stdout == "next\n"


def test_a_monitored_fleet_behind_a_registry_cache_pulls_both_images_through_it_bounded(tmp_path, hub) -> None:
    """Triton's image and dcgm-exporter's (GPU hosts of a monitored fleet) come through the cache,
    each pull under ``timeout`` with the cache named on failure; no login anywhere."""
    from tests.test_plan import MONITOR, SCRAPED_GPU

    cache = (
        'f.host("cache1", {**f.SETTINGS, "registry_cache_listen_address": "10.0.0.7", "registry_cache_insecure": True, '
        '"monitoring_exporter_address": "10.0.0.7"}, f.responses(f.DEBIAN_13_RELEASE, None, f.DF_PLENTY))'
    )
    result = run_fleet(tmp_path, hub, SCRAPED_GPU, "-vv", monitoring=MONITOR, registry_cache=cache)
    assert "Traceback" not in result.stderr
    assert result.returncode == 0, result.stderr[-3000:]
    commands = sent_commands(result.stderr)
    pulls = [c for c in commands if re.search(r"docker pull\b", _QUOTED.sub("Q", c))]
    for image in ("10.0.0.7:5000/nvidia/tritonserver:", "10.0.0.7:5000/nvidia/k8s/dcgm-exporter:"):
        [pull] = [c for c in pulls if f"docker pull --quiet {image}" in c]
        assert pull.startswith("timeout -k 10 3600 docker pull") and "through the registry cache 10.0.0.7:5000" in pull
    assert not any("nvcr.io/" in c for c in pulls), pulls
    assert not any("docker login" in c for c in commands)
    problems = [p for c in commands for p in unbounded(c)]
    assert not problems, "\n".join(problems)
