"""Image prune step (Triton hosts, after the verify step: only a deploy that passed gets here):
``docker image rm`` of the images of the releases' repositories that no kept release names
(``registry_image_prune``, default on), and the tags no kept release names on an image one uses
(untagged only). The kept releases are those the triton step leaves on
disk (current, previous, the newest ``triton_releases_keep``); their compose files name their
images (facts.triton.TritonReleaseImages). Nothing to remove: no operation.

Triton's step, not the host base's: what it keeps and removes is decided by Triton's releases
(deploys/triton/release.py); deploys/all.py runs it where it ran before, after the verify step."""

from __future__ import annotations

import shlex

from pyinfra import host, logger
from pyinfra import state as pyinfra_state
from pyinfra.api import deploy
from pyinfra.operations import server

from deploys.core import paths, settings
from deploys.triton import release
from facts.docker import DockerImageId, DockerImages
from facts.triton import TritonReleaseImages


def repository(ref: str) -> str:
    """An image reference without its digest and tag: ``10.0.0.7:5000/nvidia/tritonserver``."""
    name = ref.split("@", 1)[0]
    slash = name.rfind("/")
    colon = name.rfind(":")
    return name[:colon] if colon > slash else name


# -- images no kept release uses ---------------------------------------------------------------------


def images_to_prune(listed: list[dict[str, str]], kept_ids: set[str], kept_refs: set[str] | None = None) -> list[str]:
    """References to remove: every image in ``listed`` (facts.docker.DockerImages rows of the
    releases' repositories) whose id no kept release's image has, by tag, else by digest; and a
    tag no kept release names on an image a kept release uses (``kept_refs``: its references), which
    ``docker image rm`` only untags (two releases of one image under two tags)."""
    kept_tags = {ref.split("@", 1)[0] for ref in kept_refs or ()}
    refs: list[str] = []
    for image in listed:
        tagged = image["tag"] not in ("", "<none>")
        if image["id"] in kept_ids:
            if kept_refs is not None and tagged and f"{image['repository']}:{image['tag']}" not in kept_tags:
                refs.append(f"{image['repository']}:{image['tag']}")
            continue
        if tagged:
            ref = f"{image['repository']}:{image['tag']}"
        elif image["digest"] not in ("", "<none>"):
            ref = f"{image['repository']}@{image['digest']}"
        else:
            ref = image["id"]
        if ref not in refs:
            refs.append(ref)
    return refs


def image_rm_command(refs: list[str]) -> str:
    """``docker image rm`` each of ``refs`` still there; one that Docker refuses (a container uses
    it) is left in place with a line on stderr, not a failed deploy."""
    q = shlex.quote
    return (
        f'for r in {" ".join(q(r) for r in refs)}; do docker image inspect "$r" >/dev/null 2>&1 || continue; '
        'docker image rm "$r" >/dev/null || echo "image prune: docker image rm $r refused; left in place" >&2; done; true'
    )


@deploy("Image prune")
def image_prune() -> None:
    """Remove the images no kept release uses."""
    s = settings.load(host)
    planned = release.planned(pyinfra_state, host.name)
    if not s.registry_image_prune or planned is None:
        return
    on_disk = host.get_fact(TritonReleaseImages, root=paths.layout(s).root)
    kept_images = {planned.image} | {on_disk[r] for r in planned.kept if r in on_disk}
    repositories = sorted({repository(image) for image in (*kept_images, *on_disk.values())})
    kept_ids = {image_id for image in sorted(kept_images) if (image_id := host.get_fact(DockerImageId, ref=image))}
    listed = [image for repository in repositories for image in host.get_fact(DockerImages, repository=repository)]
    doomed = images_to_prune(listed, kept_ids, kept_images)
    if not doomed:
        return
    logger.info(f"{host.print_prefix}image prune: {len(doomed)} image reference(s) no kept release uses: {', '.join(doomed)}")
    server.shell(name="Remove images no kept release uses", commands=[image_rm_command(doomed)])
