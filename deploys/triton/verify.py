"""Verify step: Triton against local ONNX Runtime on every host, directly and through the
embeddings gateway, JSON reports and a fleet table (deploys/triton/verify_run.py: the runtime, the
gateway key, the parity command, reports and the table)."""

from __future__ import annotations

import hashlib

from pyinfra import host, logger
from pyinfra.api import deploy
from pyinfra.facts.files import Sha256File
from pyinfra.operations import apt, files, pip, server

from deploys.core import paths, redact, settings
from deploys.core.gpu import is_gpu_host
from deploys.core.repo import CONTRACT_SRC, VERIFY_SRC
from deploys.core.settings import Settings
from deploys.gateway import logic as gateway
from deploys.triton.verify_run import (
    check_wheels_dir,
    expected_model_files,
    key_write_command,
    local_device,
    parity_check,
    pip_install_command,
    requirements_file,
)


@deploy("Verify")
def verify(s: Settings | None = None) -> None:
    """Parity of Triton against local ONNX Runtime on this host; fails the host on a mismatch.
    ``s``: the settings to verify with (the rollback's: the previous release's own ports), else the host's."""
    s = s or settings.load(host)
    if not s.verify_enabled:
        logger.info(f"{host.print_prefix}verify skipped (verify_enabled: false)")
        return
    gpu = is_gpu_host(s)
    device = local_device(s, gpu)
    wheels = check_wheels_dir(s)
    # The host's own gateway key ('' when auth is off; the gateway step accepts its sha256).
    key = gateway.verify_key(s, gateway.api_keys(s)) if s.gateway_enabled else ""
    layout = paths.layout(s)
    v = layout.verify
    requirements = requirements_file(cuda=device != "cpu")
    # The digests the served model files must have (the model step's: the lock, else the source's metadata).
    expected, expected_from = expected_model_files(s)

    apt.packages(name="Install python3-venv (verify runtime)", packages=["python3-venv"])
    files.directory(name=f"Directory {v.base}", path=v.base, mode="755")
    key_file = layout.gateway.verify_key
    if key:
        # Through _stdin only (pyinfra prints neither it nor a diff); rewritten only when the hash differs.
        if host.get_fact(Sha256File, path=key_file) != hashlib.sha256(key.encode()).hexdigest():
            server.shell(
                name="Gateway key of the verify step (0600, root)", commands=[key_write_command(key_file)], _stdin=redact.Secret(key)
            )
    else:
        files.file(name="No gateway key for the verify step (gateway auth off)", path=key_file, present=False)
    if wheels is not None:
        files.sync(name=f"Push verify wheels from {wheels}", src=str(wheels), dest=v.wheels, delete=True)
    files.put(name="Upload the verify runtime pins", src=str(requirements), dest=v.requirements, mode="644")
    pip.virtualenv(name=f"Verify venv {v.venv}", path=v.venv, python="python3", venv=True)
    wanted = hashlib.sha256(requirements.read_bytes()).hexdigest()
    if host.get_fact(Sha256File, path=v.installed) != wanted:
        server.shell(name="Install the verify runtime (pinned)", commands=[pip_install_command(s, layout)])
    files.put(name="Upload the model's contract (embeddinggemma.py)", src=str(CONTRACT_SRC), dest=v.contract, mode="644")
    files.sync(
        name="Upload verify/",
        src=str(VERIFY_SRC),
        dest=v.code,
        exclude=["*.pyc", "*.json", "*.log"],
        exclude_dir=["__pycache__"],
        delete=False,
    )
    parity_check(
        name="Parity: Triton (HTTP, gRPC) and the gateway vs local ONNX Runtime"
        if s.gateway_enabled
        else "Parity: Triton (HTTP, gRPC) vs local ONNX Runtime",
        s=s,
        device=device,
        gateway_key_file=bool(key),
        expected=expected,
        expected_from=expected_from,
    )
