"""Triton step: the host's restricted-API key (made once, on the host), this configuration's release
on the host, `current` pointing at it, `docker compose up -d` only when the live release or the key
changes (or the container does not serve it, or the release's model files were not the store's
checked files and were linked again), then READY.

The release (config.pbtxt, compose file, labels, id, paths) is built once per host per run by
deploys/triton/release.py; host paths come from deploys/core/paths.py.
"""

from __future__ import annotations

from io import StringIO

from pyinfra import host, logger
from pyinfra import state as pyinfra_state
from pyinfra.api import deploy
from pyinfra.facts.files import Sha256File
from pyinfra.operations import files, server

from deploys.core import model_store, paths, registry, rolling, settings
from deploys.core.gpu import is_gpu_host
from deploys.triton import release, triton_api
from deploys.triton.roll_plan import triton_roll_plan
from deploys.triton.triton_service import (
    gpu_smoke_command,
    link_checks,
    needs_start,
    releases_state,
    relinked_reason,
    restricted_apis_on,
    serving_release,
    start,
)


@deploy("Triton")
def triton() -> None:
    """This configuration's release on the host, live; start or recreate Triton only on change."""
    s = settings.load(host)
    gpu = is_gpu_host(s)
    layout = paths.layout(s)
    # The image as this host pulls it: through the registry cache when the inventory has one.
    image = registry.pull_ref(s, pyinfra_state.inventory)
    on_host = releases_state(s)
    doors = rolling.front_doors(pyinfra_state.inventory)
    restrict = restricted_apis_on(s, layout, bool(doors), on_host["current"] is not None)
    spec = release.build(s, gpu, release.version_files(s, model_store.hub_token(s)), layout, image=image, restrict=restrict)
    live = spec.paths

    # The model step lays out the store (version directory, tokenizer); the release links to it.
    # Triton's restricted-API key: made on the host once (never on the controller or a command line).
    files.directory(
        name=f"Directory {layout.triton_key_dir} (Triton API key)", path=layout.triton_key_dir, mode="700", user="root", group="root"
    )
    if host.get_fact(Sha256File, path=layout.triton_key) in (None, triton_api.EMPTY_SHA256):
        server.shell(
            name="Generate Triton's restricted-API key on the host (0600 root)",
            commands=[triton_api.generate_command(layout.triton_key_dir, layout.triton_key)],
        )
    files.file(name="Triton API key file 0600 root", path=layout.triton_key, mode="600", user="root", group="root")
    files.directory(name=f"Directory {layout.releases_dir}", path=layout.releases_dir, mode="755")
    files.directory(name="Release model directory", path=live.version_dir, mode="755")
    if s.triton_tensorrt and gpu:
        files.directory(name="TensorRT engine cache directory", path=layout.trt_cache_dir, mode="755")
    files.put(name="Triton model config (config.pbtxt)", src=StringIO(spec.config), dest=live.config_file, mode="644")
    files.put(name="Triton compose file", src=StringIO(spec.compose), dest=live.compose_file, mode="644")
    # Each model file must be the store's own (checked, same inode); the model step's operations
    # run before these, so a store file it replaces this run is linked after the replacement.
    checks = link_checks(s, spec.weights, live.version_dir)
    for name, check in checks.items():
        if check.relink:
            server.shell(
                name=f"Hard-link {name} into the release",
                commands=[release.link_command(f"{layout.version_dir}/{name}", f"{live.version_dir}/{name}")],
            )
    damaged = [check.why for check in checks.values() if check.restart]
    # Files of the layout before releases: Triton no longer reads them.
    for stale in (layout.compose_file, layout.config_file):
        files.file(name=f"Remove {stale} (now in releases/)", path=stale, present=False)

    reason = needs_start(s, spec.id, spec.labels)
    if reason is None and damaged:
        # Triton serves this release READY, but from bytes that are not the expected ones.
        reason = relinked_reason(damaged)
        logger.warning(f"{host.print_prefix}release {spec.id}: {reason}; Triton restarts on the checked files")
    if reason is None and doors:
        reason = rolling.pending(host)  # a killed run's roll: READY, parity and back in the pool
    # Behind a front door a host that already serves rolls: out of the pool, switch, READY, parity, back.
    rolls = bool(doors) and reason not in (None, "not created")
    previous = on_host["previous"]
    if on_host["current"] != spec.id:
        logger.info(f"{host.print_prefix}release {spec.id} goes live (was {on_host['current'] or 'none'})")
        if not rolls:
            server.shell(
                name="Switch current to this release", commands=[release.switch_command(layout.root, spec.id, keep_previous=False)]
            )
        previous = on_host["current"] or previous
    serving = serving_release(s) if rolls else None  # what a failed roll goes back to: never pruned
    doomed = [
        r
        for r in release.to_prune([r for r in on_host["releases"] if r != spec.id], spec.id, previous, s.triton_releases_keep)
        if r != serving
    ]
    if doomed:
        server.shell(name=f"Prune old releases (keep {s.triton_releases_keep})", commands=[release.prune_command(layout.root, doomed)])
    kept = tuple(r for r in [spec.id, *on_host["releases"]] if r not in doomed)
    release.record_planned(pyinfra_state, host.name, release.Planned(spec.id, spec.image, tuple(dict.fromkeys(kept))), spec)

    if reason is None:
        logger.info(f"{host.print_prefix}Triton already READY with this configuration (release {spec.id})")
        return
    if gpu:
        server.shell(
            name="GPU smoke test: the Triton image sees the GPUs",
            commands=[gpu_smoke_command(s, spec.image)],
        )
    if rolls:
        back_to = serving if serving in on_host["releases"] and serving != spec.id else None
        rolling.roll(
            name=f"Roll Triton behind the front door ({s.rollout_max_unavailable} host(s) out of the pool at a time)",
            plan=triton_roll_plan(host, doors, s, gpu, spec.id, reason, back_to, on_host["previous"], triton_key=restrict),
            _parallel=s.rollout_max_unavailable,
        )
        return
    start(s, live.compose_file, reason)
