"""Registry credentials, the login command, and where a Triton host pulls its images from (the
registry_login step, the compose files and the rollback route through these).

With a registry cache in the inventory (group ``registry_cache``, deploys/lib/registry_cache.py)
a Triton host pulls ``<cache>/<path>`` instead of ``<registry_host>/<path>`` (:func:`pull_ref`),
anonymously: the upstream credential stays on the cache host. Without one, nothing changes.
"""

from __future__ import annotations

import shlex
from typing import Any

from pyinfra import host, logger
from pyinfra.operations import server

from deploys.lib import bounds, monitoring, redact, registry_cache, settings, vault
from deploys.lib.roles import is_triton_host
from deploys.lib.settings import Settings, SettingsError
from facts.docker import DockerImageId, DockerRegistryAuth, registry_auth_digest


def credential(s: Settings) -> vault.RegistryCredential:
    """The login for ``registry_host`` from the vault (NGC_API_KEY overrides); VaultError if none."""
    needs = ("ngc_api_key",) if s.registry_host == vault.NGC_REGISTRY else ("registries",)
    return vault.load(s.secrets_file, required=needs).registry_credential(s.registry_host, s.registry_username)


STEP = "Registry login and image pull"  # the registry step's name, in the lines printed past a bound


def login_command(s: Settings, username: str, step: str = STEP) -> str:
    """``docker login`` reading the password from stdin; only the user name is an argument. Bounded
    (one round trip to the registry)."""
    login = f"docker login --username {shlex.quote(username)} --password-stdin {shlex.quote(s.registry_host)}"
    return bounds.bounded(login, bounds.REGISTRY_LOGIN_TIMEOUT_S, step, s.host, f"docker login to {s.registry_host}")


def logout_command(s: Settings, registry: str | None = None, step: str = STEP) -> str:
    """``docker logout`` from ``registry`` (default: registry_host), bounded."""
    registry = registry or s.registry_host
    logout = f"docker logout {shlex.quote(registry)}"
    return bounds.bounded(logout, bounds.REGISTRY_LOGIN_TIMEOUT_S, step, s.host, f"docker logout from {registry}")


def repository(ref: str) -> str:
    """An image reference without its digest and tag: ``10.0.0.7:5000/nvidia/tritonserver``."""
    name = ref.split("@", 1)[0]
    slash = name.rfind("/")
    colon = name.rfind(":")
    return name[:colon] if colon > slash else name


def pull_ref(s: Settings, inventory: Any, image: str | None = None) -> str:
    """The reference host ``s`` pulls and runs ``image`` by (default: Triton's, ``triton_image_ref``).

    Without a registry cache in ``inventory``: ``image`` as it is. With one: ``image`` with its
    registry replaced by the cache's ``host:port``; the path, the tag and the digest pin
    (``@sha256:...``) stay. An image from another registry than the one the cache proxies is a
    one-line error (pulling it would need that registry's credential on the Triton host).
    """
    image = s.triton_image_ref if image is None else image
    cache = registry_cache.find(inventory)
    if cache is None:
        return image
    registry, _, path = image.partition("/")
    if registry == cache.endpoint:
        return image
    if registry != cache.upstream:
        raise SettingsError(
            f"host {s.host}: image {image} is not from {cache.upstream}, the registry the cache {cache.host} proxies; "
            f"Triton hosts pull through the cache only: use an image of {cache.upstream} (or set registry_host on {cache.host})"
        )
    return f"{cache.endpoint}/{path}"


def insecure_registries(s: Settings, inventory: Any) -> list[str]:
    """daemon.json ``insecure-registries`` of host ``s``: ``docker_insecure_registries``, plus the
    registry cache's ``host:port`` when it serves plain HTTP (registry_cache_insecure)."""
    wanted = list(s.docker_insecure_registries)
    cache = registry_cache.find(inventory)
    if cache is not None and not cache.tls and cache.endpoint not in wanted:
        wanted.append(cache.endpoint)
    return wanted


def pull_command(
    s: Settings, image: str | None = None, cache: registry_cache.Cache | None = None, tag_as: str | None = None, step: str = STEP
) -> str:
    """``docker pull`` of ``image`` (default: the pinned Triton image), bounded by docker_pull_timeout_s.

    ``cache``: the pull goes through that registry cache; a failed pull (not past the bound) says so
    in one line naming the cache. ``tag_as``: also tag the pulled image with this reference (a
    release whose compose file names the upstream's reference, pulled through the cache)."""
    q = shlex.quote
    image = image or s.triton_image_ref
    failed = None
    if cache is not None:
        failed = (
            f"pull of {image} through the registry cache {cache.endpoint} (host {cache.host}) failed: "
            f"is docker-registry running there, and does it reach {cache.upstream}? ({registry_cache.README_HINT})"
        )
    pull = f"docker pull --quiet {q(image)}"
    command = bounds.bounded(pull, s.docker_pull_timeout_s, step, s.host, f"docker pull {image}", "docker_pull_timeout_s", failed=failed)
    if tag_as:
        command += f" && docker tag {q(image)} {q(tag_as)}"
    return command


# -- pulling on a Triton host (the registry step, the rollback) ------------------------------------


def pull_missing(s: Settings, inventory: Any, images: list[str], step: str = STEP) -> None:
    """Operations that put ``images`` (references as the compose files name them) on host ``s``.

    Without a registry cache: log in to ``registry_host`` when the credential Docker stores is not
    the vault's (``registry_auth: vault``), pull what is missing, log out after the pull with
    ``registry_logout_after_pull``. With a cache: no credential at all; a stored login for the
    upstream (from before the cache) is removed, and an image is pulled through the cache (an
    upstream reference, as an older release's compose file may name it, is pulled through the
    cache and tagged with that reference).
    """
    cache = registry_cache.find(inventory)
    # The vault first: a vault problem ends the run before any command reaches a host.
    cred = credential(s) if cache is None and s.registry_auth == "vault" else None
    missing = [image for image in images if host.get_fact(DockerImageId, ref=image) is None]
    if cache is not None:
        stored = host.get_fact(DockerRegistryAuth, registry=cache.upstream)
        if stored is not None:
            logger.info(
                f"{host.print_prefix}registry: a login for {cache.upstream} is stored; pulls go through the cache {cache.endpoint}: logging out"
            )
            server.shell(
                name=f"Docker logout from {cache.upstream} (pulls go through the registry cache)",
                commands=[logout_command(s, cache.upstream, step)],
            )
        for image in missing:
            through = pull_ref(s, inventory, image)
            server.shell(
                name=f"Pull image {through} (registry cache {cache.host})",
                commands=[pull_command(s, through, cache, tag_as=image if through != image else None, step=step)],
            )
        return

    stored = host.get_fact(DockerRegistryAuth, registry=s.registry_host) if cred else None
    if cred and not (s.registry_logout_after_pull and not missing):
        wanted = registry_auth_digest(cred.username, cred.password.unmask())
        if stored != wanted:
            logger.info(
                f"{host.print_prefix}registry: {'no stored login' if stored is None else 'stored login differs (rotated key?)'} for {s.registry_host}: logging in"
            )
            server.shell(
                name=f"Docker login to {s.registry_host} (password on stdin)",
                commands=[login_command(s, cred.username, step)],
                _stdin=redact.Secret(cred.password.unmask()),
            )
            stored = wanted
    for image in missing:
        server.shell(name=f"Pull image {image}", commands=[pull_command(s, image, step=step)])
    if cred and s.registry_logout_after_pull and stored is not None:
        server.shell(
            name=f"Docker logout from {s.registry_host} (no credential left on disk)",
            commands=[logout_command(s, step=step)],
        )


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


def cache_images(inventory: Any) -> list[str]:
    """Every image reference the Triton hosts of ``inventory`` pull through its registry cache
    (Triton's, and dcgm-exporter's on GPU hosts of a monitored fleet), each once, in inventory order."""
    if registry_cache.find(inventory) is None:
        return []
    refs: list[str] = []
    for other in inventory:
        if not is_triton_host(other):
            continue
        t = settings.load(other)
        images = [t.triton_image_ref] + ([t.monitoring_dcgm_exporter_image] if monitoring.runs_dcgm_exporter(t, inventory) else [])
        refs.extend(ref for ref in (pull_ref(t, inventory, image) for image in images) if ref not in refs)
    return refs
