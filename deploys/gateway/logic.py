"""The embeddings gateway on a host (embeddings_gateway/, a systemd unit): the files it ships, its key
file, its config and unit files, and the commands the gateway step runs. Where the host reaches the
gateway, its readiness poll and its keys are deploys/core/endpoints.py's: other roles call it too.

API keys live in the vault (``gateway_api_keys``); a host gets only their sha256, one a line, in a
0600 file of the service user. The verify step needs a key of its own to call the gateway: it is
derived on the controller (HMAC of the vault's keys and the host name: endpoints.verify_key), so it
is stable across runs and changes when the keys rotate; its hash joins the file and the key itself
is written 0600 for root (deploys/triton/verify_run.py).
"""

from __future__ import annotations

import hashlib
import os
from fnmatch import fnmatch
from pathlib import Path
from typing import Any

from deploys.core import paths
from deploys.core.endpoints import probe_endpoint, wait_ready_command
from deploys.core.paths import Layout
from deploys.core.repo import CONTRACT_SRC, GATEWAY_SRC, REPO_ROOT
from deploys.core.rolling import RollPlan, plan_for
from deploys.core.settings import Settings
from deploys.gateway import render as gateway_render

SERVICE_USER = "embeddings-gateway"
REQUIREMENTS = GATEWAY_SRC / "requirements.txt"  # the gateway runtime's hashed lock (`make locks`)
# files.sync of GATEWAY_SRC leaves these out (pyinfra matches ``exclude`` against the local path,
# ``exclude_dir`` against the directory's path under the source): the lock goes up on its own.
CODE_EXCLUDE = ["*.pyc", "*.json", "*.log", "*/requirements.in", "*/requirements.txt"]
CODE_EXCLUDE_DIR = ["__pycache__", "*/__pycache__"]


def shipped_files(root: Path = REPO_ROOT) -> dict[str, Path]:
    """Every file of code the gateway step ships, path under the gateway's base → the file here: the
    embeddings_gateway package (what files.sync uploads with CODE_EXCLUDE) and embeddinggemma.py. No
    file of verify/: a change to the parity check changes nothing a gateway runs, so restarts none."""
    package = root / GATEWAY_SRC.name
    found: dict[str, Path] = {}
    for directory, dirnames, filenames in os.walk(package):
        here = Path(directory)
        dirnames[:] = [d for d in dirnames if not any(fnmatch((here / d).relative_to(package).as_posix(), x) for x in CODE_EXCLUDE_DIR)]
        for name in filenames:
            if not any(fnmatch(str(here / name), x) for x in CODE_EXCLUDE):
                found[(here / name).relative_to(root).as_posix()] = here / name
    found[CONTRACT_SRC.name] = root / CONTRACT_SRC.name
    return dict(sorted(found.items()))


def code_digest(root: Path = REPO_ROOT) -> str:
    """sha256 of the shipped code (each file's host path and content, with the runtime's lock): it
    changes exactly when the gateway step would upload changed code or pins, and so restart gateways."""
    digest = hashlib.sha256()
    for name, path in [*shipped_files(root).items(), ("requirements.txt", root / REQUIREMENTS.relative_to(REPO_ROOT))]:
        digest.update(f"{name}\0{hashlib.sha256(path.read_bytes()).hexdigest()}\n".encode())
    return digest.hexdigest()


def key_hashes_text(keys: list[str], host_key: str) -> str:
    """The gateway's key file: sha256 of every accepted key, sorted, one a line ('' when auth is off)."""
    hashes = sorted({hashlib.sha256(k.encode()).hexdigest() for k in [*keys, host_key] if k})
    return "".join(f"{h}\n" for h in hashes)


def config_text(s: Settings, layout: Layout, auth: bool) -> str:
    """The gateway's JSON config (templates/gateway/gateway.json.j2); ``auth`` false: no key file (loopback only)."""
    return gateway_render.gateway_config(
        s,
        triton_grpc_url=probe_endpoint(s, s.triton_grpc_port),
        tokenizer_dir=layout.tokenizer_dir,
        api_key_sha256_file=layout.gateway.api_keys if auth else "",
        triton_key_file=layout.gateway.triton_key,
    )


def unit_text(s: Settings, layout: Layout) -> str:
    """The gateway's systemd unit (templates/gateway/embeddings-gateway.service.j2)."""
    g = layout.gateway
    return gateway_render.gateway_unit(
        user=SERVICE_USER,
        venv=g.venv,
        work_dir=g.base,
        config_file=g.config,
        stop_timeout_s=stop_timeout_s(s),
    )


def stop_timeout_s(s: Settings) -> int:
    """The unit's TimeoutStopSec: systemd kills past it; above the gateway's own grace for requests in flight."""
    return int(s.gateway_shutdown_timeout_s) + 5


def restart_bound_s(s: Settings) -> int:
    """What ``systemctl restart`` of the gateway may take: the stop (SIGTERM; past TimeoutStopSec a
    SIGKILL, waited for as long again) and the start (Type=exec: done once the process runs), with 30 s
    for systemd itself. It bounds the roll's start, so a drain's silence follows the settings
    (deploys/core/rolling.py:silence_bound_s); was a flat 120 s."""
    return 2 * stop_timeout_s(s) + 30


def gateway_roll_plan(host: Any, doors: tuple[str, ...], s: Settings) -> RollPlan:
    """The gateway step's roll: restart the gateway (its files are already in place), /ready."""
    return plan_for(
        host,
        doors,
        s,
        what="embeddings gateway",
        start=f"timeout {restart_bound_s(s)} systemctl restart {paths.GATEWAY_UNIT} && ( {wait_ready_command(s)} )",
        start_timeout_s=s.gateway_ready_timeout_s + restart_bound_s(s),
    )
