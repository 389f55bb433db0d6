"""Releases: which release each host has live, the one before, and what Triton serves. Read-only
(0 operations), for operators and for the rollout driver:

    pyinfra inventories/prod.py deploys/releases.py -y

logs one line per host; with ``TRITON_RELEASES_OUT=DIR`` in the environment each host's state is
also written to ``DIR/<digest of the host name>.json`` (deploys/core/events.py:state_file) (``current``, ``previous``, ``releases``, ``serving`` — the
release label of the running container — and ``model_ready``).
"""

import json
import os

from pyinfra import host, logger, state

from deploys.core import connection, events, settings
from deploys.core.roles import is_triton_host
from deploys.triton.triton_service import read_state

OUT_ENV = "TRITON_RELEASES_OUT"

connection.install(state)
settings.validate_fleet(state)

if is_triton_host(host):  # front doors and monitoring hosts run no Triton
    releases = read_state(settings.load(host))
    logger.info(
        f"{host.print_prefix}releases: current {releases['current'] or 'none'}, previous {releases['previous'] or 'none'}, "
        f"serving {releases['serving'] or 'none'} ({'READY' if releases['model_ready'] else 'not READY'}); "
        f"{len(releases['releases'])} on disk"
    )
    out = os.environ.get(OUT_ENV)
    if out:
        path = events.state_file(out, host.name)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps({"host": host.name, **releases}, indent=1) + "\n", encoding="utf-8")
