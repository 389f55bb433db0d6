"""Verify step: Triton against local ONNX Runtime on every host, directly and through the
embeddings gateway, JSON reports and a fleet table (deploys/triton/verify_run.py: the runtime, the
gateway key, the parity command, reports and the table)."""

from __future__ import annotations

from pyinfra import host, logger
from pyinfra.api import deploy
from pyinfra.operations import apt, files

from deploys.core import endpoints, operations, paths, redact, runtimes, settings
from deploys.core.gpu import is_gpu_host
from deploys.core.repo import CONTRACT_SRC, VERIFY_SRC
from deploys.core.settings import Settings
from deploys.triton.verify_run import (
    expected_model_files,
    local_device,
    parity_check,
    requirements_file,
)


@deploy("Verify")
def verify(s: Settings | None = None, reuse: bool = True) -> None:
    """Parity of Triton against local ONNX Runtime on this host; fails the host on a mismatch.
    ``s``: the settings to verify with (the rollback's: the previous release's own ports), else the host's.
    ``reuse``: False checks even when nothing changed (deploys/verify.py: verifying is what was asked)."""
    s = s or settings.load(host)
    if not s.verify_enabled:
        logger.info(f"{host.print_prefix}verify skipped (verify_enabled: false)")
        return
    gpu = is_gpu_host(s)
    device = local_device(s, gpu)
    wheels = runtimes.check_wheels_dir(s)
    # The host's own gateway key ('' when auth is off; the gateway step accepts its sha256).
    key = endpoints.verify_key(s, endpoints.api_keys(s)) if s.gateway_enabled else ""
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
        operations.secret_file(
            name="Gateway key of the verify step (0600, root)", path=key_file, content=redact.Secret(key), strip_newline=True
        )
    else:
        files.file(name="No gateway key for the verify step (gateway auth off)", path=key_file, present=False)
    operations.pinned_venv(
        name="Install the verify runtime (pinned)",
        **runtimes.venv_args(s, layout.verify, requirements, "Verify", "the verify runtime", wheels),
    )
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
        reuse=reuse,
    )
