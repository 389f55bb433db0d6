"""The gateway's health path, off the busy path: a Triton probe and an HTTP responder, each on a thread
of its own, so the front door's check is answered in milliseconds while the event loop is saturated
with embedding work (issue 24: a /ready that waited behind the request path failed HAProxy's 500 ms
check under load, and the front door took live gateways out of the pool).

- :class:`TritonProbe` asks Triton (its own gRPC channel, synchronous, deadline ``deadline_s``) every
  ``interval_s`` whether the model is READY, and records the answer in :class:`Health`; on each
  transition to READY it first calls ``on_ready`` (the gateway reads Triton's max_batch_size), so
  "ready" is never published before the gateway knows what Triton takes.
- The event loop beats :meth:`Health.beat` every :data:`BEAT_S`; a loop that has not beaten for
  :data:`LOOP_STALL_S` is wedged (not merely busy: a saturated loop still turns many times a second).
- :class:`HealthResponder` serves ``GET /ready`` (200 when the probe's last answer is READY, fresh,
  and the loop beats; else 503 with the reason) and ``GET /health`` (200 while the loop beats) on
  ``health_port``, from the recorded state only: it never waits on Triton or on the loop.

Dead vs busy, as the front door sees it: a dead process refuses the connection; a dead Triton turns
/ready 503 within one probe interval; a stopped host does not answer; a busy gateway answers 200.
"""

from __future__ import annotations

import json
import logging
import math
import socket
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

log = logging.getLogger("embeddings_gateway")

PROBE_INTERVAL_S = 0.5  # a dead Triton shows in /ready within this (plus the deadline when it hangs)
PROBE_DEADLINE_S = 1.0
SLOW_PROBES = 3  # a READY Triton that misses the deadline this many times in a row is hung, not busy
PROBE_STALE_S = 5.0  # a probe answer older than this (the probe thread stuck) is not trusted: 503
BEAT_S = 0.25
LOOP_STALL_S = 10.0  # no loop turn for this long: wedged, not busy (a busy loop turns every few ms)
REQUEST_TIMEOUT_S = 2.0  # a health client that sends nothing is dropped after this


class Health:
    """The state the responder reads: the probe's last answer and the loop's last beat (one lock,
    held for an assignment or a read: the responder never waits on anything else)."""

    def __init__(self, model_name: str) -> None:
        self.model_name = model_name
        self._lock = threading.Lock()
        self._triton: tuple[float, bool, str] = (-math.inf, False, "Triton not checked yet")
        self._beat = time.monotonic()

    def beat(self) -> None:
        with self._lock:
            self._beat = time.monotonic()

    def set_triton(self, ok: bool, reason: str) -> None:
        with self._lock:
            self._triton = (time.monotonic(), ok, reason)

    def triton(self) -> tuple[bool, str]:
        """The probe's last answer (READY?, why not), '' reason when ready."""
        with self._lock:
            return self._triton[1], self._triton[2]

    def live(self) -> tuple[bool, str]:
        """Is the event loop turning?"""
        with self._lock:
            stalled = time.monotonic() - self._beat
        if stalled > LOOP_STALL_S:
            return False, f"the gateway's event loop has not run for {stalled:.1f}s"
        return True, ""

    def ready(self) -> tuple[bool, str]:
        """Ready to take requests: the loop turns and Triton's model was READY at the last (fresh) probe."""
        ok, reason = self.live()
        if not ok:
            return ok, reason
        with self._lock:
            checked, ok, reason = self._triton
        age = time.monotonic() - checked
        if ok and age > PROBE_STALE_S:
            return False, f"the last Triton probe is {age:.1f}s old"
        return ok, reason


class TritonProbe(threading.Thread):
    """Every ``interval_s``: is ``model_name`` READY in Triton at ``url`` (gRPC, its own channel)?"""

    def __init__(
        self,
        health: Health,
        url: str,
        on_ready: Callable[[Any], None],
        interval_s: float = PROBE_INTERVAL_S,
        deadline_s: float = PROBE_DEADLINE_S,
    ) -> None:
        super().__init__(name="triton-probe", daemon=True)
        self.health, self.url, self.on_ready = health, url, on_ready
        self.interval_s, self.deadline_s = interval_s, deadline_s
        self.stopped = threading.Event()
        self.slow = 0  # missed deadlines in a row

    def probe(self, client: Any, was_ok: bool) -> tuple[bool, str]:
        """(READY?, why not). What counts as a failure: a refused or broken connection, a model not
        READY, an error reading its config: at once. A missed deadline only after SLOW_PROBES in a
        row: a Triton saturated with inference answers late, and is not dead."""
        model = self.health.model_name
        try:
            ok = bool(client.is_model_ready(model, client_timeout=self.deadline_s))
        except Exception as error:
            status = str(error.status() or "") if callable(getattr(error, "status", None)) else ""
            if "DEADLINE_EXCEEDED" in status and was_ok:
                self.slow += 1
                if self.slow < SLOW_PROBES:
                    return True, ""
                return False, f"Triton at {self.url} missed {self.slow} probe deadlines of {self.deadline_s:g}s in a row"
            return False, f"Triton at {self.url} did not answer ({type(error).__name__})"
        self.slow = 0
        if not ok:
            return False, f"model {model} is not ready in Triton"
        if not was_ok:
            try:
                self.on_ready(client)  # before READY is published: the gateway knows what Triton takes
            except Exception as error:
                return False, f"Triton at {self.url} did not give the model config ({type(error).__name__})"
        return True, ""

    def run(self) -> None:
        import tritonclient.grpc as grpcclient

        client = grpcclient.InferenceServerClient(self.url)
        was_ok = False
        try:
            while not self.stopped.is_set():
                started = time.monotonic()
                ok, reason = self.probe(client, was_ok)
                if ok != was_ok:
                    log.info("model %s %s", self.health.model_name, "READY in Triton" if ok else f"not ready: {reason}")
                was_ok = ok
                self.health.set_triton(ok, reason)
                self.stopped.wait(max(0.0, self.interval_s - (time.monotonic() - started)))
        finally:
            client.close()

    def stop(self) -> None:
        self.stopped.set()
        self.join(timeout=self.deadline_s + 1)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # a check cut short (timeout, reset): nothing to log


class HealthResponder:
    """``GET /ready`` and ``GET /health`` on ``address:port``, answered on threads from :class:`Health`."""

    def __init__(self, health: Health, address: str, port: int, sock: socket.socket | None = None) -> None:
        """Binds ``address:port`` (OSError when taken), or serves ``sock``, a socket already bound and
        listening there (a worker's own, SO_REUSEPORT: embeddings_gateway/app.py)."""
        self.health = health
        host = "127.0.0.1" if address == "localhost" else address
        server_class = type("Server", (_Server,), {"address_family": socket.AF_INET6 if ":" in host else socket.AF_INET})
        if sock is None:
            self.server = server_class((host, port), self._handler())
        else:
            self.server = server_class((host, port), self._handler(), bind_and_activate=False)
            self.server.socket.close()
            self.server.socket = sock
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.5}, name="health", daemon=True)

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        health = self.health

        class Handler(BaseHTTPRequestHandler):
            timeout = REQUEST_TIMEOUT_S  # a client that sends nothing does not hold a thread

            def log_message(self, *args: Any) -> None:
                pass

            def answer(self, status: int, body: dict[str, Any]) -> None:
                payload = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.send_header("Connection", "close")
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(payload)

            def do_GET(self) -> None:
                path = self.path.split("?", 1)[0]
                if path == "/ready":
                    ok, reason = health.ready()
                    self.answer(200 if ok else 503, {"ready": ok, "model": health.model_name, **({"reason": reason} if reason else {})})
                elif path == "/health":
                    ok, reason = health.live()
                    self.answer(200 if ok else 503, {"status": "ok" if ok else "stalled", **({"reason": reason} if reason else {})})
                else:
                    self.answer(404, {"error": "only /ready and /health here"})

            do_HEAD = do_GET

        return Handler

    def start(self) -> None:
        self.thread.start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
