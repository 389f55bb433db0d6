"""``make screenshot``: Prometheus's graph page on the sandbox fleet under load, photographed by
headless Chromium (Debian's ``chromium``), for docs/monitoring.md.

Needs a sandbox with a front door and a monitoring host (``make sandbox``). A bounded load loop
(4 workers, at most 90 s, loopback only) goes through the front door while Prometheus scrapes;
then Chromium loads the graph of requests/s per host and writes the PNG. Debian's prometheus package
ships the classic web UI (``/classic/graph``), not the React one.

    python -m tests.sandbox.screenshot [--name default] [--out tests/data/screenshots/prometheus-under-load.png]
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path
from urllib.parse import urlencode

import httpx

from tests.sandbox import fleet
from tests.support.load import run_threads

QUERY = 'sum by (instance) (rate(embeddings_gateway_requests_total{job="gateway", endpoint="embeddings", code="200"}[30s]))'
LOAD_S = 90.0
SHOT_AFTER_S = 60.0  # of load: the graph then shows the rise and the plateau


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.sandbox.screenshot", description=__doc__.split("\n\n")[0])
    parser.add_argument("--name", default="default", help="sandbox name (default: default)")
    parser.add_argument("--out", default=str(fleet.ROOT / "tests/data/screenshots/prometheus-under-load.png"))
    args = parser.parse_args(argv)
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    state = fleet.load_state(args.name)
    if chromium is None:
        print("screenshot: no chromium here: apt-get install --no-install-recommends chromium", file=sys.stderr)
        return 2
    if not state or not state.get("monitoring") or not state.get("front_door"):
        print(f"screenshot: sandbox {args.name!r} needs a front door and a monitoring host: run make sandbox", file=sys.stderr)
        return 2
    front, prometheus = fleet.front_door_url(state), fleet.prometheus_url(state)
    key = fleet.api_key_file(args.name).read_text().strip()
    client = httpx.Client(timeout=30)

    def call() -> int:
        body = {"model": fleet.MODEL_NAME, "input": ["How do I rotate an NGC key?", "Triton serves embeddings."]}
        response = client.post(f"{front}/v1/embeddings", json=body, headers={"Authorization": f"Bearer {key}"})
        response.raise_for_status()
        return 2

    result: dict[str, object] = {}
    load = threading.Thread(
        target=lambda: result.update(r=run_threads(call, targets=[front], concurrency=4, max_requests=100_000, max_seconds=LOAD_S)),
        daemon=True,
    )
    load.start()
    time.sleep(SHOT_AFTER_S)
    page = f"{prometheus}/classic/graph?" + urlencode({"g0.expr": QUERY, "g0.tab": "0", "g0.range_input": "5m", "g0.stacked": "0"})
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    shot = subprocess.run(
        [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", "--window-size=1400,900",
         "--virtual-time-budget=20000", f"--screenshot={out}", page],
        capture_output=True, text=True, timeout=180,
    )  # fmt: skip
    load.join(timeout=LOAD_S + 30)
    if shot.returncode != 0 or not out.exists():
        print(f"screenshot: chromium failed (exit {shot.returncode}): {shot.stderr[-500:]}", file=sys.stderr)
        return 1
    print(f"screenshot: {out} ({out.stat().st_size} bytes) of {page}; load: {result.get('r')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
