"""The front door's rendering: haproxy.cfg.

Rendered from templates/front_door/ by deploys/core/render.py's ``render``; pure functions of validated settings."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from deploys.core import paths
from deploys.core.render import RenderError, render, url_host
from deploys.core.settings import Settings


class HaproxyBackend(Protocol):
    """What :func:`haproxy_config` reads of a backend (deploys/front_door/logic.py's ``Backend`` has it)."""

    @property
    def name(self) -> str: ...  # HAProxy server name: letters, digits and ``.-_:`` only
    @property
    def address(self) -> str: ...  # an IP address, v4 or v6 (bracketed here)
    @property
    def port(self) -> int: ...
    @property
    def health_port(self) -> int: ...  # the gateway's health responder: what the checks ask


def haproxy_config(s: Settings, backends: Sequence[HaproxyBackend], tls_pem_path: str) -> str:
    """The front door's haproxy.cfg (templates/front_door/haproxy.cfg.j2) for the front-door host's settings ``s``.

    ``backends``: every Triton host's gateway, one ``server`` line each in backend ``gateways``;
    ``tls_pem_path``: the host path of the certificate chain + key PEM, read when ``s.front_door_tls``
    (ignored otherwise, may be ''). Nothing is checked here beyond that pairing: ``haproxy -c`` on
    the host (and in tests/test_front_door_config.py) is the judge of the text.
    """
    if s.front_door_tls and not tls_pem_path:
        raise RenderError(f"host {s.host}: front_door_tls is on but no certificate path was given to the HAProxy config")
    return render(
        "haproxy.cfg.j2",
        s=s,
        admin_socket=paths.HAPROXY_ADMIN_SOCKET,
        backend_name=paths.HAPROXY_BACKEND,
        fallback_name=paths.HAPROXY_FALLBACK_BACKEND,
        listen_host=url_host(s.front_door_listen_address),
        metrics_host=url_host(s.front_door_metrics_address),
        tls_pem_path=tls_pem_path,
        backends=[{"name": b.name, "host": url_host(b.address), "port": b.port, "health_port": b.health_port} for b in backends],
    )
