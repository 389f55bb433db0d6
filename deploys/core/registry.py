"""Registry credentials, the login command, and where a host pulls its images from: every role that
runs a container pulls the same way (the registry_login step, Triton's compose files and rollback,
dcgm-exporter, the images the registry cache warms), so this is core, not a role's.

With a registry cache in the inventory (group ``registry_cache``; the cache itself is the role in
deploys/registry_cache/) a Triton host pulls ``<cache>/<path>`` instead of ``<registry_host>/<path>``
(:func:`pull_ref`), anonymously: the upstream credential stays on the cache host. Without one,
nothing changes. Finding that cache (:func:`find`: which host, its endpoint, whether it is TLS, the CA
the pulling hosts trust it by) lives here too, since every pull asks it.
"""

from __future__ import annotations

import ipaddress
import shlex
from dataclasses import dataclass
from typing import Any

from pyinfra import host, logger
from pyinfra.operations import server

from deploys.core import bounds, paths, redact, settings, vault
from deploys.core.roles import REGISTRY_CACHE_GROUP, registry_caches
from deploys.core.settings import Settings, SettingsError
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


def pull_ref(s: Settings, inventory: Any, image: str | None = None) -> str:
    """The reference host ``s`` pulls and runs ``image`` by (default: Triton's, ``triton_image_ref``).

    Without a registry cache in ``inventory``: ``image`` as it is. With one: ``image`` with its
    registry replaced by the cache's ``host:port``; the path, the tag and the digest pin
    (``@sha256:...``) stay. An image from another registry than the one the cache proxies is a
    one-line error (pulling it would need that registry's credential on the Triton host).
    """
    image = s.triton_image_ref if image is None else image
    cache = find(inventory)
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
    cache = find(inventory)
    if cache is not None and not cache.tls and cache.endpoint not in wanted:
        wanted.append(cache.endpoint)
    return wanted


def pull_command(s: Settings, image: str | None = None, cache: Cache | None = None, tag_as: str | None = None, step: str = STEP) -> str:
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
            f"is docker-registry running there, and does it reach {cache.upstream}? ({README_HINT})"
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
    cache = find(inventory)
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


# -- the fleet's registry cache, as the hosts that pull through it see it ---------------------------

README_HINT = "README: the registry cache"
DOCKER_CERTS_DIR = paths.DOCKER_CERTS_DIR


@dataclass(frozen=True)
class Cache:
    """The fleet's registry cache as the Triton hosts see it."""

    host: str  # its inventory name
    endpoint: str  # host:port the Triton hosts pull from (a name, an address, [v6]:port)
    upstream: str  # the registry it proxies: the cache host's registry_host
    tls: bool  # HTTPS (else plain HTTP: insecure-registries on the Triton hosts)
    secrets_file: str  # the cache host's vault (the CA the Triton hosts trust it by)


def _host_part(address: str) -> str:
    return f"[{address}]" if ipaddress.ip_address(address).version == 6 else address


def check_host(s: Settings) -> None:
    """The cache host's own settings, as a cache: one line naming the setting when one is missing."""
    address = s.registry_cache_listen_address
    if not address:
        raise SettingsError(
            f"host {s.host}: setting registry_cache_listen_address is empty; a registry cache (group {REGISTRY_CACHE_GROUP}) "
            "listens where the Triton hosts reach it: set it to this host's private address (there is no default)"
        )
    ip = ipaddress.ip_address(address)
    if ip.is_loopback:
        raise SettingsError(
            f"host {s.host}: setting registry_cache_listen_address={address!r} is loopback, so no Triton host can pull from the cache; "
            "set it to this host's private address"
        )
    if ip.is_unspecified and not s.registry_cache_hostname:
        raise SettingsError(
            f"host {s.host}: setting registry_cache_listen_address={address!r} listens everywhere but names no address to pull from; "
            "set registry_cache_hostname (or a private address)"
        )
    if not s.registry_cache_tls and not s.registry_cache_insecure:
        raise SettingsError(
            f"host {s.host}: the registry cache needs registry_cache_tls: true (certificate from the vault) or, on a private "
            f"network, registry_cache_insecure: true (plain HTTP; {README_HINT})"
        )


def endpoint(s: Settings) -> str:
    """``host:port`` the Triton hosts pull from (``s``: the cache host's settings, checked)."""
    name = s.registry_cache_hostname or _host_part(s.registry_cache_listen_address)
    return f"{name}:{s.registry_cache_port}"


def find(inventory: Any) -> Cache | None:
    """The inventory's registry cache, or None; one line when there are several or its settings are incomplete."""
    hosts = registry_caches(inventory)
    if not hosts:
        return None
    if len(hosts) > 1:
        raise SettingsError(
            f"host {hosts[1].name}: the inventory has {len(hosts)} registry caches ({', '.join(h.name for h in hosts)}); "
            f"Triton hosts pull through one: keep one host in the group {REGISTRY_CACHE_GROUP}"
        )
    c = settings.load(hosts[0])
    check_host(c)
    return Cache(host=hosts[0].name, endpoint=endpoint(c), upstream=c.registry_host, tls=c.registry_cache_tls, secrets_file=c.secrets_file)


def trusted_ca(cache: Cache) -> str | None:
    """The CA certificate(s) the Triton hosts' Docker trusts the cache by (the vault's registry_cache_tls.ca;
    public), or None: the cache's certificate chains to a CA the hosts already trust."""
    if not cache.tls:
        return None
    return vault.load(cache.secrets_file, required=("registry_cache_tls",)).registry_cache_ca


def ca_path(cache: Cache) -> str:
    """Where Docker on a Triton host looks for the cache's CA (certs.d/<host:port>/ca.crt)."""
    return f"{DOCKER_CERTS_DIR}/{cache.endpoint}/ca.crt"
