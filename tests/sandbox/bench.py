"""``make bench``: converge 1 host, converge 3 hosts, a no-op re-run, model bytes; one JSON line at the end.

Runs on its own sandbox (``bench``), fresh hosts each time (images reused). The model comes through
``model_fetch: controller`` from tests/hub_server.py (a local Hub stand-in serving the tiny model)
so ``upstream_model_bytes`` counts the bytes the Hub really served; ``sent_model_bytes`` adds up
the model-file uploads that changed a host (sizes from the sandbox's lock).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path, PurePosixPath
from typing import Any

from tests.hub_server import HubServer, Repo
from tests.sandbox import fleet

NAME = "bench"
PYINFRA = str(Path(sys.executable).parent / "pyinfra")
UPLOAD = re.compile(r"Upload model file (\S+)")  # the name carries the deploy's prefix: search, not match


def _log(message: str) -> None:
    print(f"bench: {message}", file=sys.stderr, flush=True)


def _deploy(hub: HubServer, cache: Path) -> tuple[float, dict[str, Any]]:
    """One timed ``pyinfra ... --json`` run on the bench fleet; returns (seconds, results)."""
    env = {**os.environ, "SANDBOX_NAME": NAME, "HF_ENDPOINT": hub.url}
    cmd = [PYINFRA, "inventories/sandbox.py", "deploys/all.py", "-y", "--json",
           "--data", "model_fetch=controller", "--data", f"model_cache_dir={cache}"]
    started = time.monotonic()
    proc = subprocess.run(cmd, cwd=fleet.ROOT, env=env, capture_output=True, text=True)
    elapsed = time.monotonic() - started
    if proc.returncode != 0:
        sys.stderr.write(proc.stderr[-4000:])
        raise SystemExit(f"bench: the deploy failed (rc {proc.returncode}); see above")
    return elapsed, json.loads(proc.stdout)["results"]


def _changed(results: dict[str, Any]) -> int:
    return sum(len(op["success"]) for op in results["operations"])


def _sent_bytes(results: dict[str, Any], sizes: dict[str, int]) -> int:
    """Bytes of model files uploaded to hosts: each changed upload counts its file once per host."""
    total = 0
    for op in results["operations"]:
        match = UPLOAD.search(op["name"])
        if match and op["success"]:
            name = PurePosixPath(match.group(1)).name
            path = next(p for p in sizes if PurePosixPath(p).name == name)
            total += sizes[path] * len(op["success"])
    return total


def _fresh_fleet(hosts: int) -> dict[str, Any]:
    fleet.down(NAME)
    return fleet.up(NAME, hosts)


def main() -> int:
    """Measure and print the JSON line."""
    state = _fresh_fleet(1)
    model = state["model"]
    mirror = Path(model["model_mirror"])
    lock = json.loads((fleet.ROOT / model["model_lock_file"]).read_text())["models"][model["model_repo_id"]][model["model_revision"]]
    sizes = {path: entry["size"] for path, entry in lock.items()}
    repo = Repo(model["model_repo_id"], {p: (mirror / p).read_bytes() for p in sizes}, commit=model["model_revision"])
    work = fleet.state_dir(NAME)
    with HubServer([repo]) as hub:
        _log("converge 1 host")
        converge_1, _ = _deploy(hub, work / "cache-1")
        state = _fresh_fleet(3)
        hub.body_bytes = 0
        _log("converge 3 hosts")
        converge_3, results = _deploy(hub, work / "cache-3")
        upstream = hub.body_bytes
        sent = _sent_bytes(results, sizes)
        _log("no-op re-run on 3 hosts")
        noop, again = _deploy(hub, work / "cache-3")
    fleet.down(NAME)
    line = {
        "converge_1_s": round(converge_1, 1),
        "converge_3_s": round(converge_3, 1),
        "noop_3_s": round(noop, 1),
        "noop_3_changed": _changed(again),
        "upstream_model_bytes": upstream,
        "sent_model_bytes": sent,
    }
    print(json.dumps(line))
    return 0


if __name__ == "__main__":
    sys.exit(main())
