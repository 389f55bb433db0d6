"""deploys/core/connection.py: TCP_NODELAY on each host's SSH socket, on real loopback sockets and a
real pyinfra State (its host_connect callback)."""

from __future__ import annotations

import socket
from types import SimpleNamespace

import pytest
from pyinfra.api import Config, Inventory, State

from deploys.core import connection


@pytest.fixture
def tcp_socket():
    """A connected loopback TCP socket (what paramiko's transport holds for an SSH host)."""
    with socket.create_server(("127.0.0.1", 0)) as server:
        client = socket.create_connection(server.getsockname())
        peer, _ = server.accept()
        yield client
        client.close()
        peer.close()


def _host(sock, connected: bool = True) -> SimpleNamespace:
    transport = SimpleNamespace(sock=sock)
    client = SimpleNamespace(get_transport=lambda: transport)
    return SimpleNamespace(connector=SimpleNamespace(client=client), connected=connected)


def _nodelay(sock: socket.socket) -> int:
    return sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)


def test_a_hosts_ssh_socket_gets_tcp_nodelay(tcp_socket):
    assert _nodelay(tcp_socket) == 0  # Linux's default: Nagle on
    assert connection.no_delay(_host(tcp_socket)) is True
    assert _nodelay(tcp_socket) != 0


def test_no_socket_no_change_no_error():
    left, right = socket.socketpair()  # a proxy command's pipe-like stream: no TCP to tune
    try:
        assert connection.no_delay(_host(left)) is False
    finally:
        left.close()
        right.close()
    assert connection.no_delay(_host(object())) is False  # paramiko's ProxyCommand
    assert connection.no_delay(SimpleNamespace(connector=SimpleNamespace(client=None))) is False  # not connected
    assert connection.no_delay(SimpleNamespace(connector=SimpleNamespace())) is False  # @local, @docker


def test_install_tunes_connected_hosts_and_hosts_connected_later(tcp_socket):
    state = State(Inventory((["h1", "h2"], {})), Config())
    h1, h2 = state.inventory.get_host("h1"), state.inventory.get_host("h2")
    with socket.create_server(("127.0.0.1", 0)) as server:
        later = socket.create_connection(server.getsockname())
        try:
            h1.connected = True
            h1.connector.client = _host(tcp_socket).connector.client
            connection.install(state)
            connection.install(state)  # every entry point's deploy file runs once per host
            assert _nodelay(tcp_socket) != 0
            assert sum(isinstance(h, connection._OnConnect) for h in state.callback_handlers) == 1
            # h2 connects after the deploy files ran (a reboot's reconnect): pyinfra's callback sets it.
            h2.connector.client = _host(later).connector.client
            assert _nodelay(later) == 0
            state.trigger_callbacks("host_connect", h2)
            assert _nodelay(later) != 0
        finally:
            later.close()
