"""The sandbox fleet (``make sandbox`` / ``python -m tests.sandbox up``): hosts read from its state file.

Group ``sandbox``; static settings in ``group_data/sandbox.py``, per-sandbox paths and ports here.
``SANDBOX_NAME`` picks the sandbox (default: ``default``).
"""

import json
import os
from pathlib import Path

from deploys.core.settings import SettingsError

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


def _with_monitoring(host: dict) -> dict:
    """With a monitoring host every endpoint Prometheus scrapes listens on the host's private address."""
    if not _STATE.get("monitoring") or not host.get("address"):
        return {}
    return {
        "monitoring_exporter_address": host["address"],  # node exporter (every host)
        "triton_metrics_address": host["address"],  # Triton's metrics port only; HTTP and gRPC stay on loopback
        "front_door_metrics_address": host["address"],
        "monitoring_listen_address": host["address"],  # Prometheus on mon1, published on the controller's loopback
    }


sandbox = [(host["name"], {**_host_data(host), **_with_monitoring(host)}) for host in _STATE["hosts"]]
# The front door (python -m tests.sandbox up --front-door): HAProxy in front of every host's gateway.
if _STATE.get("front_door"):
    front_door = [(_STATE["front_door"]["name"], {**_host_data(_STATE["front_door"]), **_with_monitoring(_STATE["front_door"])})]
# The monitoring host (python -m tests.sandbox up --monitoring): Prometheus scraping every host.
if _STATE.get("monitoring"):
    # Short intervals so the e2e tests see scrapes and alerts in seconds (production: the defaults).
    # Alertmanager: groups sent at once and changes every 2 s; a drain's silence ends 20 s after its bounds.
    _FAST = {
        "monitoring_scrape_interval_s": 2,
        "monitoring_model_not_ready_for_s": 10,
        "monitoring_host_down_for_s": 10,
        "monitoring_alert_group_wait_s": 1,
        "monitoring_alert_group_interval_s": 2,
        "monitoring_silence_margin_s": 20,
        "monitoring_backend_drained_for_s": 5,
        "monitoring_alertmanager_listen_address": _STATE["monitoring"]["address"],  # published on the controller's loopback
    }
    monitoring = [(_STATE["monitoring"]["name"], {**_host_data(_STATE["monitoring"]), **_with_monitoring(_STATE["monitoring"]), **_FAST})]
# The registry cache (python -m tests.sandbox up --registry-cache): docker-registry on cache1 proxying
# the stand-in for nvcr.io; the Triton hosts then pull through it, anonymously, over plain HTTP on
# the sandbox network. It proxies the registry's anonymous, read-only view (tests/sandbox/fleet.py
# _ensure_upstream: distribution 2.8 sends its credential only to token-auth upstreams).
if _STATE.get("registry_cache"):
    _CACHE = _STATE["registry_cache"]
    registry_cache = [
        (
            _CACHE["name"],
            {
                **_host_data(_CACHE),
                **_with_monitoring(_CACHE),
                "registry_cache_listen_address": _CACHE["address"],
                "registry_cache_insecure": True,
                "registry_cache_upstream_url": _STATE["upstream"]["url"],
                "allow_plain_http": True,
            },
        )
    ]
