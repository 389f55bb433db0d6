"""Triton's restricted APIs: the control APIs (model repository, model config, logging, trace,
shared memory) answer only requests carrying the host's key header; health, metadata, inference
and metrics stay open.

The key is generated on the host (:func:`generate_command`: urandom, never on a command line, never
on the controller), kept 0600 root at ``layout.triton_key`` and mounted read-only into the
container, whose command reads it (templates/triton/docker-compose.yml.j2): Triton has no file option for
it, so the key is in tritonserver's argv inside the container (root on the host sees it in /proc).

A changed key restarts Triton: the container carries the key file's sha256 as a label
(:data:`KEY_LABEL`, filled in by compose from :data:`KEY_SHA256_ENV`, which
:func:`key_sha256_env` sets on every ``docker compose up``), and the triton step compares it with
the file's sha256 (a fact). The release id does not depend on the key, so rollback and rollout
are unchanged.
"""

from __future__ import annotations

import hashlib
import shlex

from deploys.triton.render import TRITON_KEY_LABEL as KEY_LABEL
from deploys.triton.render import TRITON_KEY_SHA256_ENV as KEY_SHA256_ENV
from deploys.triton.render import TRITON_RESTRICTED_APIS as RESTRICTED_APIS
from embeddinggemma import TRITON_KEY_HEADER as HEADER

__all__ = ["HEADER", "KEY_LABEL", "KEY_SHA256_ENV", "RESTRICTED_APIS"]
KEY_BYTES = 32  # random bytes, written as 64 hex digits
EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()  # an empty key file: made again


def generate_command(key_dir: str, key_file: str) -> str:
    """Make the key on the host when the file is missing or empty (a second run changes nothing):
    32 random bytes as hex, 0600 in a 0700 directory, written atomically; the key is on no command
    line and in no output."""
    d, f, tmp = shlex.quote(key_dir), shlex.quote(key_file), shlex.quote(f"{key_file}.tmp")
    return (
        f"umask 077; mkdir -p {d} && chmod 700 {d} && "
        f"{{ [ -s {f} ] || {{ head -c {KEY_BYTES} /dev/urandom | od -An -tx1 | tr -d ' \\n' > {tmp} && mv -f {tmp} {f}; }}; }} && "
        f"chmod 600 {f}"
    )


def key_sha256_env(key_file: str) -> str:
    """``NAME="$(sha256 of the key file)"``, an assignment in front of ``timeout … docker compose up``: compose puts
    it in the container's KEY_LABEL (empty when the file is missing: Triton then refuses to start)."""
    return f"{KEY_SHA256_ENV}=\"$(sha256sum {shlex.quote(key_file)} 2>/dev/null | cut -d' ' -f1)\""


def changed_reason(container_labels: dict[str, str], key_sha256: str | None) -> str | None:
    """Why a running container must restart for the key: its label is not the key file's sha256
    (None: it carries none, a release from before restricted APIs, or it matches)."""
    if KEY_LABEL not in container_labels:
        return None
    if container_labels[KEY_LABEL] != (key_sha256 or ""):
        return "Triton API key changed"
    return None


def restrict(behind_front_door: bool, serving: bool, gateway_takes_key: bool, verify_takes_key: bool) -> bool:
    """Whether this run gives Triton its restricted-API options: always, except on the first run of
    an upgrade behind a front door. There a serving host rolls Triton and checks it, through the
    gateway already running and the verify code already on the host, before this run's gateway and
    verify steps update them; if they predate the key (``gateway_takes_key``: the host's
    gateway.json names a key file; ``verify_takes_key``: its verify code knows ``--triton-key-file``),
    a restricted Triton fails that check, the roll goes back, and the host would never move. That
    run keeps Triton open; the next one, with both updated, restricts it."""
    if not (behind_front_door and serving):
        return True
    return gateway_takes_key and verify_takes_key
