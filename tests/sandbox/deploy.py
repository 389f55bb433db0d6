"""Run the real deploy against a named sandbox fleet (shared by the e2e test modules)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PYINFRA = str(Path(sys.executable).parent / "pyinfra")


def sandbox_env(name: str, ngc_key: str) -> dict[str, str]:
    """The environment of a run on sandbox ``name``: its inventory, a canary NGC key, and none of
    the operator's own age key (the sandbox's vault key is used)."""
    env = {k: v for k, v in os.environ.items() if k not in ("SOPS_AGE_KEY_FILE", "SOPS_AGE_KEY")}
    env.update({"SANDBOX_NAME": name, "NGC_API_KEY": ngc_key, "PYTHONUNBUFFERED": "1"})
    return env


def run_deploy(name: str, ngc_key: str, *args: str, timeout: int = 900, deploy: str = "deploys/all.py") -> subprocess.CompletedProcess[str]:
    """``pyinfra inventories/sandbox.py DEPLOY -y ARGS`` against sandbox ``name``."""
    cmd = [PYINFRA, "inventories/sandbox.py", deploy, "-y", *args]
    return subprocess.run(cmd, cwd=ROOT, env=sandbox_env(name, ngc_key), capture_output=True, text=True, timeout=timeout)
