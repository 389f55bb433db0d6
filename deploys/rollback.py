"""Rollback: point ``current`` back to ``previous``, `docker compose up -d` that release, wait for
READY, verify. One host at a time is the usual use (the rollout driver does this on a failed host):

    pyinfra inventories/prod.py deploys/rollback.py -y --limit gpu-01.example.internal

``previous`` is left as it is, so a second rollback finds ``current`` already there and changes
nothing (it only restarts Triton when the container does not serve that release READY). A host
without a previous release ends the run with one line.
"""

from __future__ import annotations

from pyinfra import host, logger
from pyinfra.api import deploy
from pyinfra.operations import server

from deploys import render, settings
from deploys.settings import SettingsError
from deploys.triton import TritonReleases, needs_start, release_paths, start, switch_command
from deploys.verify import verify


@deploy("Rollback")
def rollback() -> None:
    """Make the previous release live again and wait until Triton serves it READY."""
    s = settings.load(host)
    layout = render.layout(s)
    state = host.get_fact(TritonReleases, root=layout.root)
    target = state["previous"]
    if not target or target not in state["releases"]:
        raise SettingsError(
            f"host {host.name}: no previous release to roll back to under {layout.root} "
            f"(current: {state['current'] or 'none'}, previous: {target or 'none'}); redeploy a known-good configuration instead"
        )
    release = release_paths(layout, s.model_name, target)
    if state["current"] != target:
        logger.info(f"{host.print_prefix}rollback: release {state['current'] or 'none'} -> {target}")
        server.shell(name="Switch current back to the previous release", commands=[switch_command(layout.root, target, keep_previous=True)])
    else:
        logger.info(f"{host.print_prefix}rollback: release {target} is already current")
    reason = needs_start(s, target)
    if reason is None:
        logger.info(f"{host.print_prefix}Triton already READY with release {target}")
    else:
        start(s, release.compose_file, reason)


def main() -> None:
    """The chain of this file: rollback, then verify (as the deploy's last step)."""
    rollback()
    verify()


if __name__ == "builtins":  # `pyinfra INVENTORY deploys/rollback.py`: the CLI execs this file nameless
    from pyinfra import state as _state

    import deploys.rollback as _module

    settings.validate_fleet(_state)
    _module.main()
