"""Docker step: packages from the distribution or from Docker's apt repo, a merged daemon.json, and a
service restarted only when its packages or configuration changed (deploys/host_base/docker_engine.py)."""

from __future__ import annotations

from pyinfra import host, logger
from pyinfra.api import deploy
from pyinfra.operations import systemd
from pyinfra.operations.util import any_changed

from deploys.core import settings
from deploys.host_base.docker_engine import configure_daemon, install_packages


@deploy("Docker")
def docker() -> None:
    """Docker engine + compose v2, daemon.json merged, enabled and running; restarted only on change."""
    s = settings.load(host)
    packages = install_packages(s)
    config_ops, dropin_ops = configure_daemon(s)
    # daemon-reload only when the unit drop-in changed: a reload can detach running GPU containers
    # from their devices ("Failed to initialize NVML: Unknown Error").
    systemd.daemon_reload(name="systemd daemon-reload (docker drop-in changed)", _if=any_changed(*dropin_ops))
    systemd.service(
        name="Restart Docker (packages or config changed)",
        service="docker",
        restarted=True,
        _if=any_changed(*packages, *config_ops, *dropin_ops),
    )
    systemd.service(name="Docker enabled and running", service="docker", running=True, enabled=True)
    logger.debug(f"{host.print_prefix}docker source: {s.docker_source}")
