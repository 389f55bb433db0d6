"""Rollback step: point ``current`` back to ``previous``, `docker compose up -d` that release, wait
for READY (deploys/rollback.py runs it, then the verify step).

``previous`` is left as it is, so a second rollback finds ``current`` already there and changes
nothing (it only restarts Triton when the container does not serve that release READY). Ports,
bind address and model name are the release's own (its compose file: TritonReleaseOwnSettings),
so a rollback from a release deployed with other ones waits on the right port. A host
without a previous release ends the run with one line. The image the release's compose file names
is pulled first when it is not on the host (the image prune step may have removed it): with the
registry step's login, or through the registry cache when the inventory has one.
"""

from __future__ import annotations

from pyinfra import host, logger
from pyinfra import state as pyinfra_state
from pyinfra.api import deploy
from pyinfra.operations import server

from deploys.core import paths, registry, settings
from deploys.core.settings import Settings, SettingsError
from deploys.triton import release
from deploys.triton.triton_service import needs_start, release_own_settings, releases_state, start
from facts.docker import DockerImageId
from facts.triton import TritonReleaseImages


@deploy("Rollback")
def rollback() -> Settings:
    """Make the previous release live again and wait until Triton serves it READY; the settings it
    used (the previous release's own ports and model name: the verify step after it needs them)."""
    s = settings.load(host)
    layout = paths.layout(s)
    state = releases_state(s)
    target = state["previous"]
    if not target or target not in state["releases"]:
        raise SettingsError(
            f"host {host.name}: no previous release to roll back to under {layout.root} "
            f"(current: {state['current'] or 'none'}, previous: {target or 'none'}); redeploy a known-good configuration instead"
        )
    # The release's own ports and model name (its compose file), not those of a newer --data.
    s = release_own_settings(s, target)
    # Its image first (pruned, say): a failed pull leaves current where it was.
    image = host.get_fact(TritonReleaseImages, root=layout.root).get(target)
    if image and host.get_fact(DockerImageId, ref=image) is None:
        logger.info(f"{host.print_prefix}rollback: release {target}'s image {image} is not on the host: pulling it")
        registry.pull_missing(s, pyinfra_state.inventory, [image], step="Rollback")
    if state["current"] != target:
        logger.info(f"{host.print_prefix}rollback: release {state['current'] or 'none'} -> {target}")
        server.shell(
            name="Switch current back to the previous release", commands=[release.switch_command(layout.root, target, keep_previous=True)]
        )
    else:
        logger.info(f"{host.print_prefix}rollback: release {target} is already current")
    reason = needs_start(s, target)
    if reason is None:
        logger.info(f"{host.print_prefix}Triton already READY with release {target}")
    else:
        start(s, layout.release(target).compose_file, reason, step="Rollback")
    return s
