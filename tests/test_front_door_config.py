"""The front door's HAProxy config (templates/front_door/haproxy.cfg.j2), judged by the real HAProxy.

Rendered configs must pass ``haproxy -c`` with zero warnings (``-dW``) for the combinations the
settings allow (1 and 3 backends, IPv6, TLS with a throwaway certificate, rate limit on and off),
and broken ones must be refused (so the check can fail). Then a real HAProxy (``-W -db``: master
and worker in the foreground, as Debian's ``-Ws`` without systemd) runs the rendered config on
loopback in front of stand-in gateways (http.server: ``/ready`` 200 or 503, ``POST /v1/embeddings``
answering JSON), steered through the runtime API with facts/haproxy.py's commands: requests go
through; a gateway whose /ready turns 503 leaves the pool within 3 s; a 503 answer and a refused
connection are retried on the other gateway; a drained gateway gets no new request and the wait
ends when its request in flight does; a reload drops nothing; TLS with HTTP/2; the rate limit's 429;
the Prometheus exporter. Every loop is bounded; everything started is stopped at teardown.
"""

from __future__ import annotations

import http.client
import json
import os
import re
import shutil
import signal
import socket
import ssl
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from deploys.core import paths, render, settings
from deploys.core.render import RenderError
from deploys.core.settings import Settings
from deploys.front_door import render as front_door_render
from facts.haproxy import HaproxyServers, parse_stat_csv, runtime_command, set_server_state_command, wait_idle_command
from tests.support.net import free_port

HAPROXY = shutil.which("haproxy")
pytestmark = pytest.mark.skipif(HAPROXY is None, reason="haproxy is not installed (tests/system_deps.sh installs it)")
BACKEND = "gateways"
OPENSSL_SELF_SIGNED = (
    "openssl",
    "req",
    "-x509",
    "-newkey",
    "ec",
    "-pkeyopt",
    "ec_paramgen_curve:prime256v1",
    "-nodes",
    "-days",
    "1",
    "-subj",
    "/CN=test",
)
BODY = json.dumps({"model": "embeddinggemma", "input": ["front door"]}).encode()


@dataclass(frozen=True)
class Gateway:
    """A backend as front_door_render.haproxy_config reads it (deploys/front_door/logic.py's Backend has the same fields)."""

    name: str
    address: str
    port: int
    health_port: int = 6081


def front_door(**data: Any) -> Settings:
    """The front-door host's settings: defaults plus ``data``."""
    return settings.parse("front-door", data)


def haproxy_check(text: str, directory: Path) -> subprocess.CompletedProcess[str]:
    """``haproxy -c -dW`` (zero-warning mode) on ``text``, as the host checks a candidate."""
    config = directory / "candidate.cfg"
    config.write_text(text)
    return subprocess.run([str(HAPROXY), "-c", "-dW", "-f", str(config)], capture_output=True, text=True, timeout=30)


@pytest.fixture(scope="module")
def tls_pem(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A throwaway self-signed P-256 certificate and its key in one PEM (what HAProxy's ``crt`` reads)."""
    directory = tmp_path_factory.mktemp("tls")
    subprocess.run(
        [*OPENSSL_SELF_SIGNED, "-keyout", str(directory / "key.pem"), "-out", str(directory / "cert.pem")],
        check=True,
        capture_output=True,
        timeout=30,
    )
    pem = directory / "front-door.pem"
    pem.write_text((directory / "cert.pem").read_text() + (directory / "key.pem").read_text())
    return pem


ONE = [Gateway("host1", "10.0.0.11", 6080)]
THREE = [Gateway("host1", "10.0.0.11", 6080), Gateway("host2", "10.0.0.12", 6080), Gateway("gpu-3.example_net", "10.0.0.13", 7080)]
IPV6 = [Gateway("host1", "fd00::11", 6080), Gateway("host2", "10.0.0.12", 6080)]


# -- haproxy -c on rendered configs ------------------------------------------------------------


@pytest.mark.parametrize(
    ("backends", "data", "tls"),
    [
        (ONE, {}, False),
        (THREE, {"front_door_rate_limit_per_s": 20}, False),
        (IPV6, {"front_door_listen_address": "::", "front_door_metrics_address": "::1"}, False),
        (THREE, {"front_door_tls": True, "front_door_port": 443, "front_door_rate_limit_per_s": 5}, True),
        (ONE, {"front_door_tls": True, "front_door_retries": 0, "front_door_check_interval_ms": 100, "front_door_fall": 1}, True),
    ],
    ids=["one-backend", "three-backends-rate-limit", "ipv6", "tls-rate-limit", "tls-no-retries"],
)
def test_rendered_config_passes_haproxy_check(
    backends: list[Gateway], data: dict[str, Any], tls: bool, tls_pem: Path, tmp_path: Path
) -> None:
    s = front_door(**data)
    text = front_door_render.haproxy_config(s, backends, str(tls_pem) if tls else "")
    result = haproxy_check(text, tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Configuration file is valid" in result.stdout + result.stderr

    for backend in backends:
        address = f"{render.url_host(backend.address)}:{backend.port}"
        assert f"    server {backend.name} {address} port {backend.health_port}\n" in text  # checked on the health port
        assert f"    server {backend.name} {address}\n" in text  # the fallback backend: no check
    assert f"stats socket {paths.HAPROXY_ADMIN_SOCKET} mode 600 level admin expose-fd listeners" in text
    assert (
        f"default-server check inter {s.front_door_check_interval_ms}ms fall {s.front_door_fall} rise {s.front_door_rise} "
        f"maxconn {s.front_door_server_maxconn}\n"
    ) in text
    assert f"timeout check {s.front_door_check_timeout_ms}ms\n" in text and f"timeout queue {s.front_door_queue_timeout_ms}ms\n" in text
    assert f"use_backend {paths.HAPROXY_FALLBACK_BACKEND} if {{ nbsrv({BACKEND}) eq 0 }}" in text
    assert "retry-on conn-failure empty-response 503\n" in text  # never a timeout: a retry must not add load
    assert (f"ssl crt {tls_pem} alpn h2,http/1.1" in text) == tls
    limited = re.search(r"http-request return status 429 .* string '(.*)' if \{ sc_http_req_rate\(0\) gt (\d+) \}", text)
    assert bool(limited) == (s.front_door_rate_limit_per_s > 0)
    if limited:
        assert int(limited.group(2)) == 10 * s.front_door_rate_limit_per_s  # per second, over a 10 s window
        assert json.loads(limited.group(1))["error"]["code"] == "rate_limit_exceeded"
    for body in re.findall(r"(?:http-error status 50\d|return status 429) .* string '(.*)'", text):
        assert set(json.loads(body)["error"]) == {"message", "type", "param", "code"}


@pytest.mark.parametrize(
    ("backends", "data", "refused"),
    [
        ([Gateway("host 1", "10.0.0.11", 6080)], {}, "server"),  # a name the inventory did not sanitise
        ([Gateway("host1", "10.0.0.11", 6080), Gateway("host1", "10.0.0.12", 6080)], {}, "host1"),  # two hosts, one name
        (ONE, {"front_door_tls": True}, "missing.pem"),  # the certificate is not there
        (ONE, {"invalid_address": "10.0.0.300"}, "10.0.0.300"),  # an address the settings would refuse, written in anyway
    ],
    ids=["bad-server-name", "duplicate-server-name", "missing-certificate", "invalid-address"],
)
def test_broken_config_is_refused(backends: list[Gateway], data: dict[str, Any], refused: str, tmp_path: Path) -> None:
    if "invalid_address" in data:  # render.url_host (and the settings' IP check) refuse it first; haproxy would too
        with pytest.raises(ValueError, match="does not appear to be an IPv4 or IPv6 address"):
            front_door_render.haproxy_config(front_door(), [Gateway("host1", data["invalid_address"], 6080)], "")
        text = front_door_render.haproxy_config(front_door(), backends, "").replace(backends[0].address, data["invalid_address"])
    else:
        text = front_door_render.haproxy_config(front_door(**data), backends, str(tmp_path / "missing.pem"))
    result = haproxy_check(text, tmp_path)
    assert result.returncode != 0
    assert refused in result.stdout + result.stderr


def test_tls_without_certificate_path_is_a_render_error() -> None:
    with pytest.raises(RenderError, match="front_door_tls"):
        front_door_render.haproxy_config(front_door(front_door_tls=True), ONE, "")


# -- a real HAProxy in front of stand-in gateways ----------------------------------------------


@dataclass
class StandIn:
    """A stand-in gateway: ``/ready`` answers ``ready``; POST answers ``post`` after ``delay_s``."""

    ready: int = 200
    post: int = 200
    delay_s: float = 0.0
    posts: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)
    server: ThreadingHTTPServer | None = None

    @property
    def port(self) -> int:
        assert self.server is not None
        return self.server.server_address[1]

    def start(self) -> StandIn:
        stand_in = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def answer(self, status: int, body: bytes) -> None:
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_GET(self) -> None:
                self.answer(stand_in.ready if self.path == "/ready" else 404, b"{}")

            def do_POST(self) -> None:
                self.rfile.read(int(self.headers.get("Content-Length", 0)))
                with stand_in.lock:
                    stand_in.posts += 1
                time.sleep(stand_in.delay_s)
                body = (
                    {"object": "list", "data": [], "served_by": stand_in.port}
                    if stand_in.post == 200
                    else {"error": {"code": "triton_unavailable"}}
                )
                self.answer(stand_in.post, json.dumps(body).encode())

        class Server(ThreadingHTTPServer):
            def handle_error(self, request: Any, client_address: Any) -> None:
                pass  # a health check cut short by stop(): not this test's business

        self.server = Server(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()


def sh(command: str, timeout: float = 20) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["sh", "-c", command], capture_output=True, text=True, timeout=timeout)


@dataclass
class FrontDoor:
    """A running HAProxy (master-worker, foreground) on loopback and its runtime API."""

    process: subprocess.Popen[bytes]
    port: int
    metrics_port: int
    socket: str
    log: Path
    gateways: dict[str, StandIn]

    def post(self, path: str = "/v1/embeddings", timeout: float = 10) -> tuple[int, dict[str, Any], dict[str, str]]:
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
        try:
            connection.request("POST", path, body=BODY, headers={"Content-Type": "application/json"})
            response = connection.getresponse()
            headers = {name.lower(): value for name, value in response.getheaders()}  # HAProxy sends lower-case names
            return response.status, json.loads(response.read() or b"{}"), headers
        finally:
            connection.close()

    def servers(self) -> dict[str, dict[str, Any]]:
        """facts/haproxy.py's HaproxyServers, its command run for real, by server name."""
        fact = HaproxyServers()
        output = sh(fact.command(self.socket, BACKEND)).stdout.splitlines()
        return {server["name"]: dict(server) for server in (fact.process(output) if output else fact.default())}

    def stat(self, server: str) -> dict[str, str]:
        return parse_stat_csv(sh(runtime_command(self.socket, f"show stat {BACKEND} 4 -1")).stdout.splitlines())[(BACKEND, server)]

    def runtime(self, line: str) -> str:
        return sh(runtime_command(self.socket, line)).stdout.strip()

    def wait_for(self, predicate: Callable[[], bool], timeout_s: float, what: str) -> float:
        """Seconds until ``predicate()`` holds (polled every 50 ms); fails after ``timeout_s``."""
        start = time.monotonic()
        while not predicate():
            if time.monotonic() - start > timeout_s:
                pytest.fail(f"{what}: not within {timeout_s}s; HAProxy log:\n{self.log.read_text()[-2000:]}")
            time.sleep(0.05)
        return time.monotonic() - start


@pytest.fixture
def start_front_door(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, tls_pem: Path) -> Iterator[Callable[..., FrontDoor]]:
    """Start HAProxy with the rendered config in front of new stand-in gateways ``a`` and ``b``."""
    if os.geteuid() != 0:
        pytest.skip("the rendered config chroots to /var/lib/haproxy and runs as user haproxy: needs root")
    started: list[FrontDoor] = []

    def start(**data: Any) -> FrontDoor:
        gateways = {"a": StandIn().start(), "b": StandIn().start()}
        admin_socket = tmp_path / f"admin-{len(started)}.sock"
        monkeypatch.setattr(paths, "HAPROXY_ADMIN_SOCKET", str(admin_socket))
        port, metrics_port = free_port(), free_port()
        base = {
            "front_door_listen_address": "127.0.0.1",
            "front_door_port": port,
            "front_door_metrics_port": metrics_port,
            "front_door_maxconn": 200,
        }
        s = front_door(**base, **data)
        text = front_door_render.haproxy_config(
            s, [Gateway(name, "127.0.0.1", g.port, g.port) for name, g in gateways.items()], str(tls_pem) if s.front_door_tls else ""
        )
        config = tmp_path / f"haproxy-{len(started)}.cfg"
        config.write_text(text)
        log = tmp_path / f"haproxy-{len(started)}.log"
        with log.open("wb") as out:
            process = subprocess.Popen([str(HAPROXY), "-W", "-db", "-f", str(config)], stdout=out, stderr=subprocess.STDOUT)
        door = FrontDoor(process, port, metrics_port, str(admin_socket), log, gateways)
        started.append(door)
        door.wait_for(lambda: admin_socket.is_socket() and len(door.servers()) == 2, 10, "HAProxy's runtime API")
        return door

    yield start
    for door in started:
        if door.process.poll() is None:
            door.process.terminate()
            try:
                door.process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                door.process.kill()
                door.process.wait(timeout=5)
        for gateway in door.gateways.values():
            gateway.stop()


def test_requests_go_through_to_both_gateways(start_front_door: Callable[..., FrontDoor]) -> None:
    door = start_front_door()
    answers = [door.post() for _ in range(8)]
    assert [status for status, _, _ in answers] == [200] * 8
    assert {body["served_by"] for _, body, _ in answers} == {door.gateways["a"].port, door.gateways["b"].port}
    assert {name: (server["operational_state"], server["admin_state"]) for name, server in door.servers().items()} == {
        "a": ("up", "ready"),
        "b": ("up", "ready"),
    }


def test_not_ready_gateway_leaves_the_pool_within_3s(start_front_door: Callable[..., FrontDoor]) -> None:
    door = start_front_door()  # the defaults: a check every 500 ms, fall 2, rise 2
    door.gateways["a"].ready = 503
    left = door.wait_for(lambda: door.servers()["a"]["operational_state"] == "down", 5, "gateway a out of the pool")
    assert left < 3.0
    posts = door.gateways["a"].posts
    assert [door.post()[0] for _ in range(4)] == [200] * 4
    assert door.gateways["a"].posts == posts  # none sent to the gateway out of the pool
    door.gateways["a"].ready = 200
    door.wait_for(lambda: door.servers()["a"]["operational_state"] == "up", 5, "gateway a back in the pool")


def test_503_answer_is_retried_on_the_other_gateway(start_front_door: Callable[..., FrontDoor]) -> None:
    door = start_front_door()
    door.gateways["a"].post = 503  # /ready still 200: in the pool, but every request fails there
    answers = [door.post() for _ in range(8)]
    assert [status for status, _, _ in answers] == [200] * 8
    assert {body["served_by"] for _, body, _ in answers} == {door.gateways["b"].port}
    assert door.gateways["a"].posts >= 1  # requests did reach a and were redispatched
    assert int(door.stat("a")["wredis"]) == door.gateways["a"].posts


def test_refused_connection_is_retried_on_the_other_gateway(start_front_door: Callable[..., FrontDoor]) -> None:
    door = start_front_door()
    assert door.runtime(f"disable health {BACKEND}/a") == ""  # keep a "up" whatever its checks say
    door.gateways["a"].stop()  # nothing listens on a's port now: connections are refused
    answers = [door.post() for _ in range(8)]
    assert [status for status, _, _ in answers] == [200] * 8
    assert {body["served_by"] for _, body, _ in answers} == {door.gateways["b"].port}
    stat = door.stat("a")
    assert int(stat["lbtot"]) >= 1 and int(stat["wredis"]) == int(stat["lbtot"])  # a was picked, refused, redispatched


def test_drain_waits_for_the_request_in_flight(start_front_door: Callable[..., FrontDoor]) -> None:
    door = start_front_door()
    a = door.gateways["a"]
    a.delay_s = 2.0
    assert sh(set_server_state_command(door.socket, BACKEND, "b", "drain")).returncode == 0
    slow: list[int] = []
    request = threading.Thread(target=lambda: slow.append(door.post()[0]))
    request.start()  # goes to a, the only gateway not drained
    door.wait_for(lambda: door.servers()["a"]["current_sessions"] == 1, 3, "the slow request on a")
    assert sh(set_server_state_command(door.socket, BACKEND, "b", "ready")).returncode == 0
    assert sh(set_server_state_command(door.socket, BACKEND, "a", "drain")).returncode == 0
    assert door.servers()["a"] | {"address": "-", "port": 0} == {
        "name": "a",
        "address": "-",
        "port": 0,
        "operational_state": "up",
        "admin_state": "drain",
        "current_sessions": 1,
    }
    a.delay_s = 0.0
    posts = a.posts
    assert [door.post()[0] for _ in range(4)] == [200] * 4
    assert a.posts == posts  # nothing new for the drained gateway
    start = time.monotonic()
    waited = sh(wait_idle_command(door.socket, BACKEND, "a", 10))
    assert waited.returncode == 0, waited.stderr
    assert 0.5 < time.monotonic() - start < 5  # it did wait for the slow request, and no longer
    request.join(timeout=10)
    assert slow == [200]
    assert door.servers()["a"]["current_sessions"] == 0
    assert sh(set_server_state_command(door.socket, BACKEND, "a", "ready")).returncode == 0
    assert door.servers()["a"]["admin_state"] == "ready"

    refused = sh(set_server_state_command(door.socket, BACKEND, "nope", "drain"))
    assert refused.returncode == 1 and "No such server" in refused.stderr
    timed_out = sh(wait_idle_command(door.socket, BACKEND, "nope", 1))
    assert timed_out.returncode == 1 and "no such server" in timed_out.stderr


def test_no_gateway_left_is_an_openai_shaped_503(start_front_door: Callable[..., FrontDoor]) -> None:
    """Every gateway in maint in both backends (the fallback has its own servers: README, the front door)."""
    door = start_front_door()
    for backend in (BACKEND, paths.HAPROXY_FALLBACK_BACKEND):
        for name in ("a", "b"):
            assert sh(set_server_state_command(door.socket, backend, name, "maint")).returncode == 0
    assert {server["admin_state"] for server in door.servers().values()} == {"maint"}
    status, body, headers = door.post()
    assert status == 503 and headers.get("retry-after") == "1"
    assert body["error"]["code"] == "no_backend_available" and body["error"]["type"] == "server_error"


def test_reload_drops_no_request(start_front_door: Callable[..., FrontDoor]) -> None:
    door = start_front_door()
    door.gateways["a"].delay_s = door.gateways["b"].delay_s = 0.05
    statuses: list[int | str] = []
    stop = threading.Event()

    def load() -> None:
        while not stop.is_set() and len(statuses) < 400:  # bounded
            try:
                statuses.append(door.post(timeout=5)[0])
            except OSError as error:
                statuses.append(repr(error))

    clients = [threading.Thread(target=load) for _ in range(3)]
    for client in clients:
        client.start()
    time.sleep(0.3)
    door.process.send_signal(signal.SIGUSR2)  # what `systemctl reload haproxy` does (after haproxy -c)
    door.wait_for(lambda: door.log.read_text().count("Loading success") >= 2, 5, "the reload")
    time.sleep(0.5)
    stop.set()
    for client in clients:
        client.join(timeout=10)
    assert len(statuses) > 10 and set(statuses) == {200}, [s for s in statuses if s != 200][:5]


def test_metrics_endpoint(start_front_door: Callable[..., FrontDoor]) -> None:
    door = start_front_door()
    connection = http.client.HTTPConnection("127.0.0.1", door.metrics_port, timeout=5)
    connection.request("GET", "/metrics")
    response = connection.getresponse()
    text = response.read().decode()
    assert response.status == 200
    assert re.search(r'^haproxy_server_status\{proxy="gateways",server="a",state="UP"\} 1$', text, re.MULTILINE)
    connection.request("GET", "/")
    assert connection.getresponse().status == 404
    connection.close()


def test_tls_http2_and_rate_limit(start_front_door: Callable[..., FrontDoor]) -> None:
    door = start_front_door(front_door_tls=True, front_door_rate_limit_per_s=1)  # at most 10 requests in 10 s
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    context.set_alpn_protocols(["h2", "http/1.1"])
    with socket.create_connection(("127.0.0.1", door.port), timeout=5) as raw, context.wrap_socket(raw) as tls:
        assert tls.selected_alpn_protocol() == "h2"

    answers = []
    for _ in range(11):
        connection = http.client.HTTPSConnection("127.0.0.1", door.port, timeout=5, context=ssl._create_unverified_context())
        connection.request("POST", "/v1/embeddings", body=BODY, headers={"Content-Type": "application/json"})
        response = connection.getresponse()
        answers.append((response.status, response.getheader("Retry-After"), json.loads(response.read())))
        connection.close()
    assert [status for status, _, _ in answers] == [200] * 10 + [429]
    _, retry_after, body = answers[-1]
    assert retry_after == "10"
    assert body["error"]["code"] == "rate_limit_exceeded" and body["error"]["type"] == "requests"
    assert set(body["error"]) == {"message", "type", "param", "code"}


def test_every_check_failing_falls_back_to_the_same_gateways(start_front_door: Callable[..., FrontDoor]) -> None:
    """Both gateways fail their checks (/ready 503) while they still serve: the front door sends to
    them unchecked (the fallback backend) instead of answering 503 no_backend_available; a gateway
    that then dies is skipped by the connection-failure retry; once checks pass the pool is back."""
    door = start_front_door()
    for gateway in door.gateways.values():
        gateway.ready = 503
    door.wait_for(lambda: {s["operational_state"] for s in door.servers().values()} == {"down"}, 5, "both gateways DOWN")
    answers = [door.post() for _ in range(6)]
    assert [status for status, _, _ in answers] == [200] * 6, answers
    assert {body["served_by"] for _, body, _ in answers} == {door.gateways["a"].port, door.gateways["b"].port}
    fallback = parse_stat_csv(sh(runtime_command(door.socket, f"show stat {paths.HAPROXY_FALLBACK_BACKEND} 4 -1")).stdout.splitlines())
    assert sum(int(fallback[(paths.HAPROXY_FALLBACK_BACKEND, name)]["lbtot"]) for name in ("a", "b")) >= 6
    door.gateways["a"].stop()  # dead: refused connections, retried on b
    assert [door.post()[0] for _ in range(4)] == [200] * 4
    door.gateways["b"].ready = 200
    door.wait_for(lambda: door.servers()["b"]["operational_state"] == "up", 5, "gateway b back in the pool")
    before = door.gateways["b"].posts
    assert [door.post()[0] for _ in range(3)] == [200] * 3 and door.gateways["b"].posts == before + 3


def post_many(door: FrontDoor, count: int, timeout: float = 15) -> list[tuple[int, dict[str, Any], dict[str, str], float]]:
    """``count`` concurrent POSTs; (status, body, headers, seconds) each."""
    out: list[tuple[int, dict[str, Any], dict[str, str], float]] = []
    lock = threading.Lock()

    def one() -> None:
        start = time.monotonic()
        status, body, headers = door.post(timeout=timeout)
        with lock:
            out.append((status, body, headers, time.monotonic() - start))

    threads = [threading.Thread(target=one) for _ in range(count)]
    for thread in threads:
        thread.start()
        time.sleep(0.02)  # in order: the first ones take the slots
    for thread in threads:
        thread.join(timeout=timeout + 5)
    return out


def assert_busy_429(body: dict[str, Any], headers: dict[str, str]) -> None:
    assert headers.get("retry-after") == "1", headers
    assert body["error"]["code"] == "rate_limit_exceeded" and body["error"]["type"] == "requests"
    assert set(body["error"]) == {"message", "type", "param", "code"} and "x-front-door-busy" not in headers


def test_every_gateway_busy_queues_briefly_then_429_not_503(start_front_door: Callable[..., FrontDoor]) -> None:
    """One request at a time per gateway (maxconn 1), 400 ms in the queue at most: of 5 requests
    that each take 1.5 s, 2 are served, the others wait 400 ms and get a 429 with Retry-After (HAProxy's
    queue timeout is a 503 otherwise). Busy gateways stay UP. A gateway's own 503 still passes as a 503."""
    door = start_front_door(front_door_server_maxconn=1, front_door_queue_timeout_ms=400, front_door_max_queue=0)
    for gateway in door.gateways.values():
        gateway.delay_s = 1.5
    answers = post_many(door, 5)
    assert sorted(status for status, *_ in answers) == [200, 200, 429, 429, 429], answers
    for status, body, headers, seconds in answers:
        if status == 429:
            assert_busy_429(body, headers)
            assert 0.3 < seconds < 1.4, seconds  # waited in the queue, then answered before a slot freed
    assert {s["operational_state"] for s in door.servers().values()} == {"up"}
    for gateway in door.gateways.values():
        gateway.delay_s, gateway.post = 0.0, 503
    status, body, headers = door.post()
    assert status == 503 and body["error"]["code"] == "triton_unavailable" and "retry-after" not in headers


def test_a_full_front_door_queue_is_a_429_at_once(start_front_door: Callable[..., FrontDoor]) -> None:
    """maxconn 1 per gateway and at most 1 request queued: the 4th of 6 slow requests and after get a 429 at once."""
    door = start_front_door(front_door_server_maxconn=1, front_door_queue_timeout_ms=5000, front_door_max_queue=1)
    for gateway in door.gateways.values():
        gateway.delay_s = 1.5
    answers = post_many(door, 6)
    statuses = sorted(status for status, *_ in answers)
    assert statuses == [200, 200, 200, 429, 429, 429], answers
    for status, body, headers, seconds in answers:
        if status == 429:
            assert_busy_429(body, headers)
            assert seconds < 0.5, seconds  # not queued: refused at once
