"""Releases: which release each host has live, the one before, and what Triton serves. Read-only
(0 operations), for operators and for the rollout driver:

    pyinfra inventories/prod.py deploys/releases.py -y

logs one line per host; with ``TRITON_RELEASES_OUT=DIR`` in the environment each host's state is
also written to ``DIR/<host>.json`` (``current``, ``previous``, ``releases``, ``serving`` — the
release label of the running container — and ``model_ready``).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from pyinfra import host, logger

from deploys import render, settings
from deploys.settings import Settings
from deploys.triton import TritonReleases, probe_address
from facts.docker import DockerContainer
from facts.triton import TritonHealth

OUT_ENV = "TRITON_RELEASES_OUT"


def read_state(s: Settings) -> dict[str, Any]:
    """This host's releases and what its Triton container serves (facts only)."""
    state = dict(host.get_fact(TritonReleases, root=render.layout(s).root))
    container = host.get_fact(DockerContainer, container=render.container_name(s))
    running = bool(container) and container["status"] == "running"
    state["serving"] = container["labels"].get(render.DEPLOY_HASH_LABEL) if running else None
    health = host.get_fact(TritonHealth, port=s.triton_http_port, model=s.model_name, address=probe_address(s))
    state["model_ready"] = running and health["model_ready"]
    return state


def releases() -> None:
    """Log (and with TRITON_RELEASES_OUT, save) this host's release state."""
    s = settings.load(host)
    state = read_state(s)
    logger.info(
        f"{host.print_prefix}releases: current {state['current'] or 'none'}, previous {state['previous'] or 'none'}, "
        f"serving {state['serving'] or 'none'} ({'READY' if state['model_ready'] else 'not READY'}); "
        f"{len(state['releases'])} on disk"
    )
    out = os.environ.get(OUT_ENV)
    if out:
        path = Path(out) / f"{host.name}.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps({"host": host.name, **state}, indent=1) + "\n", encoding="utf-8")


if __name__ == "builtins":  # `pyinfra INVENTORY deploys/releases.py`: the CLI execs this file nameless
    from pyinfra import state as _state

    import deploys.releases as _module

    settings.validate_fleet(_state)
    _module.releases()
