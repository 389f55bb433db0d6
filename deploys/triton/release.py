"""Releases: what one Triton configuration is (the release spec) and the shell commands that make a
release live, link its model files and prune old ones.

A release is a directory ``{triton_dir}/releases/<id>`` (deploys/core/paths.py spells the paths)
holding config.pbtxt, the compose file and hard links of the model store's files; ``current``
points at the live one, ``previous`` at the one before.

``<id>`` is a short hash of what the release means (:func:`release_id` states the rule): the parsed
config.pbtxt and compose file in canonical form without the host's own addresses, the image and the
model files' sha256, so the same settings and model always give the same release, on every host,
and a converged re-run (or a template comment edit) changes nothing.
The model step replaces store files by rename, so an older release keeps its own inodes (its files
stay intact). The release going live is checked every run (:func:`check_link`): each model file
must be the store's own inode with the expected sha256; a file that is not (a damaged copy moved
over it, or a link of a store file the model step replaces this run) is linked again after the
model step, and a served release whose bytes were wrong restarts Triton. The last ``triton_releases_keep`` releases are kept; current and previous never go.

:func:`build` makes the :class:`ReleaseSpec` of a host once per run: config.pbtxt is rendered once
and every other part (id, compose file, labels) is derived from that text.
"""

from __future__ import annotations

import hashlib
import json
import shlex
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import PurePosixPath

import yaml

from deploys.core import bounds, context, model_store, paths, run
from deploys.core.paths import CURRENT, PREVIOUS, RELEASES, Layout, Release
from deploys.core.settings import Settings
from deploys.triton import render as triton_render
from deploys.triton.render import DEPLOY_HASH_LABEL


@dataclass(frozen=True)
class ReleaseSpec:
    """Everything one host's release is made of, rendered once per host per run."""

    id: str
    gpu: bool
    config: str  # config.pbtxt
    compose: str  # the release's compose file (mounts its own models, deploy-hash label = id)
    labels: dict[str, str]  # what the container of this release carries
    weights: dict[str, str]  # file name in 1/ -> sha256
    paths: Release
    image: str  # the reference its compose file runs Triton by


def build(
    s: Settings, gpu: bool, weights: dict[str, str], layout: Layout | None = None, image: str | None = None, restrict: bool = True
) -> ReleaseSpec:
    """The release of ``s`` on a GPU or CPU host with model files ``weights`` (name → sha256);
    ``image``: the reference the host runs Triton by (deploys/core/registry.py:pull_ref; default
    ``triton_image_ref``). It is part of the compose file, so of the release id: a fleet without
    a registry cache keeps its release ids. ``restrict``: Triton's restricted APIs on (as in
    triton_render.compose_file)."""
    layout = layout or paths.layout(s)
    config = triton_render.model_config(s, gpu)
    release = layout.release(release_id(s, gpu, weights, config=config, image=image, restrict=restrict))
    return ReleaseSpec(
        id=release.id,
        gpu=gpu,
        config=config,
        compose=release_compose_file(s, gpu, release, config=config, image=image, restrict=restrict),
        labels=release_labels(s, gpu, release.id, config=config),
        weights=dict(weights),
        paths=release,
        image=s.triton_image_ref if image is None else image,
    )


def release_id(
    s: Settings, gpu: bool, model_sha256: dict[str, str], config: str | None = None, image: str | None = None, restrict: bool = True
) -> str:
    """12 hex of sha256 over what the release is (:func:`identity`).

    The rule: a release id digests meaning, not text. Its parts are the parsed config.pbtxt in
    canonical form (Triton's ModelConfig protobuf printed by text_format), the compose file's parsed
    content (JSON with sorted keys) without the host's own bindings (the addresses its ports publish
    on, and the label that carries them), the image reference (with its digest when pinned) and the
    model files' sha256. So a comment, whitespace or layout edit of a template changes no id; a
    changed setting that reaches either file (batch size, image, port, flag) or a model file gives a
    new one; hosts with the same settings serve the same release id, whatever their addresses.
    A change of only a host's binding keeps the id: the compose file on the host is written again
    and its bindings label recreates the container (deploys/triton/triton_service.py:needs_start).

    ``config``: config.pbtxt when already rendered (else rendered here); ``image``: as in :func:`build`."""
    return hashlib.sha256(identity(s, gpu, model_sha256, config=config, image=image, restrict=restrict).encode()).hexdigest()[:12]


def identity(
    s: Settings, gpu: bool, model_sha256: dict[str, str], config: str | None = None, image: str | None = None, restrict: bool = True
) -> str:
    """The canonical text a release id digests (see :func:`release_id`)."""
    config = triton_render.model_config(s, gpu) if config is None else config
    compose = yaml.safe_load(triton_render.compose_file(s, gpu, config=config, image=image, restrict=restrict))
    for service in (compose.get("services") or {}).values():
        (service.get("labels") or {}).pop(triton_render.BINDINGS_LABEL, None)
        # "ADDRESS:HOST_PORT:CONTAINER_PORT": the ports are the release's, the address the host's.
        service["ports"] = [":".join(str(p).rsplit(":", 2)[-2:]) for p in service.get("ports") or []]
    parts = {
        "config.pbtxt": triton_render.canonical_model_config(config),
        "compose": compose,
        "image": s.triton_image_ref if image is None else image,
        "model": {name: model_sha256[name] for name in sorted(model_sha256)},
    }
    return json.dumps(parts, sort_keys=True, separators=(",", ":"))


def version_files(s: Settings, token: str | None) -> dict[str, str]:
    """File name → sha256 of the model files in the version directory (graph and its data)."""
    return {PurePosixPath(f.dest).name: f.sha256 for f in model_store.expected(s, token) if f.repo_path.startswith("onnx/")}


def release_compose_file(
    s: Settings, gpu: bool, release: Release, config: str | None = None, image: str | None = None, restrict: bool = True
) -> str:
    """The release's compose file: it mounts the release's models dir, and its deploy-hash label
    carries the release id, so a container can be matched to its release."""
    return triton_render.compose_file(
        s, gpu, deploy_hash=release.id, models_dir=release.models_dir, config=config, image=image, restrict=restrict
    )


def release_labels(s: Settings, gpu: bool, release_id_: str, config: str | None = None) -> dict[str, str]:
    """The labels the container of a release carries (as in :func:`release_compose_file`)."""
    return triton_render.compose_labels(s, gpu, release_id_, config=config)


def to_prune(releases: list[str], current: str, previous: str | None, keep: int) -> list[str]:
    """Releases to delete after ``current`` goes live: beyond the ``keep`` most recent, never
    ``current`` or ``previous``."""
    ordered = [current] + ([previous] if previous else []) + [r for r in releases if r not in (current, previous)]
    kept = set(ordered[:keep]) | {current} | ({previous} if previous else set())
    return [r for r in releases if r not in kept]


def switch_command(root: str, target: str, keep_previous: bool, run_id: str = run.RUN_ID) -> str:
    """Point ``current`` at ``releases/<target>`` atomically (rename of a new symlink).

    ``keep_previous``: ``previous`` stays as it is (rollback); else it takes the old ``current``.
    The target's mtime marks it as the most recently activated release (pruning order). The new
    symlinks are named after the run (``current.new.<run>``): two runs never share one.
    """
    r, t = shlex.quote(root), shlex.quote(f"{RELEASES}/{target}")
    cur, prev = shlex.quote(CURRENT), shlex.quote(PREVIOUS)
    cur_new, prev_new = shlex.quote(f"{CURRENT}.new.{run_id}"), shlex.quote(f"{PREVIOUS}.new.{run_id}")
    move_previous = (
        f"old=$(readlink {cur} 2>/dev/null || true); "
        f'if [ -n "$old" ] && [ "$old" != {t} ]; then ln -sfn "$old" {prev_new} && mv -Tf {prev_new} {prev}; fi; '
    )
    return (
        f"cd {r} && test -d {t} && "
        + ("" if keep_previous else "{ " + move_previous + "} && ")
        + f"ln -sfn {t} {cur_new} && mv -Tf {cur_new} {cur} && touch {t}"
    )


def set_previous_command(root: str, target: str, run_id: str = run.RUN_ID) -> str:
    """Point ``previous`` at ``releases/<target>`` (atomic rename of a new symlink named after the
    run): what a failed roll puts back, so the release before the roll stays the one to roll back to."""
    r, t, prev = shlex.quote(root), shlex.quote(f"{RELEASES}/{target}"), shlex.quote(PREVIOUS)
    prev_new = shlex.quote(f"{PREVIOUS}.new.{run_id}")
    return f"cd {r} && test -d {t} && ln -sfn {t} {prev_new} && mv -Tf {prev_new} {prev}"


def restore_previous_command(root: str, previous: str | None, back_to: str, run_id: str = run.RUN_ID) -> str:
    """What a failed roll runs after switching ``current`` back to ``back_to``: ``previous`` as it was
    before the roll (``previous`` None: the host had none, so the link the roll made goes)."""
    if not previous:
        return f"cd {shlex.quote(root)} && rm -f {shlex.quote(PREVIOUS)}"
    if previous == back_to:
        return "true"
    return set_previous_command(root, previous, run_id)


def link_command(store_file: str, release_file: str) -> str:
    """Hard-link a model store file into a release (same filesystem: no copy, no extra space)."""
    return f"ln -f {shlex.quote(store_file)} {shlex.quote(release_file)}"


@dataclass(frozen=True)
class LinkCheck:
    """What one model file of a release needs: ``relink`` (the release's file is not the model
    store's, or the store's is replaced this run), ``restart`` (the bytes Triton was started on are
    not the expected ones: a served release then restarts) and why, for the log."""

    relink: bool
    restart: bool
    why: str = ""


def check_link(
    name: str,
    link: dict[str, str | None] | None,
    store_sha256: str | None,
    expected_sha256: str,
    release_sha256: Callable[[], str | None],
) -> LinkCheck:
    """Decide for model file ``name`` of a release from the TritonModelLinks fact (``link``: the
    store's and the release's device:inode), the store file's sha256 (the model step's fact) and
    the expected digest. ``release_sha256`` hashes the release's own file; it is called only when
    that file is not the store's (a converged host hashes nothing more)."""
    store, mine = (link or {}).get("store"), (link or {}).get("release")
    store_ok = store is not None and store_sha256 == expected_sha256
    if mine is not None and mine == store:
        if store_ok:
            return LinkCheck(False, False)
        # One inode: the store's damage is the served file's; the model step replaces the store file.
        return LinkCheck(True, True, f"{name} (the served file, a link of the store's, has sha256 {_short(store_sha256)})")
    if mine is None:
        return LinkCheck(True, False, f"{name} (missing in the release)")
    served = release_sha256()
    if served == expected_sha256:
        return LinkCheck(True, False, f"{name} (an intact copy, not the store's file)")
    return LinkCheck(True, True, f"{name} (the served file is not the store's and has sha256 {_short(served)})")


def _short(digest: str | None) -> str:
    return f"{digest[:12]}…" if digest else "none (missing)"


def prune_command(root: str, doomed: list[str]) -> str:
    """Delete the releases ``doomed`` (decided when the run planned), re-checked when it runs: a
    release ``current`` or ``previous`` points at then, or that a running container carries in its
    deploy-hash label (bounded ``docker ps``; when Docker does not answer, nothing is deleted), stays,
    with one line saying so."""
    q = shlex.quote
    label = q(DEPLOY_HASH_LABEL)
    docker_ps = f'timeout -k {bounds.KILL_AFTER_S} {bounds.DOCKER_PS_TIMEOUT_S} docker ps -q --filter label={label}="$r"'
    in_use = f'used=""; if command -v docker >/dev/null 2>&1; then used=$({docker_ps}) || used="docker ps did not answer"; fi; '
    return (
        f"cd {q(root)} && "
        f"cur=$(readlink {q(CURRENT)} 2>/dev/null || true); prev=$(readlink {q(PREVIOUS)} 2>/dev/null || true); "
        f"for r in {' '.join(q(r) for r in doomed)}; do "
        f'if [ "${{cur##*/}}" = "$r" ] || [ "${{prev##*/}}" = "$r" ]; then echo "release $r kept: current or previous points at it now"; continue; fi; '
        + in_use
        + f'if [ -n "$used" ]; then echo "release $r kept: a running container uses it ($used)"; continue; fi; '
        f'rm -rf {q(RELEASES)}/"$r"; done'
    )


@dataclass(frozen=True)
class Planned:
    """What the triton step planned on a host this run: the release going live, its image, and the
    releases left on disk afterwards (the image prune step keeps their images)."""

    id: str
    image: str
    kept: tuple[str, ...]


def record_planned(state: object, host_name: str, planned: Planned, spec: ReleaseSpec | None = None) -> None:
    """Remember the triton step's plan of ``host_name`` (and the release spec it built) for the rest
    of this run's planning."""
    ctx = context.of(state)
    with ctx.lock:
        ctx.planned[host_name] = planned
        if spec is not None:
            ctx.specs[host_name] = spec


def spec_of(state: object, host_name: str) -> ReleaseSpec | None:
    """The release spec the triton step built for ``host_name`` in this run (None: none built)."""
    return context.of(state).specs.get(host_name)


def planned(state: object, host_name: str) -> Planned | None:
    """The triton step's plan of ``host_name`` in this run, or None when it planned nothing there."""
    return context.of(state).planned.get(host_name)
