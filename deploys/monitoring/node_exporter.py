"""Node exporter step (every host, when the inventory has a monitoring host):
prometheus-node-exporter from the distribution's apt, listening on ``monitoring_exporter_address``
only (Debian's default is every address); restarted only when its flags change."""

from __future__ import annotations

from io import StringIO

from pyinfra import host
from pyinfra.api import deploy
from pyinfra.operations import apt, files, systemd

from deploys.core import paths, settings
from deploys.monitoring import render as monitoring_render


@deploy("Node exporter")
def node_exporter() -> None:
    """prometheus-node-exporter installed, on the exporter address, enabled and running."""
    s = settings.load(host)
    flags = files.put(
        name=f"Node exporter flags ({paths.NODE_EXPORTER_DEFAULTS})",
        src=StringIO(monitoring_render.node_exporter_defaults(s)),
        dest=paths.NODE_EXPORTER_DEFAULTS,
        mode="644",
    )
    # After the flags: the package's first start already listens where it should.
    apt.packages(
        name="Install prometheus-node-exporter", packages=["prometheus-node-exporter"], no_recommends=True, update=True, cache_time=3600
    )
    systemd.service(name="Node exporter enabled and running", service="prometheus-node-exporter", running=True, enabled=True)
    systemd.service(
        name="Restart the node exporter (its flags changed)", service="prometheus-node-exporter", restarted=True, _if=flags.did_change
    )
