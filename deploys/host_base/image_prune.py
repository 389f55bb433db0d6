"""Image prune step (Triton hosts, after the verify step: only a deploy that passed gets here):
``docker image rm`` of the images of the releases' repositories that no kept release names
(``registry_image_prune``, default on), and the tags no kept release names on an image one uses
(untagged only). The kept releases are those the triton step leaves on
disk (current, previous, the newest ``triton_releases_keep``); their compose files name their
images (facts.triton.TritonReleaseImages). Nothing to remove: no operation."""

from __future__ import annotations

from pyinfra import host, logger
from pyinfra import state as pyinfra_state
from pyinfra.api import deploy
from pyinfra.operations import server

from deploys.core import paths, settings
from deploys.host_base import registry
from deploys.triton import release
from facts.docker import DockerImageId, DockerImages
from facts.triton import TritonReleaseImages


@deploy("Image prune")
def image_prune() -> None:
    """Remove the images no kept release uses."""
    s = settings.load(host)
    planned = release.planned(pyinfra_state, host.name)
    if not s.registry_image_prune or planned is None:
        return
    on_disk = host.get_fact(TritonReleaseImages, root=paths.layout(s).root)
    kept_images = {planned.image} | {on_disk[r] for r in planned.kept if r in on_disk}
    repositories = sorted({registry.repository(image) for image in (*kept_images, *on_disk.values())})
    kept_ids = {image_id for image in sorted(kept_images) if (image_id := host.get_fact(DockerImageId, ref=image))}
    listed = [image for repository in repositories for image in host.get_fact(DockerImages, repository=repository)]
    doomed = registry.images_to_prune(listed, kept_ids, kept_images)
    if not doomed:
        return
    logger.info(f"{host.print_prefix}image prune: {len(doomed)} image reference(s) no kept release uses: {', '.join(doomed)}")
    server.shell(name="Remove images no kept release uses", commands=[registry.image_rm_command(doomed)])
