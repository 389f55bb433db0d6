"""Registry step: vaulted ``docker login``, the pinned image pull, optional logout.

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
"""

from __future__ import annotations

from pyinfra import host, logger, state
from pyinfra.api import deploy
from pyinfra.operations import server

from deploys.lib import monitoring, redact, settings
from deploys.lib.registry import credential, login_command, logout_command, pull_command
from facts.docker import DockerImageId, DockerRegistryAuth, registry_auth_digest


@deploy("Registry login and image pull")
def registry_login() -> None:
    """Log in to the registry when the stored credential is not the current one, pull the pinned image."""
    s = settings.load(host)
    # The vault first: a vault problem ends the run before any command reaches a host.
    cred = credential(s) if s.registry_auth == "vault" else None
    # Triton's image, and dcgm-exporter's on GPU hosts of a fleet with a monitoring host (same login).
    images = [s.triton_image_ref] + ([s.monitoring_dcgm_exporter_image] if monitoring.runs_dcgm_exporter(s, state.inventory) else [])
    missing = [image for image in images if host.get_fact(DockerImageId, ref=image) is None]
    image_present = not missing
    stored = host.get_fact(DockerRegistryAuth, registry=s.registry_host) if cred else None

    if cred and not (s.registry_logout_after_pull and image_present):
        wanted = registry_auth_digest(cred.username, cred.password.unmask())
        if stored != wanted:
            logger.info(
                f"{host.print_prefix}registry: {'no stored login' if stored is None else 'stored login differs (rotated key?)'} for {s.registry_host}: logging in"
            )
            server.shell(
                name=f"Docker login to {s.registry_host} (password on stdin)",
                commands=[login_command(s, cred.username)],
                _stdin=redact.Secret(cred.password.unmask()),
            )
            stored = wanted

    for image in missing:
        server.shell(name=f"Pull image {image}", commands=[pull_command(s, image)])

    if cred and s.registry_logout_after_pull and stored is not None:
        server.shell(
            name=f"Docker logout from {s.registry_host} (no credential left on disk)",
            commands=[logout_command(s)],
        )
