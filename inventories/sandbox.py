"""The sandbox fleet (``make sandbox`` / ``python -m tests.sandbox up``): hosts read from its state file.

Group ``sandbox``; static settings in ``group_data/sandbox.py``, per-sandbox paths and ports here.
``SANDBOX_NAME`` picks the sandbox (default: ``default``).
"""

import json
import os
from pathlib import Path

from deploys.lib.settings import SettingsError

_NAME = os.environ.get("SANDBOX_NAME", "default")
_STATE_FILE = Path(__file__).resolve().parent.parent / ".sandbox" / _NAME / "state.json"

if not _STATE_FILE.exists():
    raise SettingsError(f"sandbox {_NAME!r} is not up ({_STATE_FILE} missing): run make sandbox / python -m tests.sandbox up")

_STATE = json.loads(_STATE_FILE.read_text())
# The vault's age key belongs to the sandbox; a key the user set stays in charge.
os.environ.setdefault("SOPS_AGE_KEY_FILE", _STATE["age_key"])


def _host_data(host: dict) -> dict:
    """Connection data of one host plus the settings that depend on this sandbox's state."""
    return {
        "ssh_hostname": "127.0.0.1",
        "ssh_port": host["ssh_port"],
        "ssh_user": "root",
        "ssh_key": _STATE["ssh_key"],
        "ssh_known_hosts_file": _STATE["known_hosts"],
        "ssh_strict_host_key_checking": "yes",
        "sandbox_container": host["container"],
        "secrets_file": _STATE["secrets_file"],
        **_STATE["model"],  # model_mirror, model_repo_id, model_revision, model_lock_file
        "registry_host": _STATE["registry"]["host"],
        "triton_image": _STATE["triton_image"],
        "docker_insecure_registries": [_STATE["registry"]["host"]],
        # Hosts are containers without CAP_SYS_RESOURCE: memlock cannot go past their hard limit.
        "triton_ulimit_memlock": host.get("memlock_hard", -1),
        # The gateway listens on the host's private address (published on the controller's
        # loopback), so bearer auth is on: the key is the vault's gateway_api_keys.
        **({"gateway_listen_address": host["address"]} if host.get("address") else {}),
    }


sandbox = [(host["name"], _host_data(host)) for host in _STATE["hosts"]]
# The front door (python -m tests.sandbox up --front-door): HAProxy in front of every host's gateway.
if _STATE.get("front_door"):
    front_door = [(_STATE["front_door"]["name"], _host_data(_STATE["front_door"]))]
