"""Triton: a release per configuration, `current` pointing at the live one, `docker compose up -d`
only when the live release changes (or the container does not serve it), then wait for READY.

Host layout (``{triton_dir}``)::

    models/{model_name}/1/<model files>          the model store (deploys/model.py keeps it)
    releases/<id>/docker-compose.yml             mounts releases/<id>/models read-only
    releases/<id>/models/{model_name}/config.pbtxt
    releases/<id>/models/{model_name}/1/<files>  hard links of the store's files (no extra space)
    current  -> releases/<id>                    the live release
    previous -> releases/<id>                    the one before (deploys/rollback.py goes back to it)

``<id>`` is a short content hash of config.pbtxt, the compose inputs and the model files' sha256, so
the same settings and model always give the same release and a converged re-run changes nothing.
The model step replaces store files by rename, so an older release keeps its own inodes (its files
stay intact). The last ``triton_releases_keep`` releases are kept; current and previous never go.
"""

from __future__ import annotations

import hashlib
import shlex
from dataclasses import dataclass
from io import StringIO
from pathlib import PurePosixPath
from typing import Any

from pyinfra import host, logger
from pyinfra.api import FactBase, deploy
from pyinfra.facts.files import File
from pyinfra.operations import files, server

from deploys import model, render, settings
from deploys.render import COMPOSE_PROJECT, Layout, container_name
from deploys.preflight import is_gpu_host
from deploys.settings import Settings

RELEASES = "releases"


def probe_address(s: Settings) -> str:
    """Where the host itself reaches Triton's published ports."""
    return "127.0.0.1" if s.triton_bind_address in ("0.0.0.0", "::", "127.0.0.1") else s.triton_bind_address


@dataclass(frozen=True)
class Release:
    """Host paths of one release (absolute)."""

    id: str
    dir: str
    compose_file: str
    models_dir: str
    config_file: str
    version_dir: str


def release_paths(layout: Layout, model_name: str, release_id: str) -> Release:
    """Where release ``release_id`` lives under ``layout.root``."""
    base = f"{layout.root}/{RELEASES}/{release_id}"
    return Release(
        id=release_id,
        dir=base,
        compose_file=f"{base}/docker-compose.yml",
        models_dir=f"{base}/models",
        config_file=f"{base}/models/{model_name}/config.pbtxt",
        version_dir=f"{base}/models/{model_name}/1",
    )


def model_config(s: Settings, gpu: bool) -> str:
    """config.pbtxt of this host's release (``triton_config_template``, schema-checked)."""
    return render.model_config(s, gpu)


def release_id(s: Settings, gpu: bool, model_sha256: dict[str, str]) -> str:
    """12 hex of sha256 over config.pbtxt, the compose inputs and the model files' digests."""
    digest = hashlib.sha256()
    for part in (model_config(s, gpu), render.compose_file(s, gpu)):
        digest.update(part.encode() + b"\0")
    for name in sorted(model_sha256):
        digest.update(f"{name} {model_sha256[name]}\n".encode())
    return digest.hexdigest()[:12]


def version_files(s: Settings, token: str | None) -> dict[str, str]:
    """File name → sha256 of the model files in the version directory (graph and its data)."""
    return {
        PurePosixPath(f.dest).name: f.sha256
        for f in model.expected(s, token)
        if f.repo_path.startswith("onnx/")
    }


def release_compose_file(s: Settings, gpu: bool, release: Release) -> str:
    """The release's compose file: it mounts the release's models dir, and its deploy-hash label
    carries the release id, so a container can be matched to its release."""
    return render.compose_file(s, gpu, deploy_hash=release.id, models_dir=release.models_dir)


def release_labels(s: Settings, gpu: bool, release_id_: str) -> dict[str, str]:
    """The labels the container of a release carries (as in :func:`release_compose_file`)."""
    return render.compose_labels(s, gpu, release_id_)


# -- the releases on a host --


class TritonReleases(FactBase):
    """
    ``{"current": id | None, "previous": id | None, "releases": [ids, most recently activated first]}``
    from ``{triton_dir}``; all empty when the directory is missing.
    """

    def command(self, root: str) -> str:
        r = shlex.quote(root)
        return (
            f"cd {r} 2>/dev/null || exit 0; "
            'echo "current $(readlink current 2>/dev/null)"; echo "previous $(readlink previous 2>/dev/null)"; '
            f'for d in {RELEASES}/*/; do [ -d "$d" ] && stat -c "release %Y %n" "$d"; done; true'
        )

    @staticmethod
    def default() -> dict[str, Any]:
        return {"current": None, "previous": None, "releases": []}

    def process(self, output: list[str]) -> dict[str, Any]:
        return parse_releases(output)


def parse_releases(output: list[str]) -> dict[str, Any]:
    """Parse :class:`TritonReleases`'s output (pure; tests feed it real shell output)."""
    result = TritonReleases.default()
    found: list[tuple[int, str]] = []
    for line in output:
        parts = line.split()
        if len(parts) == 2 and parts[0] in ("current", "previous"):
            result[parts[0]] = PurePosixPath(parts[1]).name or None
        elif len(parts) == 3 and parts[0] == "release" and parts[1].isdigit():
            found.append((int(parts[1]), PurePosixPath(parts[2].rstrip("/")).name))
    result["releases"] = [name for _, name in sorted(found, key=lambda item: (-item[0], item[1]))]
    return result


def to_prune(releases: list[str], current: str, previous: str | None, keep: int) -> list[str]:
    """Releases to delete after ``current`` goes live: beyond the ``keep`` most recent, never
    ``current`` or ``previous``."""
    ordered = [current] + ([previous] if previous else []) + [r for r in releases if r not in (current, previous)]
    kept = set(ordered[:keep]) | {current} | ({previous} if previous else set())
    return [r for r in releases if r not in kept]


def switch_command(root: str, target: str, keep_previous: bool) -> str:
    """Point ``current`` at ``releases/<target>`` atomically (rename of a new symlink).

    ``keep_previous``: ``previous`` stays as it is (rollback); else it takes the old ``current``.
    The target's mtime marks it as the most recently activated release (pruning order).
    """
    r, t = shlex.quote(root), shlex.quote(f"{RELEASES}/{target}")
    move_previous = (
        'old=$(readlink current 2>/dev/null || true); '
        f'if [ -n "$old" ] && [ "$old" != {t} ]; then ln -sfn "$old" previous.new && mv -Tf previous.new previous; fi; '
    )
    return (
        f"cd {r} && test -d {t} && "
        + ("" if keep_previous else "{ " + move_previous + "} && ")
        + f"ln -sfn {t} current.new && mv -Tf current.new current && touch {t}"
    )


def link_command(store_file: str, release_file: str) -> str:
    """Hard-link a model store file into a release (same filesystem: no copy, no extra space)."""
    return f"ln -f {shlex.quote(store_file)} {shlex.quote(release_file)}"


def prune_command(root: str, doomed: list[str]) -> str:
    return f"cd {shlex.quote(root)} && rm -rf " + " ".join(shlex.quote(f"{RELEASES}/{r}") for r in doomed)


def compose_command(compose_file: str, *args: str) -> str:
    return " ".join(["docker compose", "-p", COMPOSE_PROJECT, "-f", shlex.quote(compose_file), *args])


def wait_ready_command(s: Settings) -> str:
    """Poll the model's readiness; on timeout print the container's last log lines and fail."""
    url = f"http://{probe_address(s)}:{s.triton_http_port}/v2/models/{s.model_name}/ready"
    return (
        f"for i in $(seq 1 {s.triton_ready_timeout_s}); do "
        f'[ "$(curl -s -o /dev/null -w "%{{http_code}}" {url})" = 200 ] && exit 0; sleep 1; done; '
        f'echo "Triton model {s.model_name} not READY after {s.triton_ready_timeout_s}s; last log lines:" >&2; '
        f"docker logs --tail 40 {container_name(s)} >&2; exit 1"
    )


def needs_start(s: Settings, release: str, wanted_labels: dict[str, str] | None = None) -> str | None:
    """Why the container must be (re)started to serve ``release``, or None when it already does."""
    from facts.docker import DockerContainer
    from facts.triton import TritonHealth

    container = host.get_fact(DockerContainer, container=container_name(s))
    if container is None:
        return "not created"
    if container["labels"].get(render.DEPLOY_HASH_LABEL) != release:
        return f"serves release {container['labels'].get(render.DEPLOY_HASH_LABEL) or 'none'}"
    if wanted_labels and any(container["labels"].get(key) != value for key, value in wanted_labels.items()):
        return "configuration changed"
    if container["status"] != "running":
        return f"container {container['status']}"
    if not host.get_fact(TritonHealth, port=s.triton_http_port, model=s.model_name, address=probe_address(s))["model_ready"]:
        return "model not ready"
    return None


def start(s: Settings, compose_file: str, reason: str) -> None:
    """`docker compose up -d` the release's compose file, then wait for READY."""
    logger.info(f"{host.print_prefix}Triton (re)start: {reason}")
    # A running container that is not READY is recreated: `up -d` alone leaves it as it is.
    force = ["--force-recreate"] if reason == "model not ready" else []
    server.shell(name="Start Triton (docker compose up -d)", commands=[compose_command(compose_file, "up", "-d", "--remove-orphans", *force)])
    server.shell(name=f"Wait for model {s.model_name} READY (≤ {s.triton_ready_timeout_s}s)", commands=[wait_ready_command(s)])


@deploy("Triton")
def triton() -> None:
    """This configuration's release on the host, live; start or recreate Triton only on change."""
    s = settings.load(host)
    gpu = is_gpu_host(s)
    layout = render.layout(s)
    weights = version_files(s, model.hub_token(s))
    release = release_paths(layout, s.model_name, release_id(s, gpu, weights))
    state = host.get_fact(TritonReleases, root=layout.root)

    # The model step lays out the store (version directory, tokenizer); the release links to it.
    files.directory(name=f"Directory {layout.root}/{RELEASES}", path=f"{layout.root}/{RELEASES}", mode="755")
    files.directory(name="Release model directory", path=release.version_dir, mode="755")
    if s.triton_tensorrt and gpu:
        files.directory(name="TensorRT engine cache directory", path=layout.trt_cache_dir, mode="755")
    files.put(name="Triton model config (config.pbtxt)", src=StringIO(model_config(s, gpu)), dest=release.config_file, mode="644")
    files.put(name="Triton compose file", src=StringIO(release_compose_file(s, gpu, release)), dest=release.compose_file, mode="644")
    for name in sorted(weights):
        target = f"{release.version_dir}/{name}"
        if not host.get_fact(File, path=target):
            server.shell(name=f"Hard-link {name} into the release", commands=[link_command(f"{layout.version_dir}/{name}", target)])
    # Files of the layout before releases: Triton no longer reads them.
    for stale in (layout.compose_file, layout.config_file):
        files.file(name=f"Remove {stale} (now in releases/)", path=stale, present=False)

    previous = state["previous"]
    if state["current"] != release.id:
        logger.info(f"{host.print_prefix}release {release.id} goes live (was {state['current'] or 'none'})")
        server.shell(name="Switch current to this release", commands=[switch_command(layout.root, release.id, keep_previous=False)])
        previous = state["current"] or previous
    doomed = to_prune([r for r in state["releases"] if r != release.id], release.id, previous, s.triton_releases_keep)
    if doomed:
        server.shell(name=f"Prune old releases (keep {s.triton_releases_keep})", commands=[prune_command(layout.root, doomed)])

    reason = needs_start(s, release.id, release_labels(s, gpu, release.id))
    if reason is None:
        logger.info(f"{host.print_prefix}Triton already READY with this configuration (release {release.id})")
        return
    if gpu:
        server.shell(
            name="GPU smoke test: the Triton image sees the GPUs",
            commands=[f"docker run --rm --gpus all --entrypoint nvidia-smi {s.triton_image_ref} -L"],
        )
    start(s, release.compose_file, reason)
