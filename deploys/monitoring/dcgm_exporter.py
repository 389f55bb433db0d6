"""dcgm-exporter step (GPU hosts, ``gpu: true``, of a fleet with a monitoring host): NVIDIA's
dcgm-exporter image (``monitoring_dcgm_exporter_image``, pulled by the registry step) as its own
compose project, its metrics port on ``monitoring_exporter_address`` only; recreated only when its
compose file changes, started when it is not running."""

from __future__ import annotations

from io import StringIO

from pyinfra import host, logger, state
from pyinfra.api import deploy
from pyinfra.operations import files, server

from deploys.core import bounds, paths, registry, roles, settings
from deploys.core.compose import compose_command
from deploys.monitoring import render as monitoring_render
from facts.docker import DockerContainer


@deploy("dcgm-exporter")
def dcgm_exporter() -> None:
    """dcgm-exporter running from its compose file on a GPU host; nothing on other hosts."""
    s = settings.load(host)
    if not roles.runs_dcgm_exporter(s, state.inventory):
        return
    compose = paths.layout(s).dcgm_exporter_compose
    files.directory(name="dcgm-exporter directory", path=compose.rsplit("/", 1)[0], mode="755")
    put = files.put(
        name="dcgm-exporter compose file",
        src=StringIO(monitoring_render.dcgm_exporter_compose(s, registry.pull_ref(s, state.inventory, s.monitoring_dcgm_exporter_image))),
        dest=compose,
        mode="644",
    )
    container = host.get_fact(DockerContainer, container=monitoring_render.DCGM_EXPORTER_PROJECT)
    running = bool(container) and container["status"] == "running"
    if not running:
        logger.info(f"{host.print_prefix}dcgm-exporter {'not created' if not container else container['status']}: starting it")
    server.shell(
        name="Start dcgm-exporter (docker compose up -d)",
        commands=[
            bounds.bounded(
                compose_command(compose, "up", "-d", "--remove-orphans", project=monitoring_render.DCGM_EXPORTER_PROJECT),
                s.triton_start_timeout_s,
                "dcgm-exporter",
                s.host,
                "docker compose up -d (dcgm-exporter)",
                "triton_start_timeout_s",
            )
        ],
        **({} if not running else {"_if": put.did_change}),
    )
