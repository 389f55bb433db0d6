"""Registry step: vaulted ``docker login``, the pinned image pull, optional logout; through the
registry cache when the inventory has one.

- The password (NGC API key for nvcr.io, else ``registries[registry_host]`` from the vault) goes to
  ``docker login --password-stdin`` through pyinfra's ``_stdin``: never on a command line, never
  printed. The operation runs only when the digest of the auth Docker stored differs from the
  digest of the current credentials (facts.docker.DockerRegistryAuth): same key, 0 changes; a
  rotated key, exactly one change (this login).
- The image (``triton_image`` tag, plus ``triton_image_digest`` when pinned) is pulled only when it is
  not present on the host.
- ``registry_logout_after_pull: true`` logs in only when a pull is needed and logs out afterwards:
  no credential stays in Docker's config.json.
- ``registry_auth: none`` skips the vault and the login (anonymous pulls, a local mirror).
- With a registry cache (group ``registry_cache``): no login and no vault read at all; the images
  are pulled as ``<cache host:port>/<path>`` (digest pin kept, deploys/core/registry.py:pull_ref),
  a login to the upstream left from before the cache is removed, and with a TLS cache whose CA is
  in the vault (``registry_cache_tls.ca``) Docker gets that CA in ``/etc/docker/certs.d/<cache>/``.
"""

from __future__ import annotations

from io import StringIO

from pyinfra import host, state
from pyinfra.api import deploy
from pyinfra.operations import files

from deploys.core import registry, roles, settings


@deploy("Registry login and image pull")
def registry_login() -> None:
    """Log in to the registry when the stored credential is not the current one, pull the pinned image."""
    s = settings.load(host)
    # Triton's image, and dcgm-exporter's on GPU hosts of a fleet with a monitoring host (same login).
    images = [s.triton_image_ref] + ([s.monitoring_dcgm_exporter_image] if roles.runs_dcgm_exporter(s, state.inventory) else [])
    images = [registry.pull_ref(s, state.inventory, image) for image in images]
    cache = registry.find(state.inventory)
    ca = registry.trusted_ca(cache) if cache is not None else None
    if cache is not None and ca:
        path = registry.ca_path(cache)
        files.directory(name=f"Docker certs.d directory for the registry cache {cache.endpoint}", path=path.rsplit("/", 1)[0], mode="755")
        files.put(name=f"CA of the registry cache {cache.endpoint} (public)", src=StringIO(ca), dest=path, mode="644")
    registry.pull_missing(s, state.inventory, images)
