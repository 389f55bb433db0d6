"""Registry credentials and the login command (the registry_login step routes through these)."""

from __future__ import annotations

import shlex

from deploys.lib import bounds, vault
from deploys.lib.settings import Settings


def credential(s: Settings) -> vault.RegistryCredential:
    """The login for ``registry_host`` from the vault (NGC_API_KEY overrides); VaultError if none."""
    needs = ("ngc_api_key",) if s.registry_host == vault.NGC_REGISTRY else ("registries",)
    return vault.load(s.secrets_file, required=needs).registry_credential(s.registry_host, s.registry_username)


STEP = "Registry login and image pull"  # the registry step's name, in the lines printed past a bound


def login_command(s: Settings, username: str) -> str:
    """``docker login`` reading the password from stdin; only the user name is an argument. Bounded
    (one round trip to the registry)."""
    login = f"docker login --username {shlex.quote(username)} --password-stdin {shlex.quote(s.registry_host)}"
    return bounds.bounded(login, bounds.REGISTRY_LOGIN_TIMEOUT_S, STEP, s.host, f"docker login to {s.registry_host}")


def logout_command(s: Settings) -> str:
    """``docker logout`` from registry_host, bounded."""
    logout = f"docker logout {shlex.quote(s.registry_host)}"
    return bounds.bounded(logout, bounds.REGISTRY_LOGIN_TIMEOUT_S, STEP, s.host, f"docker logout from {s.registry_host}")


def pull_command(s: Settings, image: str | None = None) -> str:
    """``docker pull`` of ``image`` (default: the pinned Triton image), bounded by docker_pull_timeout_s."""
    image = image or s.triton_image_ref
    pull = f"docker pull --quiet {shlex.quote(image)}"
    return bounds.bounded(pull, s.docker_pull_timeout_s, STEP, s.host, f"docker pull {image}", "docker_pull_timeout_s")
