"""A host's own services as the other roles reach them: where Triton answers on the host, where the
embeddings gateway answers and whether other machines can reach it, the poll that waits for it, the
keys it is called with, and a host's server name in the front doors' pool.

Each of these is read by more than one role (the gateway's config names Triton's endpoint; the front
door balances gateways beyond loopback by server name; Triton's restarts wait for the gateway and
its verify step calls the gateway with its own key; the roll drains a host by server name), so they
live in core: a role reaches another role's service through here, never through that role's code.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from pathlib import Path
from typing import Any

from deploys.core import operations, paths, vault
from deploys.core.render import url_host
from deploys.core.settings import Settings, SettingsError

GATEWAY_STEP = "Embeddings gateway"  # the gateway step's name (deploys/gateway/step.py), in the lines printed past a bound
LOOPBACK = ("127.0.0.1", "::1")


# -- Triton, as the host reaches its published ports -------------------------------------------------


def probe_address(s: Settings) -> str:
    """Where the host itself reaches Triton's published ports."""
    return "127.0.0.1" if s.triton_bind_address in ("0.0.0.0", "::", "127.0.0.1") else s.triton_bind_address


def probe_endpoint(s: Settings, port: int) -> str:
    """``host:port`` of one of Triton's published ports as the host reaches it (IPv6 bracketed:
    ``[fd00::5]:6000``), for URLs and for tritonclient's and gRPC's ``url`` arguments."""
    return f"{url_host(probe_address(s))}:{port}"


# -- the embeddings gateway: where it answers, its readiness, its keys --------------------------------


def beyond_loopback(s: Settings) -> bool:
    """Whether the gateway listens where other machines can reach it."""
    return s.gateway_listen_address not in LOOPBACK


def probe_url(s: Settings) -> str:
    """The gateway's base URL as the host itself reaches it."""
    address = s.gateway_listen_address
    address = "127.0.0.1" if address == "0.0.0.0" else "::1" if address == "::" else address
    return f"http://{url_host(address)}:{s.gateway_listen_port}"


def api_keys(s: Settings) -> list[str]:
    """The vault's gateway API keys (plaintext, controller memory only); one line if auth is
    needed and there are none."""
    # Beyond loopback the keys are required: the vault must then decrypt (one line if it cannot).
    exists = Path(s.secrets_file).exists()
    needed = beyond_loopback(s)
    keys = vault.load(s.secrets_file, required=("gateway_api_keys",) if needed and exists else ()).gateway_api_keys if exists else []
    if not keys and needed:
        raise SettingsError(
            f"host {s.host}: setting gateway_listen_address={s.gateway_listen_address!r} is beyond loopback, so the gateway "
            f"needs API keys; add gateway_api_keys (a list) with `sops edit {s.secrets_file}`, or listen on 127.0.0.1"
        )
    return [key.unmask() for key in keys]


def ready_args(s: Settings) -> dict[str, Any]:
    """deploys/core/operations.py:wait_ready's arguments: the gateway's /ready until
    gateway_ready_timeout_s (each try bounded); past it one line naming the step and the host, its
    journal, exit 1."""
    limit = s.gateway_ready_timeout_s
    line = f"{GATEWAY_STEP} on host {s.host}: not ready within {limit}s at {probe_url(s)}/ready (gateway_ready_timeout_s); last log lines:"
    return {
        "url": f"{probe_url(s)}/ready",
        "timeout_s": limit,
        "failure_line": line,
        "logs": f"journalctl -u {paths.GATEWAY_UNIT} -n 30 --no-pager",
    }


def wait_ready_command(s: Settings) -> str:
    """:func:`ready_args` as one shell poll, for the roll plans' commands (deploys/triton/roll_plan.py, deploys/gateway/logic.py)."""
    return operations.ready_shell(**ready_args(s))


def verify_key(s: Settings, keys: list[str]) -> str:
    """The host's own key for the verify step ('' when auth is off): HMAC-SHA256 of the host name
    under the vault's keys, so no key of the vault ever reaches the host."""
    if not keys:
        return ""
    secret = "\n".join(sorted(keys)).encode()
    return "verify-" + hmac.new(secret, f"gateway-verify:{s.host}".encode(), hashlib.sha256).hexdigest()


# -- the front doors' pool ----------------------------------------------------------------------------


def server_name(host_name: str) -> str:
    """An inventory host name as an HAProxy server name (letters, digits, ``.-_:`` only)."""
    return re.sub(r"[^A-Za-z0-9._:-]", "_", host_name)
