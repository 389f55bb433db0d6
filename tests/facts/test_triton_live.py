"""TritonHealth against a real tritonserver (end to end), and the config it serves.

The server is the real Triton binary from the ``nvidia-pytriton`` wheel (dev extra) with its python
backend; the models are small python-backend stand-ins (the onnxruntime backend and a GPU are not
available here). What is under test is Triton's HTTP status codes as our facts read them.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from facts.triton import TritonHealth
from tests.support.net import free_port

pytestmark = pytest.mark.e2e

MODEL_PY = """\
import numpy as np
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def execute(self, requests):
        responses = []
        for request in requests:
            ids = pb_utils.get_input_tensor_by_name(request, "input_ids").as_numpy()
            out = np.zeros((ids.shape[0], 4), np.float32)
            tensor = pb_utils.Tensor("sentence_embedding", out)
            responses.append(pb_utils.InferenceResponse([tensor]))
        return responses
"""
CONFIG = """\
name: "{name}"
backend: "python"
max_batch_size: 8
input [ {{ name: "input_ids" data_type: TYPE_INT64 dims: [ -1 ] }} ]
output [ {{ name: "sentence_embedding" data_type: TYPE_FP32 dims: [ 4 ] }} ]
instance_group [ {{ kind: KIND_CPU count: 1 }} ]
"""


def pytriton_dirs() -> tuple[Path, Path] | None:
    """(tritonserver root, its bundled shared libraries) from nvidia-pytriton, if installed."""
    spec = importlib.util.find_spec("pytriton")
    if spec is None or not spec.submodule_search_locations:
        return None
    root = Path(next(iter(spec.submodule_search_locations))) / "tritonserver"
    libs = root.parent.parent / "nvidia_pytriton.libs"
    return (root, libs) if (root / "bin" / "tritonserver").exists() else None


def model(repo: Path, name: str, model_py: str) -> None:
    (repo / name / "1").mkdir(parents=True)
    (repo / name / "config.pbtxt").write_text(CONFIG.format(name=name))
    (repo / name / "1" / "model.py").write_text(model_py)


@pytest.fixture(scope="module")
def tritonserver(tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    """A real tritonserver with one good model and one that fails to load; yields its HTTP port."""
    dirs = pytriton_dirs()
    if dirs is None or not shutil.which("curl"):
        pytest.skip("needs nvidia-pytriton (dev extra) and curl")
    root, libs = dirs
    stub = root / "python_backend_stubs" / f"{sys.version_info.major}.{sys.version_info.minor}"
    base = tmp_path_factory.mktemp("triton")
    backend = base / "backends" / "python"
    backend.mkdir(parents=True)
    for item in [*(root / "backends" / "python").glob("*.*"), stub / "triton_python_backend_stub"]:
        if item.is_file():
            shutil.copy(item, backend)
    repo = base / "models"
    model(repo, "embeddinggemma", MODEL_PY)
    model(repo, "broken", 'raise RuntimeError("this model fails to load on purpose")\n')

    port = free_port()
    env = dict(os.environ)
    env["LD_LIBRARY_PATH"] = f"{libs}{os.pathsep}{env.get('LD_LIBRARY_PATH', '')}"
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env['PATH']}"
    log = (base / "triton.log").open("w")
    process = subprocess.Popen(
        [
            str(root / "bin" / "tritonserver"),
            f"--model-repository={repo}",
            f"--backend-directory={base / 'backends'}",
            f"--http-port={port}",
            f"--grpc-port={free_port()}",
            f"--metrics-port={free_port()}",
            "--http-address=127.0.0.1",
            "--exit-on-error=false",
        ],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        yield port
    finally:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
        log.close()


def test_real_triton(tritonserver: int, local_fact: Callable[..., Any]) -> None:
    deadline = time.monotonic() + 90
    health = local_fact(TritonHealth, tritonserver, "embeddinggemma")
    while not health["live"] and time.monotonic() < deadline:
        time.sleep(0.5)
        health = local_fact(TritonHealth, tritonserver, "embeddinggemma")
    # Triton is live, our model ready, the server not ready because "broken" failed to load.
    assert health == {"live": True, "ready": False, "model_ready": True}
    assert local_fact(TritonHealth, tritonserver, "broken")["model_ready"] is False

    with urllib.request.urlopen(f"http://127.0.0.1:{tritonserver}/v2/models/embeddinggemma/config", timeout=5) as response:
        config = json.loads(response.read())
    assert config["name"] == "embeddinggemma"
    assert config["max_batch_size"] == 8
    assert [i["name"] for i in config["input"]] == ["input_ids"]
