"""Fact commands run for real on this machine through pyinfra's @local connector.

The fixture tests pin each command string and parser; these prove the commands themselves work in
a real shell: guards exit 0 when things are missing, quoting survives odd paths, secrets stay on
the host. Stand-ins, each named: a scripted ``nvidia-smi`` (no GPU here) and Triton's HTTP
endpoints served by http.server (the real tritonserver is in test_triton_live.py).
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import platform
import shutil
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, ClassVar

import pytest

from facts.apt import AptKeyFingerprints
from facts.disk import FreeDiskBytes
from facts.docker import (
    DockerContainer,
    DockerDaemonJson,
    DockerImageId,
    DockerRegistryAuth,
    DockerRuntimes,
    registry_auth_digest,
)
from facts.gpu import NvidiaGpus
from facts.python import HostPython, WheelDigests
from facts.triton import TritonHealth
from tests.support.net import free_port

LoadFact = Callable[..., Any]
H100_ROW = "0, NVIDIA H100 80GB HBM3, GPU-3f6e5a1b-9c2d-4e7f-8a0b-1c2d3e4f5a6b, 575.57.08, 81559, 9.0"
NO_DRIVER = (
    "NVIDIA-SMI has failed because it couldn't communicate with the NVIDIA driver. "
    "Make sure that the latest NVIDIA driver is installed and running."
)


# -- NvidiaGpus with a scripted nvidia-smi (stand-in: there is no GPU on this machine) ------------


def install_nvidia_smi(bin_dir: Path, stdout: str, stderr: str, rc: int) -> None:
    """Stand-in nvidia-smi: checks it was asked the right query, answers like the real one."""
    bin_dir.mkdir(exist_ok=True)
    (bin_dir / "smi.out").write_text(stdout)
    (bin_dir / "smi.err").write_text(stderr)
    script = bin_dir / "nvidia-smi"
    script.write_text(
        "#!/bin/sh\n"
        'case "$*" in\n'
        "  *--query-gpu=index,name,uuid,driver_version,memory.total,compute_cap*"
        "--format=csv,noheader,nounits*) ;;\n"
        '  *) echo "unexpected arguments: $*" >&2; exit 99 ;;\n'
        "esac\n"
        f"cat '{bin_dir}/smi.out'\n"
        f"cat '{bin_dir}/smi.err' >&2\n"
        f"exit {rc}\n"
    )
    script.chmod(0o755)


@pytest.fixture
def smi_bin(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    return bin_dir


def test_nvidia_smi_absent(local_fact: LoadFact) -> None:
    if shutil.which("nvidia-smi"):
        pytest.skip("this machine has a real nvidia-smi")
    assert local_fact(NvidiaGpus) == {"smi": False, "error": None, "gpus": []}


def test_nvidia_smi_gpus(local_fact: LoadFact, smi_bin: Path) -> None:
    install_nvidia_smi(smi_bin, f"{H100_ROW}\n{H100_ROW.replace('0, ', '1, ', 1)}\n", "", 0)
    fact = local_fact(NvidiaGpus)
    assert fact["smi"] is True and fact["error"] is None
    assert [gpu["index"] for gpu in fact["gpus"]] == [0, 1]
    assert fact["gpus"][0]["driver_major"] == 575
    assert fact["gpus"][0]["compute_capability"] == 9.0


@pytest.mark.parametrize("stream", ["stdout", "stderr"])
def test_nvidia_smi_failure_is_reported_not_fatal(local_fact: LoadFact, smi_bin: Path, stream: str) -> None:
    out, err = (NO_DRIVER + "\n", "") if stream == "stdout" else ("", NO_DRIVER + "\n")
    install_nvidia_smi(smi_bin, out, err, 9)
    assert local_fact(NvidiaGpus) == {"smi": True, "error": NO_DRIVER, "gpus": []}


def test_nvidia_smi_no_devices(local_fact: LoadFact, smi_bin: Path) -> None:
    install_nvidia_smi(smi_bin, "No devices were found\n", "", 6)
    assert local_fact(NvidiaGpus) == {"smi": True, "error": "No devices were found", "gpus": []}


# -- DockerDaemonJson on real files -------------------------------------------------------------


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (None, None),
        ("", {}),
        ('{\n  "log-opts": {"max-size": "50m"}\n}\n', {"log-opts": {"max-size": "50m"}}),
        ('{"log-driver": "json-file",}', "__invalid__"),
    ],
    ids=["missing", "empty", "valid", "invalid"],
)
def test_daemon_json(local_fact: LoadFact, tmp_path: Path, content: str | None, expected: Any) -> None:
    path = tmp_path / "docker dir" / "daemon.json"  # a space: the path must be quoted
    if content is not None:
        path.parent.mkdir()
        path.write_text(content)
    fact = local_fact(DockerDaemonJson, path=str(path))
    if expected == "__invalid__":
        assert set(fact) == {"__invalid__"} and "double quotes" in fact["__invalid__"]
    else:
        assert fact == expected


# -- DockerRegistryAuth: the digest is computed on the host, the secret never printed ----------

USER, KEY = "$oauthtoken", "canary-ngc-Zx9_live-test-key-0123456789"


@pytest.fixture
def docker_config(tmp_path: Path) -> Path:
    """A config.json in the format `docker login` writes (credentials base64 in auths.*.auth)."""
    auth = base64.b64encode(f"{USER}:{KEY}".encode()).decode()
    hub = base64.b64encode(b"someone:hub-password").decode()
    path = tmp_path / "config.json"
    path.write_text(
        json.dumps(
            {
                "auths": {
                    "nvcr.io": {"auth": auth},
                    "https://index.docker.io/v1/": {"auth": hub},
                    "ghcr.io": {},  # credentials kept by a credential helper
                },
                "credsStore": "",
            },
            indent="\t",
        )
    )
    return path


def test_registry_auth_digest_matches(local_fact: LoadFact, docker_config: Path) -> None:
    digest = local_fact(DockerRegistryAuth, "nvcr.io", config_path=str(docker_config))
    assert digest == registry_auth_digest(USER, KEY)
    assert digest != registry_auth_digest(USER, KEY + "-rotated")


@pytest.mark.parametrize(
    ("registry", "expected"),
    [
        ("https://nvcr.io", registry_auth_digest(USER, KEY)),
        ("docker.io", registry_auth_digest("someone", "hub-password")),
        ("ghcr.io", None),
        ("quay.io", None),
    ],
)
def test_registry_auth_lookup(local_fact: LoadFact, docker_config: Path, registry: str, expected: str | None) -> None:
    assert local_fact(DockerRegistryAuth, registry, config_path=str(docker_config)) == expected


@pytest.mark.parametrize("content", [None, "not json", '["a list"]', '{"auths": null}'])
def test_registry_auth_unreadable_config(local_fact: LoadFact, tmp_path: Path, content: str | None) -> None:
    path = tmp_path / "config.json"
    if content is not None:
        path.write_text(content)
    assert local_fact(DockerRegistryAuth, "nvcr.io", config_path=str(path)) is None


def test_registry_auth_never_prints_the_secret(docker_config: Path) -> None:
    command = DockerRegistryAuth().command("nvcr.io", config_path=str(docker_config))
    auth = base64.b64encode(f"{USER}:{KEY}".encode()).decode()
    assert KEY not in command and auth not in command
    result = subprocess.run(["sh", "-c", command], capture_output=True, text=True, check=True)
    for secret in (KEY, auth):
        assert secret not in result.stdout and secret not in result.stderr
    assert result.stdout.strip() == registry_auth_digest(USER, KEY)


# -- FreeDiskBytes ------------------------------------------------------------------------------


def test_free_disk_bytes_walks_up(local_fact: LoadFact, tmp_path: Path) -> None:
    target = tmp_path / "model store" / "it's" / "embeddinggemma" / "1"  # not created
    free = local_fact(FreeDiskBytes, str(target))
    stat = os.statvfs(tmp_path)
    expected = stat.f_bavail * stat.f_frsize
    assert isinstance(free, int)
    assert abs(free - expected) < 256 * 1024**2  # other writers may use the disk meanwhile


# -- Triton facts against a stand-in HTTP endpoint ----------------------------------------------


class _TritonLike(BaseHTTPRequestHandler):
    """Answers Triton's health/config routes with the status codes Triton uses (200 / 400)."""

    routes: ClassVar[dict[str, tuple[int, bytes]]] = {}

    def do_GET(self) -> None:
        code, body = self.routes.get(self.path, (400, b'{"error":"unknown"}'))
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def triton_like() -> Iterator[int]:
    _TritonLike.routes = {
        "/v2/health/live": (200, b""),
        "/v2/health/ready": (400, b""),  # another model failed to load
        "/v2/models/embeddinggemma/ready": (200, b""),
    }
    server = ThreadingHTTPServer(("127.0.0.1", 0), _TritonLike)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server.server_address[1]
    server.shutdown()
    server.server_close()


@pytest.mark.skipif(not shutil.which("curl"), reason="curl missing (tests/system_deps.sh installs it)")
def test_triton_health_status_codes(local_fact: LoadFact, triton_like: int) -> None:
    assert local_fact(TritonHealth, triton_like, "embeddinggemma") == {
        "live": True,
        "ready": False,
        "model_ready": True,
    }


@pytest.mark.skipif(not shutil.which("curl"), reason="curl missing (tests/system_deps.sh installs it)")
def test_triton_refused(local_fact: LoadFact) -> None:
    port = free_port()
    assert local_fact(TritonHealth, port, "embeddinggemma") == TritonHealth.default()


# -- Docker facts against whatever this machine has -----------------------------------------------


def docker_daemon_up() -> bool:
    if not shutil.which("docker"):
        return False
    return subprocess.run(["docker", "info"], capture_output=True, timeout=30).returncode == 0


def test_docker_facts_tolerate_missing_objects(local_fact: LoadFact) -> None:
    assert local_fact(DockerImageId, "nvcr.io/nvidia/tritonserver:0.0-does-not-exist") is None
    assert local_fact(DockerContainer, "fact-test-no-such-container") is None
    runtimes = local_fact(DockerRuntimes)
    assert runtimes == sorted(runtimes)
    if docker_daemon_up():
        assert "runc" in runtimes
    else:
        assert runtimes == []


def test_docker_facts_without_daemon(local_fact: LoadFact, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    if not shutil.which("docker"):
        pytest.skip("no docker client")
    monkeypatch.setenv("DOCKER_HOST", f"unix://{tmp_path}/no.sock")
    assert local_fact(DockerRuntimes) == []
    assert local_fact(DockerImageId, "nvcr.io/nvidia/tritonserver:25.05-py3") is None
    assert local_fact(DockerContainer, "triton") is None


# -- AptKeyFingerprints (a real key file from tests/data/apt_keys) --------------------------------


@pytest.mark.parametrize("name", ["plain.asc", "with space's.asc"])
def test_apt_key_fingerprints_of_a_key_file(local_fact: LoadFact, tmp_path: Path, name: str) -> None:
    key = tmp_path / name
    key.write_bytes((Path(__file__).parent.parent / "data" / "apt_keys" / "test-key-1.asc").read_bytes())
    assert local_fact(AptKeyFingerprints, path=str(key)) == ["BBC1D111292E543AF26A95CD9F6FFA925A0F173F"]


def test_apt_key_fingerprints_absent_or_garbage(local_fact: LoadFact, tmp_path: Path) -> None:
    assert local_fact(AptKeyFingerprints, path=str(tmp_path / "missing.asc")) is None
    (tmp_path / "junk.asc").write_text("<html>not a key</html>")
    assert local_fact(AptKeyFingerprints, path=str(tmp_path / "junk.asc")) == []


# -- the runtimes' wheels: the host's Python and the wheels it already holds --------------------


def test_host_python_and_wheel_digests(local_fact: LoadFact, tmp_path: Path) -> None:
    python = local_fact(HostPython)
    assert python["version"] == f"{sys.version_info[0]}.{sys.version_info[1]}" and python["machine"] == platform.machine()
    wheels = tmp_path / "wheel dir"  # a space: the path must be quoted
    assert local_fact(WheelDigests, path=str(wheels)) == {}
    wheels.mkdir()
    assert local_fact(WheelDigests, path=str(wheels)) == {}  # no wheel: the glob stays literal, nothing printed
    (wheels / "a-1.0-py3-none-any.whl").write_bytes(b"a")
    (wheels / "notes.txt").write_bytes(b"not a wheel")
    assert local_fact(WheelDigests, path=str(wheels)) == {"a-1.0-py3-none-any.whl": hashlib.sha256(b"a").hexdigest()}
