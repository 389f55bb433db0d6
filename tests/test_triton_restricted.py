"""Triton's restricted APIs, as the deploy configures them, on the REAL tritonserver (2.51, from the
nvidia-pytriton wheel): the control APIs refuse requests without the host's key header and answer
with it; health, metadata and inference stay open; the verify client and the gateway send the key
where they need it.

The tritonserver options come from the deploy's own compose file: its ``sh -c`` script is run
with a recording ``tritonserver`` first on PATH, so what is tested is what the container would exec
(the key read from the mounted file, never written in the compose file).
"""

from __future__ import annotations

import json
import os
import stat
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest
import yaml

from deploys.core import paths, settings
from deploys.triton import render as triton_render
from deploys.triton import triton_api, verify_run
from tests.support import tritonserver as ts
from tests.support.gateway_bench import GatewayProcess
from verify.client import TRITON_KEY_HEADER, TritonBackend

MODEL = "embeddinggemma"
KEY = "0123456789abcdef" * 4  # the shape generate_command writes: 64 hex digits


def compose_script(s: settings.Settings, key_mount: str, monkeypatch: pytest.MonkeyPatch) -> str:
    """The shell script of the Triton service's command, as sh inside the container gets it (compose's
    ``$$`` undone), with the key directory mounted at ``key_mount``."""
    monkeypatch.setattr(paths, "TRITON_KEY_MOUNT", key_mount)
    service = yaml.safe_load(triton_render.compose_file(s, gpu=False, deploy_hash="r1"))["services"]["triton"]
    command = service["command"]
    assert command[:2] == ["sh", "-c"] and len(command) == 3
    return command[2].replace("$$", "$")


def run_script(script: str, tmp_path: Path) -> tuple[subprocess.CompletedProcess[str], list[str]]:
    """Run ``script`` with sh and a ``tritonserver`` on PATH that records its argv (NUL-separated)."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    argv_file = tmp_path / "argv"
    recorder = bin_dir / "tritonserver"
    recorder.write_text(f'#!/bin/sh\nprintf "%s\\0" "$@" > {argv_file}\n')
    recorder.chmod(0o755)
    env = {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}"}
    proc = subprocess.run(["sh", "-c", script], capture_output=True, text=True, env=env, timeout=30)
    argv = argv_file.read_text().split("\0")[:-1] if argv_file.exists() else []
    return proc, argv


def restricted_options(argv: list[str]) -> list[str]:
    return [a for a in argv if a.startswith(("--http-restricted-api=", "--grpc-restricted-protocol="))]


@pytest.fixture(scope="module")
def triton_root(hub: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return ts.triton_dir(tmp_path_factory.mktemp("triton"), hub, ts.cpu_config())


@pytest.fixture(scope="module")
def key_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("triton-api")
    (directory / paths.TRITON_KEY_NAME).write_text(KEY)
    return directory


@pytest.fixture(scope="module")
def options(key_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> list[str]:
    """The restricted-API options the deploy's compose script passes to tritonserver."""
    with pytest.MonkeyPatch.context() as monkeypatch:
        script = compose_script(settings.parse("h", {"gpu": False}), str(key_dir), monkeypatch)
    proc, argv = run_script(script, tmp_path_factory.mktemp("script"))
    assert proc.returncode == 0, proc.stderr
    found = restricted_options(argv)
    assert len(found) == 2, argv
    return found


@pytest.fixture(scope="module")
def server(triton_root: Path, options: list[str], tmp_path_factory: pytest.TempPathFactory) -> Iterator[ts.Server]:
    with ts.serve(triton_root / "models", tmp_path_factory.mktemp("work"), extra_args=options) as running:
        yield running


# -- the compose file and the commands (no server) ----------------------------------------------


def test_the_key_is_read_in_the_container_and_never_written_in_the_compose_file(key_dir: Path, options: list[str]) -> None:
    s = settings.parse("h", {"gpu": False})
    text = triton_render.compose_file(s, gpu=False, deploy_hash="r1")
    assert KEY not in text
    service = yaml.safe_load(text)["services"]["triton"]
    layout = paths.layout(s)
    assert f"{layout.triton_key_dir}:{paths.TRITON_KEY_MOUNT}:ro" in service["volumes"]
    assert service["labels"][triton_api.KEY_LABEL] == "${TRITON_API_KEY_SHA256:-}"  # compose fills it in
    apis = ",".join(triton_api.RESTRICTED_APIS)
    assert options == [
        f"--http-restricted-api={apis}:{TRITON_KEY_HEADER}={KEY}",
        f"--grpc-restricted-protocol={apis}:{TRITON_KEY_HEADER}={KEY}",
    ]


def test_without_a_key_file_the_container_command_fails_with_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    script = compose_script(settings.parse("h", {"gpu": False}), str(tmp_path / "missing"), monkeypatch)
    proc, argv = run_script(script, tmp_path)
    assert proc.returncode == 1 and argv == []
    assert proc.stderr.strip().splitlines() == [
        f"tritonserver: no restricted-API key in {tmp_path}/missing/key (the triton step writes it)"
    ]


def test_key_generation_is_0600_hex_and_idempotent(tmp_path: Path) -> None:
    key_dir, key_file = tmp_path / "triton-api", tmp_path / "triton-api" / "key"
    command = triton_api.generate_command(str(key_dir), str(key_file))
    assert "/dev/urandom" in command
    subprocess.run(["sh", "-c", command], check=True, timeout=10)
    first = key_file.read_text()
    assert len(first) == 2 * triton_api.KEY_BYTES and int(first, 16) >= 0
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600 and stat.S_IMODE(key_dir.stat().st_mode) == 0o700
    subprocess.run(["sh", "-c", command], check=True, timeout=10)
    assert key_file.read_text() == first  # a second run changes nothing
    key_file.write_text("")
    subprocess.run(["sh", "-c", command], check=True, timeout=10)
    assert len(key_file.read_text()) == 64 and key_file.read_text() != first  # an empty file is made again


def test_compose_up_carries_the_key_files_sha256_not_the_key(tmp_path: Path) -> None:
    from deploys.triton.triton_service import compose_up_command

    s = settings.parse("h", {"gpu": False})
    command = compose_up_command(s, "/x/docker-compose.yml")
    assert command.startswith(f'TRITON_API_KEY_SHA256="$(sha256sum {paths.layout(s).triton_key} ')
    key_file = tmp_path / "key"
    key_file.write_text(KEY)
    printed = subprocess.run(
        ["sh", "-c", f"{triton_api.key_sha256_env(str(key_file))} sh -c 'echo $TRITON_API_KEY_SHA256'"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    import hashlib

    assert printed == hashlib.sha256(KEY.encode()).hexdigest()


def test_a_changed_key_restarts_triton_an_unchanged_one_does_not() -> None:
    digest = "a" * 64
    assert triton_api.changed_reason({triton_api.KEY_LABEL: digest}, digest) is None
    assert triton_api.changed_reason({triton_api.KEY_LABEL: digest}, "b" * 64) == "Triton API key changed"
    assert triton_api.changed_reason({triton_api.KEY_LABEL: digest}, None) == "Triton API key changed"
    assert triton_api.changed_reason({}, digest) is None  # a release from before restricted APIs: its own rules


# -- the real tritonserver ----------------------------------------------------------------------


RESTRICTED = [
    ("POST", "/v2/repository/index"),
    ("GET", "/v2/logging"),
    ("GET", "/v2/trace/setting"),
    ("GET", f"/v2/models/{MODEL}/config"),
]


@pytest.mark.parametrize(("method", "path"), RESTRICTED)
def test_control_apis_refuse_without_the_header_and_answer_with_it(server: ts.Server, method: str, path: str) -> None:
    url = f"http://{server.http_url}{path}"
    refused = httpx.request(method, url, timeout=10)
    assert refused.status_code in (401, 403), (refused.status_code, refused.text)
    assert httpx.request(method, url, headers={TRITON_KEY_HEADER: "wrong"}, timeout=10).status_code in (401, 403)
    assert httpx.request(method, url, headers={TRITON_KEY_HEADER: KEY}, timeout=10).status_code == 200


def test_model_unload_is_refused_without_the_header(server: ts.Server) -> None:
    url = f"http://{server.http_url}/v2/repository/models/{MODEL}/unload"
    assert httpx.post(url, timeout=10).status_code in (401, 403)
    assert httpx.get(f"http://{server.http_url}/v2/models/{MODEL}/ready", timeout=10).status_code == 200


def test_health_metadata_and_inference_stay_open(server: ts.Server) -> None:
    base = f"http://{server.http_url}"
    for path in ("/v2/health/live", "/v2/health/ready", f"/v2/models/{MODEL}/ready", f"/v2/models/{MODEL}", "/v2"):
        assert httpx.get(base + path, timeout=10).status_code == 200, path
    ids = np.array([[2, 10, 11, 1]], dtype=np.int64)
    for protocol, url in (("http", server.http_url), ("grpc", server.grpc_url)):
        backend = TritonBackend(url, model_name=MODEL, protocol=protocol, timeout_s=10)
        assert backend.infer(ids, np.ones_like(ids)).shape == (1, 768)
    metrics = httpx.get(f"http://127.0.0.1:{server.metrics_port}/metrics", timeout=10)
    assert metrics.status_code == 200 and "nv_inference_request_success" in metrics.text


@pytest.mark.parametrize("protocol", ["http", "grpc"])
def test_the_verify_client_reads_the_model_config_with_the_key_file(server: ts.Server, key_dir: Path, protocol: str) -> None:
    url = server.http_url if protocol == "http" else server.grpc_url
    with_key = TritonBackend(url, model_name=MODEL, protocol=protocol, timeout_s=10, key_file=str(key_dir / paths.TRITON_KEY_NAME))
    assert with_key.max_batch_size() >= 8
    assert with_key.model_states()[MODEL][0] == "READY"
    without = TritonBackend(url, model_name=MODEL, protocol=protocol, timeout_s=10)
    with pytest.raises(Exception, match="(?i)restricted|403|permission|unavailable"):
        without.max_batch_size()


def test_the_gateway_follows_max_batch_size_with_its_key_copy(server: ts.Server, triton_root: Path, key_dir: Path, tmp_path: Path) -> None:
    key_file = str(key_dir / paths.TRITON_KEY_NAME)
    served = json.loads(httpx.get(f"http://{server.http_url}/v2/models/{MODEL}/config", headers={TRITON_KEY_HEADER: KEY}, timeout=5).text)
    with GatewayProcess.started(
        tmp_path / "gw", server.grpc_url, triton_root / "tokenizer", triton_max_batch_size=2, triton_key_file=key_file
    ) as gateway:
        assert httpx.get(f"{gateway.url}/ready", timeout=5).status_code == 200
        log = gateway.log_tail()
    assert f"max_batch_size {served['max_batch_size']} (was 2)" in log


# -- the upgrade behind a front door: one run open, then restricted ----------------------------------


@pytest.mark.parametrize(
    "behind, serving, gateway_takes_key, verify_takes_key, on",
    [
        (False, True, False, False, True),  # no front door: the later steps of the same run update both
        (True, False, False, False, True),  # a fresh host: nothing rolls
        (True, True, True, True, True),  # gateway and verify code already take the key
        (True, True, False, True, False),  # the running gateway cannot read the model config yet
        (True, True, True, False, False),  # the verify code on the host has no --triton-key-file yet
    ],
)
def test_restricted_apis_wait_one_run_for_an_old_gateway_or_verify_behind_a_front_door(
    behind: bool, serving: bool, gateway_takes_key: bool, verify_takes_key: bool, on: bool
) -> None:
    assert triton_api.restrict(behind, serving, gateway_takes_key, verify_takes_key) is on


def test_an_open_release_has_no_restricted_options_and_its_roll_check_no_key_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    s = settings.parse("h", {"gpu": False})
    mount = tmp_path / "key"
    mount.mkdir()
    (mount / paths.TRITON_KEY_NAME).write_text(KEY)
    monkeypatch.setattr(paths, "TRITON_KEY_MOUNT", str(mount))
    open_compose = triton_render.compose_file(s, gpu=False, deploy_hash="r1", restrict=False)
    proc, argv = run_script(yaml.safe_load(open_compose)["services"]["triton"]["command"][2].replace("$$", "$"), tmp_path)
    assert proc.returncode == 0 and argv and restricted_options(argv) == [], (proc.stderr, argv)
    assert open_compose != triton_render.compose_file(s, gpu=False, deploy_hash="r1")  # so the next run's release differs
    layout = paths.layout(s)
    assert "--triton-key-file" not in verify_run.roll_check_command(s, layout, "cpu", triton_key=False)
    assert f"--triton-key-file {layout.triton_key}" in verify_run.roll_check_command(s, layout, "cpu")
