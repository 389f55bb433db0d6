"""TCP_NODELAY on every host's SSH connection, so no command waits on Nagle's algorithm.

pyinfra's SSH connector (paramiko) opens one channel per command and per fact. Without TCP_NODELAY
each channel open stalled ~40 ms on Linux (Nagle holding a small segment until the peer's delayed
ACK: 42 ms to open a channel on loopback, 0.9 ms with the option, the same sandbox host and
paramiko; 40 one-command operations 2.87 → 1.03 s). Our own converges and no-ops showed no gain above
this VM's noise (docs/benchmark.md): it is for runs of many quick commands and for longer networks.
OpenSSH's own client sets the option for interactive sessions. Only latency changes, never what is sent.

:func:`install` runs at the top of each entry point (deploys/*.py): pyinfra has connected every host
before it runs a deploy file, and a host connected later (after a reboot) gets the option from
pyinfra's ``host_connect`` callback.
"""

from __future__ import annotations

import socket
import weakref
from typing import Any

from pyinfra.api.state import BaseStateCallback

_installed: weakref.WeakSet[Any] = weakref.WeakSet()  # States with the callback (a State may be reused by id)


def no_delay(host: Any) -> bool:
    """Set TCP_NODELAY on ``host``'s SSH socket; False (and nothing done) where the host has none:
    not connected, another connector (@local, @docker), or a proxy command's pipe instead of a socket."""
    client = getattr(getattr(host, "connector", None), "client", None)
    transport = client.get_transport() if client is not None else None
    sock = getattr(transport, "sock", None)
    if not isinstance(sock, socket.socket) or sock.family not in (socket.AF_INET, socket.AF_INET6):
        return False
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return True


class _OnConnect(BaseStateCallback):
    @staticmethod
    def host_connect(state: Any, host: Any) -> None:
        no_delay(host)


def install(state: Any) -> None:
    """TCP_NODELAY on every connected host of ``state`` now and on each host connected later; idempotent."""
    if state in _installed:
        return
    _installed.add(state)
    state.add_callback_handler(_OnConnect())
    for host in state.inventory:
        if host.connected:
            no_delay(host)
