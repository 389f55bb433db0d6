"""The embeddings gateway on a host (embeddings_gateway/, a systemd unit): the files it ships, its API
keys, its config and unit files, where the host reaches it, and the commands the gateway step runs.

API keys live in the vault (``gateway_api_keys``); a host gets only their sha256, one a line, in a
0600 file of the service user. The verify step needs a key of its own to call the gateway: it is
derived on the controller (HMAC of the vault's keys and the host name), so it is stable across runs
and changes when the keys rotate; its hash joins the file and the key itself is written 0600 for
root (deploys/triton/verify_run.py).
"""

from __future__ import annotations

import hashlib
import hmac
import os
from fnmatch import fnmatch
from pathlib import Path
from typing import Any

from deploys.core import operations, paths, render, vault
from deploys.core.paths import Layout
from deploys.core.repo import CONTRACT_SRC, GATEWAY_SRC, REPO_ROOT
from deploys.core.settings import Settings, SettingsError
from deploys.gateway import render as gateway_render
from deploys.triton.triton_service import probe_endpoint

SERVICE_USER = "embeddings-gateway"
STEP = "Embeddings gateway"  # the gateway step's name, in the lines printed past a bound
LOOPBACK = ("127.0.0.1", "::1")
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


def beyond_loopback(s: Settings) -> bool:
    """Whether the gateway listens where other machines can reach it."""
    return s.gateway_listen_address not in LOOPBACK


def probe_url(s: Settings) -> str:
    """The gateway's base URL as the host itself reaches it."""
    address = s.gateway_listen_address
    address = "127.0.0.1" if address == "0.0.0.0" else "::1" if address == "::" else address
    return f"http://{render.url_host(address)}:{s.gateway_listen_port}"


def api_keys(s: Settings) -> list[str]:
    """The vault's gateway API keys (plaintext, controller memory only); one line if auth is
    needed and there are none."""
    # Beyond loopback the keys are required: the vault must then decrypt (one line if it cannot).
    exists = Path(s.secrets_file).exists()
    needed = beyond_loopback(s)
    keys = vault.load(s.secrets_file, required=("gateway_api_keys",) if needed and exists else ()).gateway_api_keys if exists else []
    if not keys and needed:
        raise SettingsError(
            f"host {s.host}: setting gateway_listen_address={s.gateway_listen_address!r} is beyond loopback, so the gateway "
            f"needs API keys; add gateway_api_keys (a list) with `sops edit {s.secrets_file}`, or listen on 127.0.0.1"
        )
    return [key.unmask() for key in keys]


def verify_key(s: Settings, keys: list[str]) -> str:
    """The host's own key for the verify step ('' when auth is off): HMAC-SHA256 of the host name
    under the vault's keys, so no key of the vault ever reaches the host."""
    if not keys:
        return ""
    secret = "\n".join(sorted(keys)).encode()
    return "verify-" + hmac.new(secret, f"gateway-verify:{s.host}".encode(), hashlib.sha256).hexdigest()


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
        # systemd kills past this: above the gateway's own grace for requests in flight.
        stop_timeout_s=int(s.gateway_shutdown_timeout_s) + 5,
    )


def ready_args(s: Settings) -> dict[str, Any]:
    """deploys/core/operations.py:wait_ready's arguments: the gateway's /ready until
    gateway_ready_timeout_s (each try bounded); past it one line naming the step and the host, its
    journal, exit 1."""
    limit = s.gateway_ready_timeout_s
    line = f"{STEP} on host {s.host}: not ready within {limit}s at {probe_url(s)}/ready (gateway_ready_timeout_s); last log lines:"
    return {
        "url": f"{probe_url(s)}/ready",
        "timeout_s": limit,
        "failure_line": line,
        "logs": f"journalctl -u {paths.GATEWAY_UNIT} -n 30 --no-pager",
    }


def wait_ready_command(s: Settings) -> str:
    """:func:`ready_args` as one shell poll, for the roll plans' commands (deploys/triton/rolling.py)."""
    return operations.ready_shell(**ready_args(s))
