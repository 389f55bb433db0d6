"""Registry credentials and the login command (the registry_login step routes through these)."""

from __future__ import annotations

import shlex

from deploys.lib import vault
from deploys.lib.settings import Settings


def credential(s: Settings) -> vault.RegistryCredential:
    """The login for ``registry_host`` from the vault (NGC_API_KEY overrides); VaultError if none."""
    needs = ("ngc_api_key",) if s.registry_host == vault.NGC_REGISTRY else ("registries",)
    return vault.load(s.secrets_file, required=needs).registry_credential(s.registry_host, s.registry_username)


def login_command(s: Settings, username: str) -> str:
    """``docker login`` reading the password from stdin; only the user name is an argument."""
    return f"docker login --username {shlex.quote(username)} --password-stdin {shlex.quote(s.registry_host)}"
