"""The front door role: which hosts are front doors, the backends they balance (every other host's
embeddings gateway, from the inventory), the TLS certificate from the vault, and the check the
front-door step confirms a reload with (the writes are deploys/core/operations.py's).

A host is a front door when it is in the inventory group ``front_door`` (deploys/core/roles.py);
every Triton host of the inventory (neither a front door nor a monitoring host) has its gateway as
a backend, so a fleet without that group behaves as before.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from deploys.core import settings, vault
from deploys.core.endpoints import beyond_loopback, server_name
from deploys.core.roles import FRONT_DOOR_GROUP, is_triton_host
from deploys.core.settings import Settings, SettingsError


@dataclass(frozen=True)
class Backend:
    """One gateway behind the front door: HAProxy's server name, address and port."""

    name: str
    address: str
    port: int
    health_port: int  # the gateway's health responder (embeddings_gateway/health.py): the front door checks it


def backends(s: Settings, inventory: Any) -> list[Backend]:
    """Every Triton host's gateway in ``inventory``; one line naming the host if one cannot be a backend."""
    found = []
    for other in inventory:
        if not is_triton_host(other):
            continue
        t = settings.load(other)
        if not t.gateway_enabled:
            raise SettingsError(
                f"host {other.name}: the front door {s.host} balances every Triton host's gateway; set gateway_enabled: true"
            )
        if not beyond_loopback(t):
            raise SettingsError(
                f"host {other.name}: setting gateway_listen_address={t.gateway_listen_address!r} is loopback, so the front door "
                f"{s.host} cannot reach it; set it to the host's private address (README: the front door)"
            )
        found.append(Backend(server_name(other.name), t.gateway_listen_address, t.gateway_listen_port, t.gateway_health_port))
    if not found:
        raise SettingsError(
            f"host {s.host}: the front door has no backends: the inventory has no host outside the {FRONT_DOOR_GROUP} group"
        )
    return found


def tls_pem(s: Settings) -> str:
    """The certificate chain and key as one PEM (what HAProxy's ``crt`` reads); '' without TLS."""
    if not s.front_door_tls:
        return ""
    return vault.tls_pem(s.secrets_file, s.host, "front_door_tls", "cert, key: PEM", "set front_door_tls: false")


def reload_check_command(timeout_s: int = 10) -> str:
    """After ``systemctl reload haproxy``: fail (with the journal) when the master refused the new
    config (systemd's status text says "Reload failed!"), which the reload itself does not report."""
    return (
        f"for i in $(seq 1 {timeout_s * 2}); do s=$(systemctl show -p StatusText --value haproxy); "
        'case "$s" in *[Ff]ailed*) echo "HAProxy kept its old config (systemd status: $s); last log lines:" >&2; '
        "journalctl -u haproxy -n 15 --no-pager >&2; exit 1;; Ready*) exit 0;; esac; sleep 0.5; done; "
        f'echo "HAProxy did not report Ready within {timeout_s}s after the reload" >&2; exit 1'
    )
