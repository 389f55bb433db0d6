"""Front-door step (hosts of the inventory group ``front_door``): HAProxy from the distribution's apt
in front of every Triton host's embeddings gateway, health-gated on their ``/ready``.

The config is rendered from templates/front_door/haproxy.cfg.j2 with the backends from the inventory
(deploys/front_door/logic.py); a changed config is uploaded beside the live one, checked with
``haproxy -c`` on the host and only then moved in place, and HAProxy is reloaded (master-worker: the
old process finishes its connections), never restarted. The TLS PEM comes from the vault through
stdin, 0600.
"""

from __future__ import annotations

import hashlib
from io import StringIO

from pyinfra import host, state
from pyinfra.api import deploy
from pyinfra.facts.files import Sha256File
from pyinfra.operations import apt, files, server, systemd
from pyinfra.operations.util import any_changed

from deploys.core import paths, redact, settings
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
    changes = [packages]
    if pem and host.get_fact(Sha256File, path=paths.HAPROXY_TLS_PEM) != front_door.pem_digest(pem):
        changes.append(
            server.shell(
                name="Front-door TLS certificate and key (0600, from the vault)",
                commands=[front_door.install_pem_command(paths.HAPROXY_TLS_PEM)],
                _stdin=redact.Secret(pem),
            )
        )
    if host.get_fact(Sha256File, path=paths.HAPROXY_CONFIG) != hashlib.sha256(config.encode()).hexdigest():
        candidate = f"{paths.HAPROXY_CONFIG}.candidate"
        files.put(name="HAProxy config candidate", src=StringIO(config), dest=candidate, mode="644")
        changes.append(
            server.shell(
                name="Check the candidate with haproxy -c, then make it live",
                commands=[front_door.install_config_command(candidate, paths.HAPROXY_CONFIG)],
            )
        )
    systemd.service(name="HAProxy enabled and running", service="haproxy", running=True, enabled=True)
    # Reload, not restart: the master starts new workers and the old ones finish their connections.
    systemd.service(name="Reload HAProxy (config or certificate changed)", service="haproxy", reloaded=True, _if=any_changed(*changes))
    server.shell(name="HAProxy runs the new config", commands=[front_door.reload_check_command()], _if=any_changed(*changes))
