"""Run the REAL ``tritonserver`` binary (from the nvidia-pytriton wheel) for tests, with no GPU.

The ``nvidia-pytriton`` wheel ships Triton 2.51 with the python backend only. :func:`backend_dir`
assembles a backend directory from it plus the onnxruntime stand-in (tests/standin/onnxruntime/
model.py, see its docstring), so a model whose UNCHANGED config says ``backend: "onnxruntime"``
loads as a python-based backend. :func:`model_repository` lays a repository out as the deploy does
(``models/{model_name}/config.pbtxt`` and ``models/{model_name}/1/model.onnx`` + ``model.onnx_data``)
and :func:`serve` starts the server on free loopback ports, waits until it is READY (or fails with the
log tail) and stops it afterwards.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import sysconfig
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from deploys.core import settings
from deploys.triton import render as triton_render
from tests.support.net import free_port

REPO_ROOT = Path(__file__).resolve().parents[2]
STANDIN = Path(__file__).resolve().parents[1] / "standin" / "onnxruntime" / "model.py"


class TritonStartError(RuntimeError):
    """tritonserver did not become ready; the message carries the log tail."""


def pytriton_root() -> Path:
    """Directory of the wheel's Triton distribution (``pytriton/tritonserver``)."""
    import pytriton  # the nvidia-pytriton wheel (dev dependency)

    return Path(pytriton.__file__).resolve().parent / "tritonserver"


def pytriton_libs() -> Path:
    """The wheel's bundled shared libraries (``nvidia_pytriton.libs``), needed on LD_LIBRARY_PATH."""
    return pytriton_root().parent.parent / "nvidia_pytriton.libs"


def backend_dir(dest: Path) -> Path:
    """Assemble ``dest/python`` (the wheel's python backend + the stub for this Python) and
    ``dest/onnxruntime/model.py`` (the stand-in). Returns ``dest``."""
    root = pytriton_root()
    python_dir = dest / "python"
    python_dir.mkdir(parents=True, exist_ok=True)
    for name in ("libtriton_python.so", "triton_python_backend_utils.py"):
        shutil.copy2(root / "backends" / "python" / name, python_dir / name)
    version = f"{sys.version_info.major}.{sys.version_info.minor}"
    stub = root / "python_backend_stubs" / version / "triton_python_backend_stub"
    if not stub.is_file():
        raise TritonStartError(f"nvidia-pytriton has no python backend stub for Python {version}")
    shutil.copy2(stub, python_dir / "triton_python_backend_stub")
    onnx_dir = dest / "onnxruntime"
    onnx_dir.mkdir(parents=True, exist_ok=True)
    shutil.copy2(STANDIN, onnx_dir / "model.py")
    return dest


def model_repository(root: Path, config_text: str, model_dir: Path, model_name: str) -> Path:
    """Write ``root/{model_name}/config.pbtxt`` and copy ``model.onnx`` + ``model.onnx_data`` from
    ``model_dir`` into ``root/{model_name}/1/``, as the deploy lays them out. Returns ``root``."""
    model_root = root / model_name
    version = model_root / "1"
    version.mkdir(parents=True, exist_ok=True)
    (model_root / "config.pbtxt").write_text(config_text, encoding="utf-8")
    for name in ("model.onnx", "model.onnx_data"):
        shutil.copy2(model_dir / name, version / name)
    return root


TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json")


def triton_dir(root: Path, hub_dir: Path, config_text: str, model_name: str = "embeddinggemma") -> Path:
    """Lay out ``root`` like the deploy's ``{triton_dir}``: ``models/`` (see :func:`model_repository`)
    from ``hub_dir/onnx`` and ``tokenizer/`` from the tokenizer files of a Hub-shaped ``hub_dir``
    (what ``python -m tests.support.tinymodel`` writes). Returns ``root``."""
    model_repository(root / "models", config_text, hub_dir / "onnx", model_name)
    # The deploy serves {triton_dir}/current -> releases/<id>, whose models/ holds hard links of
    # the store; here the store itself plays the one release.
    if not (root / "current").exists():
        (root / "current").symlink_to(".")
    (root / "tokenizer").mkdir(parents=True, exist_ok=True)
    for name in TOKENIZER_FILES:
        shutil.copy2(hub_dir / name, root / "tokenizer" / name)
    return root


@dataclass
class Server:
    """A running tritonserver: its ports and log file."""

    process: subprocess.Popen
    http_port: int
    grpc_port: int
    metrics_port: int
    log_path: Path

    @property
    def http_url(self) -> str:
        return f"127.0.0.1:{self.http_port}"

    @property
    def grpc_url(self) -> str:
        return f"127.0.0.1:{self.grpc_port}"

    def log_tail(self, lines: int = 40) -> str:
        """The last ``lines`` lines of the server log."""
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"


def _environment() -> dict[str, str]:
    """tritonserver's environment: the wheel's libraries, and this interpreter's packages for the
    stub, which embeds libpython with the environment ignored (see the stand-in's header)."""
    env = dict(os.environ)
    libs = [str(pytriton_libs())]
    if env.get("LD_LIBRARY_PATH"):
        libs.append(env["LD_LIBRARY_PATH"])
    env["LD_LIBRARY_PATH"] = ":".join(libs)
    paths = [sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]]
    env["STANDIN_SITE_PACKAGES"] = os.pathsep.join(dict.fromkeys(paths))
    return env


def _healthy(http_port: int, what: str = "ready") -> bool:
    """GET /v2/health/{what} answers 200."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{http_port}/v2/health/{what}", timeout=1) as response:
            return response.status == 200
    except (urllib.error.URLError, OSError):
        return False


def stop(server: Server, timeout_s: float = 20.0) -> None:
    """SIGTERM (Triton drains and unloads its models), then SIGKILL when it hangs."""
    if server.process.poll() is not None:
        return
    server.process.send_signal(signal.SIGTERM)
    try:
        server.process.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        server.process.kill()
        server.process.wait(timeout=timeout_s)


def start(
    repository: Path,
    work_dir: Path,
    ready_timeout_s: float = 90.0,
    exit_on_error: bool = True,
    wait: str = "ready",
    extra_args: Sequence[str] = (),
) -> Server:
    """Start tritonserver on ``repository``; block until /v2/health/{wait} answers 200 (``wait``:
    ready, live, or "" for no wait). ``extra_args``: more tritonserver options (e.g. the deploy's
    restricted-API options).

    ``exit_on_error=False`` keeps the server up when a model fails to load (to test clients
    against a live server with an unavailable model: wait for "live" then)."""
    backends = backend_dir(work_dir / "backends")
    log_path = work_dir / "tritonserver.log"
    ports = [free_port() for _ in range(3)]
    while len(set(ports)) < 3:
        ports = [free_port() for _ in range(3)]
    command = [
        str(pytriton_root() / "bin" / "tritonserver"),
        f"--model-repository={repository}",
        f"--backend-directory={backends}",
        "--http-address=127.0.0.1",
        f"--http-port={ports[0]}",
        "--grpc-address=127.0.0.1",
        f"--grpc-port={ports[1]}",
        f"--metrics-port={ports[2]}",
        "--allow-metrics=true",
        "--allow-gpu-metrics=false",
        f"--exit-on-error={'true' if exit_on_error else 'false'}",
        "--strict-readiness=true",
        "--exit-timeout-secs=10",
        "--log-verbose=0",
        *extra_args,
    ]
    log = log_path.open("wb")
    process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=_environment(), cwd=work_dir, start_new_session=True)
    log.close()
    server = Server(process=process, http_port=ports[0], grpc_port=ports[1], metrics_port=ports[2], log_path=log_path)
    if not wait:
        return server
    # Model loading happens before the endpoints start: live means every model has loaded or failed.
    deadline = time.monotonic() + ready_timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise TritonStartError(f"tritonserver exited with {process.returncode} before READY; log tail:\n{server.log_tail()}")
        if _healthy(ports[0], wait):
            return server
        time.sleep(0.25)
    stop(server)
    raise TritonStartError(f"tritonserver not {wait} within {ready_timeout_s:.0f}s; log tail:\n{server.log_tail()}")


@contextlib.contextmanager
def serve(
    repository: Path,
    work_dir: Path,
    ready_timeout_s: float = 90.0,
    exit_on_error: bool = True,
    wait: str = "ready",
    extra_args: Sequence[str] = (),
) -> Iterator[Server]:
    """Context manager: a tritonserver on ``repository`` (READY unless ``wait`` says otherwise), stopped on exit."""
    server = start(repository, work_dir, ready_timeout_s=ready_timeout_s, exit_on_error=exit_on_error, wait=wait, extra_args=extra_args)
    try:
        yield server
    finally:
        stop(server)


def restricted_args(key: str) -> list[str]:
    """Triton's restricted-API options for ``key``, the APIs and header the deploy uses (its compose
    file builds the same from the key file: tests/test_triton_restricted.py checks that one)."""
    from embeddinggemma import TRITON_KEY_HEADER

    apis = ",".join(triton_render.TRITON_RESTRICTED_APIS)
    return [f"--http-restricted-api={apis}:{TRITON_KEY_HEADER}={key}", f"--grpc-restricted-protocol={apis}:{TRITON_KEY_HEADER}={key}"]


def write_key(triton_root: Path, key: str) -> Path:
    """``triton_root/triton-api/key`` as the triton step leaves it (0600)."""
    path = triton_root / "triton-api" / "key"
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    path.write_text(key)
    path.chmod(0o600)
    return path


def cpu_config(model_name: str = "embeddinggemma", **data: object) -> str:
    """The deploy's own CPU-profile config.pbtxt (deploys.core.render), for host data ``data``."""
    return triton_render.model_config(settings.parse("test", {"model_name": model_name, **data}), gpu=False)
