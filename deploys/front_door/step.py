"""Front-door step (hosts of the inventory group ``front_door``): HAProxy from the distribution's apt
in front of every Triton host's embeddings gateway, health-gated on their ``/ready``.

The config is rendered from templates/front_door/haproxy.cfg.j2 with the backends from the inventory
(deploys/front_door/logic.py); a changed config is uploaded beside the live one, checked with
``haproxy -c`` on the host and only then moved in place, and HAProxy is reloaded (master-worker: the
old process finishes its connections; restarted only when it was not running); when it does not
report Ready the old config is put back (deploys/core/operations.py:validated_config). The TLS PEM
comes from the vault through stdin, 0600 (operations.secret_file).
"""

from __future__ import annotations

import shlex

from pyinfra import host, state
from pyinfra.api import deploy
from pyinfra.operations import apt, server, systemd

from deploys.core import operations, paths, redact, settings
from deploys.front_door import logic as front_door
from deploys.front_door import render as front_door_render


@deploy("Front door")
def front_door_step() -> None:
    """HAProxy installed, configured from the inventory, enabled and running; reloaded only on change."""
    s = settings.load(host)
    backends = front_door.backends(s, state.inventory)
    pem = front_door.tls_pem(s)  # the vault first: a problem ends the run before any change
    config = front_door_render.haproxy_config(s, backends, paths.HAPROXY_TLS_PEM if pem else "")

    packages = apt.packages(name="Install HAProxy and socat (its runtime API)", packages=["haproxy", "socat"], update=True, cache_time=3600)
    pem_op = None
    if pem:
        pem_op = operations.secret_file(
            name="Front-door TLS certificate and key (0600, from the vault)", path=paths.HAPROXY_TLS_PEM, content=redact.Secret(pem)
        )
    # Reload, not restart: the master starts new workers and the old ones finish their connections;
    # reload-or-restart also starts a HAProxy that was not running. A refused config: the old one back.
    reload = "systemctl reload-or-restart haproxy"
    config_op = operations.validated_config(
        name="Check the candidate with haproxy -c, then make it live",
        path=paths.HAPROXY_CONFIG,
        content=config,
        check=f"haproxy -c -q -f {shlex.quote(operations.candidate_path(paths.HAPROXY_CONFIG))}",
        reload=reload,
        confirm=front_door.reload_check_command(),
    )
    systemd.service(name="HAProxy enabled and running", service="haproxy", running=True, enabled=True)

    def others_alone() -> bool:
        """The packages or the certificate changed, the config not (its operation reloaded for all)."""
        return any(op is not None and op.did_change() for op in (packages, pem_op)) and not config_op.did_change()

    # Reload, not restart: the master starts new workers and the old ones finish their connections.
    systemd.service(name="Reload HAProxy (packages or certificate changed)", service="haproxy", reloaded=True, _if=others_alone)
    server.shell(name="HAProxy runs the new certificate", commands=[front_door.reload_check_command()], _if=others_alone)
