"""The Triton container on a host: where the host reaches it, whether it serves a release READY, and
the operations that (re)start it (the triton and rollback steps share them)."""

from __future__ import annotations

import shlex
from typing import Any

from pyinfra import host, logger
from pyinfra.facts.files import FindInFile, Sha256File
from pyinfra.operations import server

from deploys.core import bounds, paths, settings
from deploys.core.compose import compose_command
from deploys.core.endpoints import probe_address, probe_endpoint
from deploys.core.settings import Settings
from deploys.triton import release, triton_api
from deploys.triton.render import COMPOSE_PROJECT, DEPLOY_HASH_LABEL, container_name
from facts.docker import DockerContainer
from facts.triton import TritonHealth, TritonModelLinks, TritonReleaseOwnSettings, TritonReleases

STEP = "Triton"  # the triton step's name (deploys/triton/step.py), in the lines printed past a bound


def wait_ready_command(s: Settings, step: str = STEP) -> str:
    """Poll the model's readiness until triton_ready_timeout_s (each try bounded: a Triton that
    accepts and never answers cannot stretch it); past it one line naming the step and the host,
    the container's last log lines, and exit 1."""
    url = f"http://{probe_endpoint(s, s.triton_http_port)}/v2/models/{s.model_name}/ready"
    line = f"{step} on host {s.host}: model {s.model_name} not READY within {s.triton_ready_timeout_s}s (triton_ready_timeout_s); last log lines:"
    logs = f"timeout -k {bounds.KILL_AFTER_S} {bounds.DOCKER_LOGS_TIMEOUT_S} docker logs --tail 40 {shlex.quote(container_name(s))} >&2"
    return bounds.ready_poll(url, s.triton_ready_timeout_s, f"echo {shlex.quote(line)} >&2; {logs}; exit 1")


def compose_up_command(s: Settings, compose_file: str, *extra: str, step: str = STEP) -> str:
    """``docker compose up -d`` of a release, bounded by triton_start_timeout_s, with the key
    file's sha256 in the environment (the compose file's key label)."""
    # The key file's sha256 becomes the container's key label (compose interpolates it).
    key = triton_api.key_sha256_env(paths.layout(s).triton_key)
    return f"{key} " + bounds.bounded(
        compose_command(compose_file, "up", "-d", "--remove-orphans", *extra, project=COMPOSE_PROJECT),
        s.triton_start_timeout_s,
        step,
        s.host,
        "docker compose up -d",
        "triton_start_timeout_s",
    )


def gpu_smoke_command(s: Settings, image: str | None = None) -> str:
    """The GPU smoke run (the image lists the GPUs), bounded by triton_start_timeout_s. ``image``:
    the reference the host runs Triton by (through the registry cache: deploys/core/registry.py:pull_ref);
    default ``triton_image_ref``."""
    return bounds.bounded(
        f"docker run --rm --gpus all --entrypoint nvidia-smi {shlex.quote(image or s.triton_image_ref)} -L",
        s.triton_start_timeout_s,
        STEP,
        s.host,
        "the GPU smoke run (docker run … nvidia-smi -L)",
        "triton_start_timeout_s",
    )


def model_ready(s: Settings) -> bool:
    """The host's Triton answers READY for the model on its published HTTP port (a fact)."""
    return host.get_fact(TritonHealth, port=s.triton_http_port, model=s.model_name, address=probe_address(s))["model_ready"]


def needs_start(s: Settings, release: str, wanted_labels: dict[str, str] | None = None) -> str | None:
    """Why the container must be (re)started to serve ``release``, or None when it already does."""
    container = host.get_fact(DockerContainer, container=container_name(s))
    if container is None:
        return "not created"
    if container["labels"].get(DEPLOY_HASH_LABEL) != release:
        return f"serves release {container['labels'].get(DEPLOY_HASH_LABEL) or 'none'}"
    if wanted_labels and any(container["labels"].get(key) != value for key, value in wanted_labels.items()):
        return "configuration changed"
    key_changed = triton_api.changed_reason(container["labels"], host.get_fact(Sha256File, path=paths.layout(s).triton_key))
    if key_changed:
        return key_changed
    if container["status"] != "running":
        return f"container {container['status']}"
    if not model_ready(s):
        return "model not ready"
    return None


# Why a READY Triton serving this very release restarts: its model files were linked again
# (deploys/triton/release.py check_link). The compose file is unchanged, so `up -d` must recreate it.
RELINKED = "model files re-linked to the store"


def relinked_reason(why: list[str]) -> str:
    """The restart reason after re-linking damaged served files (``why``: one entry per file)."""
    return f"{RELINKED}: {', '.join(why)}"


def forces_recreate(reason: str | None) -> bool:
    """``docker compose up -d`` leaves a running container of an unchanged compose file as it is:
    recreate it when it is not READY, or when the files it loaded were replaced under it."""
    return reason == "model not ready" or bool(reason and reason.startswith(RELINKED))


def serving_release(s: Settings) -> str | None:
    """The release the host's Triton container was started with (its label), running or not."""
    container = host.get_fact(DockerContainer, container=container_name(s))
    return container["labels"].get(DEPLOY_HASH_LABEL) if container else None


def start(s: Settings, compose_file: str, reason: str, step: str = STEP) -> None:
    """`docker compose up -d` the release's compose file, then wait for READY (both bounded; ``step``
    names the calling step in the lines printed past a bound)."""
    logger.info(f"{host.print_prefix}Triton (re)start: {reason}")
    # A running container that is not READY, or whose model files were re-linked, is recreated:
    # `up -d` alone leaves it as it is.
    force = ["--force-recreate"] if forces_recreate(reason) else []
    server.shell(name="Start Triton (docker compose up -d)", commands=[compose_up_command(s, compose_file, *force, step=step)])
    server.shell(name=f"Wait for model {s.model_name} READY (≤ {s.triton_ready_timeout_s}s)", commands=[wait_ready_command(s, step=step)])


def releases_state(s: Settings) -> dict[str, Any]:
    """``current``, ``previous`` and ``releases`` on the host (the TritonReleases fact)."""
    return host.get_fact(TritonReleases, root=paths.layout(s).root)


def read_state(s: Settings) -> dict[str, Any]:
    """This host's releases and what its Triton container serves (facts only), reached with the
    live release's own ports and model name (its compose file), whatever ``--data`` says."""
    state = dict(releases_state(s))
    s = release_own_settings(s, state["current"])
    container = host.get_fact(DockerContainer, container=container_name(s))
    running = bool(container) and container["status"] == "running"
    state["serving"] = container["labels"].get(DEPLOY_HASH_LABEL) if running else None
    ready = model_ready(s)
    state["model_ready"] = running and ready
    return state


def link_checks(s: Settings, weights: dict[str, str], release_dir: str) -> dict[str, release.LinkCheck]:
    """Each model file of the release in ``release_dir`` (``weights``: name → expected sha256)
    checked against the model store (facts: the files' inodes, the store files' sha256, which the
    model step reads too; the release's own file is hashed only when it is not the store's)."""
    store_dir = paths.layout(s).version_dir
    names = tuple(sorted(weights))
    links = host.get_fact(TritonModelLinks, store_dir=store_dir, release_dir=release_dir, names=names)
    return {
        name: release.check_link(
            name,
            links.get(name),
            host.get_fact(Sha256File, path=f"{store_dir}/{name}"),
            weights[name],
            lambda name=name: host.get_fact(Sha256File, path=f"{release_dir}/{name}"),
        )
        for name in names
    }


def own_values_changed(s: Settings, own: dict[str, Any]) -> dict[str, Any]:
    """Of a release's own values (TritonReleaseOwnSettings), those that differ from ``s``."""
    return {key: value for key, value in own.items() if getattr(s, key) != value}


def release_own_settings(s: Settings, release: str | None) -> Settings:
    """The settings ``release`` (on the host) was deployed with, as far as reaching it goes: ``s``
    with that release's own published ports, bind address and model name, read from its compose
    file, so a rollback or a state read waits on the port and container that release really uses,
    not those of a newer ``--data`` or inventory. ``s`` itself when they agree or are not known."""
    if not release:
        return s
    own = host.get_fact(TritonReleaseOwnSettings, root=paths.layout(s).root).get(release) or {}
    changed = own_values_changed(s, own)
    if not changed:
        return s
    logger.info(
        f"{host.print_prefix}release {release} was deployed with {', '.join(f'{k}={v}' for k, v in changed.items())}: using its own values"
    )
    return settings.parse(s.host, {**host.data.dict(), **changed})


def restricted_apis_on(s: Settings, layout: paths.Layout, behind_front_door: bool, serving: bool) -> bool:
    """Triton's restricted APIs in this run's release (deploys/triton/triton_api.py:restrict): off for
    one run when a serving host behind a front door still has a gateway or verify code from before them."""
    if not (behind_front_door and serving):
        return True
    gateway_takes_key = not s.gateway_enabled or bool(host.get_fact(FindInFile, path=layout.gateway.config, pattern="triton_key_file"))
    verify_takes_key = not s.verify_enabled or bool(
        host.get_fact(FindInFile, path=f"{layout.verify.code}/parity.py", pattern="--triton-key-file")
    )
    on = triton_api.restrict(behind_front_door, serving, gateway_takes_key, verify_takes_key)
    if not on:
        logger.warning(
            f"{host.print_prefix}Triton's restricted APIs go on at the next run: this host's gateway or verify code is from "
            "before them, and the roll checks Triton through both before this run updates them"
        )
    return on
