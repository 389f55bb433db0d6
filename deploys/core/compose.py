"""The ``docker compose`` invocation every role that runs a compose project shares (Triton's
release, dcgm-exporter): one spelling, so the project name and file always travel together."""

from __future__ import annotations

import shlex


def compose_command(compose_file: str, *args: str, project: str) -> str:
    """``docker compose -p PROJECT -f FILE ARGS`` (the caller names its project: Triton's is
    deploys/triton/render.py:COMPOSE_PROJECT, dcgm-exporter's deploys/monitoring/render.py's)."""
    return " ".join(["docker compose", "-p", project, "-f", shlex.quote(compose_file), *args])
