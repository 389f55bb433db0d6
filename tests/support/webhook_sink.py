"""A stand-in for the pager: an HTTP server on the controller's loopback that records what
Alertmanager's webhook receiver POSTs (its JSON payload: status, groupLabels, alerts…).

Used by tests/test_alertmanager.py (a real Alertmanager on this machine) and the sandbox
(tests/sandbox/: Alertmanager on mon1 reaches it through an SSH reverse tunnel, so it never listens
beyond 127.0.0.1). ``python -m tests.support.webhook_sink PORT`` runs one in the foreground and
prints each notification as one JSON line.
"""

from __future__ import annotations

import json
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


class WebhookSink:
    """Records each POST's path and JSON body; :meth:`alerts` flattens them to (status, alertname, instance)."""

    def __init__(self, port: int = 0) -> None:
        self.received: list[dict[str, Any]] = []
        self._lock = threading.Lock()
        sink = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                try:
                    body = json.loads(self.rfile.read(length) or b"{}")
                except ValueError:
                    body = {"unparsed": True}
                with sink._lock:
                    sink.received.append({"path": self.path, "at": time.time(), "body": body})
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:  # quiet
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", port), Handler)  # loopback only
        self.port = int(self._server.server_address[1])
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def __enter__(self) -> WebhookSink:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()

    def url(self, path: str = "/hook") -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def notifications(self) -> list[dict[str, Any]]:
        with self._lock:
            return [dict(n) for n in self.received]

    def alerts(self) -> list[tuple[str, str, str]]:
        """Every alert of every notification so far: (its status, alertname, instance)."""
        return [
            (a.get("status", ""), a.get("labels", {}).get("alertname", ""), a.get("labels", {}).get("instance", ""))
            for n in self.notifications()
            for a in n["body"].get("alerts", [])
        ]

    def wait_for(self, wanted: tuple[str, str, str], timeout_s: float) -> bool:
        """Until an alert (status, alertname, instance) arrives, at most ``timeout_s``."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if wanted in self.alerts():
                return True
            time.sleep(0.2)
        return wanted in self.alerts()


if __name__ == "__main__":
    with WebhookSink(int(sys.argv[1]) if len(sys.argv) > 1 else 0) as running:
        print(f"webhook sink on {running.url()}", file=sys.stderr, flush=True)
        seen = 0
        try:
            while True:
                now = running.notifications()
                for n in now[seen:]:
                    print(json.dumps(n), flush=True)
                seen = len(now)
                time.sleep(0.5)
        except KeyboardInterrupt:
            pass
