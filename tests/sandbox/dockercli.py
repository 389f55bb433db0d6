"""Thin helpers around the ``docker`` CLI (the daemon runs on this machine)."""

from __future__ import annotations

import json
import subprocess
from typing import Any

LABEL = "triton-embeddinggemma.sandbox"  # every container, network and volume carries it


class SandboxError(RuntimeError):
    """A sandbox step failed; the message is one line meant for the user."""


def docker(*args: str, stdin: str | bytes | None = None, check: bool = True, capture: bool = True) -> str:
    """Run ``docker ARGS``; secrets go through ``stdin`` only. Returns stdout (text)."""
    data = stdin.encode() if isinstance(stdin, str) else stdin
    proc = subprocess.run(["docker", *args], input=data, capture_output=capture)
    if check and proc.returncode != 0:
        err = (proc.stderr or b"").decode(errors="replace").strip().splitlines()
        raise SandboxError(f"docker {args[0]} {args[1] if len(args) > 1 else ''} failed: {err[-1] if err else proc.returncode}")
    return (proc.stdout or b"").decode(errors="replace")


def exists(kind: str, name: str) -> bool:
    """Whether a docker object (image, container, network, volume) named ``name`` exists."""
    return subprocess.run(["docker", kind, "inspect", name], capture_output=True).returncode == 0


def inspect(kind: str, name: str) -> dict[str, Any] | None:
    """``docker KIND inspect NAME`` parsed, or None when it does not exist."""
    proc = subprocess.run(["docker", kind, "inspect", name], capture_output=True)
    if proc.returncode != 0:
        return None
    return json.loads(proc.stdout)[0]


def labelled(kind: str, sandbox: str | None = None) -> list[str]:
    """Names (ids for images) of objects carrying the sandbox label (of one sandbox, or any)."""
    selector = f"label={LABEL}={sandbox}" if sandbox else f"label={LABEL}"
    if kind == "container":
        out = docker("ps", "-a", "--filter", selector, "--format", "{{.Names}}")
    elif kind == "network":
        out = docker("network", "ls", "--filter", selector, "--format", "{{.Name}}")
    elif kind == "volume":
        out = docker("volume", "ls", "--filter", selector, "--format", "{{.Name}}")
    else:
        raise ValueError(kind)
    return [line for line in out.splitlines() if line]
