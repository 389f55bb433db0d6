"""Triton: model repository layout, config.pbtxt and compose file, `docker compose up -d` only when
something the container depends on changed, then wait for the model READY."""

from __future__ import annotations

import hashlib
from io import StringIO

from pyinfra import host, logger
from pyinfra.api import deploy
from pyinfra.operations import files, server

from deploys import render, settings
from deploys.render import COMPOSE_PROJECT, Layout, container_name
from deploys.preflight import is_gpu_host
from deploys.settings import Settings
from facts.docker import DockerContainer
from facts.triton import TritonHealth

def probe_address(s: Settings) -> str:
    """Where the host itself reaches Triton's published ports."""
    return "127.0.0.1" if s.triton_bind_address in ("0.0.0.0", "::", "127.0.0.1") else s.triton_bind_address


def deploy_hash(s: Settings, gpu: bool) -> str:
    """Digest of what the running container depends on beyond its compose file: the model files
    (pinned by repository, revision and variant, each file checksummed by the model step)."""
    parts = [s.model_repo_id, s.model_revision, s.model_variant, str(gpu)]
    return hashlib.sha256("\0".join(parts).encode()).hexdigest()[:16]


def compose_command(layout: Layout, *args: str) -> str:
    return " ".join(["docker compose", "-p", COMPOSE_PROJECT, "-f", layout.compose_file, *args])


def wait_ready_command(s: Settings, layout: Layout) -> str:
    """Poll the model's readiness; on timeout print the container's last log lines and fail."""
    url = f"http://{probe_address(s)}:{s.triton_http_port}/v2/models/{s.model_name}/ready"
    return (
        f"for i in $(seq 1 {s.triton_ready_timeout_s}); do "
        f'[ "$(curl -s -o /dev/null -w "%{{http_code}}" {url})" = 200 ] && exit 0; sleep 1; done; '
        f'echo "Triton model {s.model_name} not READY after {s.triton_ready_timeout_s}s; last log lines:" >&2; '
        f"docker logs --tail 40 {container_name(s)} >&2; exit 1"
    )


def needs_start(s: Settings, wanted_labels: dict[str, str]) -> str | None:
    """Why the container must be (re)started, or None when it already serves this deploy."""
    container = host.get_fact(DockerContainer, container=container_name(s))
    if container is None:
        return "not created"
    if any(container["labels"].get(key) != value for key, value in wanted_labels.items()):
        return "configuration changed"
    if container["status"] != "running":
        return f"container {container['status']}"
    if not host.get_fact(TritonHealth, port=s.triton_http_port, model=s.model_name, address=probe_address(s))["model_ready"]:
        return "model not ready"
    return None


@deploy("Triton")
def triton() -> None:
    """Model repository + compose file on the host; start or recreate Triton only on change."""
    s = settings.load(host)
    gpu = is_gpu_host(s)
    layout = render.layout(s)
    wanted_hash = deploy_hash(s, gpu)

    # The model step lays out the rest of the repository (version directory, tokenizer).
    for path in (layout.root, layout.models_dir, layout.model_dir):
        files.directory(name=f"Directory {path}", path=path, mode="755")
    if s.triton_tensorrt:
        files.directory(name="TensorRT engine cache directory", path=layout.trt_cache_dir, mode="755")
    files.put(name="Triton model config (config.pbtxt)", src=StringIO(render.model_config(s, gpu)), dest=layout.config_file, mode="644")
    compose = files.put(
        name="Triton compose file",
        src=StringIO(render.compose_file(s, gpu, deploy_hash=wanted_hash)),
        dest=layout.compose_file,
        mode="644",
    )
    # Labels tell config and model changes; a changed compose file (ports, image…) tells the rest.
    reason = needs_start(s, render.compose_labels(s, gpu, wanted_hash)) or ("compose file changed" if compose.will_change else None)
    if reason is None:
        logger.info(f"{host.print_prefix}Triton already READY with this configuration")
        return
    if gpu:
        server.shell(
            name="GPU smoke test: the Triton image sees the GPUs",
            commands=[f"docker run --rm --gpus all --entrypoint nvidia-smi {s.triton_image_ref} -L"],
        )
    logger.info(f"{host.print_prefix}Triton (re)start: {reason}")
    # A running container that is not READY is recreated: `up -d` alone leaves it as it is.
    force = ["--force-recreate"] if reason == "model not ready" else []
    server.shell(name="Start Triton (docker compose up -d)", commands=[compose_command(layout, "up", "-d", "--remove-orphans", *force)])
    server.shell(name=f"Wait for model {s.model_name} READY (≤ {s.triton_ready_timeout_s}s)", commands=[wait_ready_command(s, layout)])
