"""No secret in pyinfra's output at any of its flags (issue 11 item 2), the real CLI on @fake hosts.

The NGC key (the registry password, on ``docker login``'s stdin) is a canary; a fresh GPU host logs
in and pulls. Alertmanager's receivers (issue 28: a webhook URL's token, a Slack-style webhook, the
SMTP password), from a real SOPS vault, are canaries too: the fleet has a monitoring host, whose
Alertmanager config (0600, through stdin) holds them. Each flag that prints more (``-v`` …
``-vvv``, ``--debug``, ``--debug-all``, ``--debug-facts``, ``--debug-operations``: operations'
global arguments, ``_stdin`` included), ``--diff``, ``--dry`` and ``debug-inventory`` runs once; no
canary may appear, and where the flag prints operations' arguments the secret's place shows
``<secret, N characters>`` (deploys/core/redact.py Secret). The proxy password has the same test in
tests/test_credentials.py.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from tests.test_alertmanager import CANARIES, RECEIVERS
from tests.test_plan import CANARY_KEY, PYINFRA, ROOT, hub, run_fleet  # noqa: F401 (hub: a fixture)
from tests.test_vault import encrypt, make_key

FLAGS = ["-v", "-vv", "-vvv", "--debug", "--debug-all", "--debug-facts", "--debug-operations", "--diff", "--dry"]

# A GPU host whose metrics endpoints listen on its private address, and the monitoring host with the vault.
SCRAPED_GPU = 'f.host("gpu-ubuntu", {"gpu": True, **f.SETTINGS, "triton_metrics_address": "10.0.0.3", "monitoring_exporter_address": "10.0.0.3"}, f.responses(f.UBUNTU_2404_RELEASE, f.H100_X2, f.DF_PLENTY))'
MONITOR = 'f.host("mon1", {{**f.SETTINGS, "secrets_file": {vault!r}, "monitoring_exporter_address": "10.0.0.9", "monitoring_listen_address": "10.0.0.9"}}, f.responses(f.DEBIAN_13_RELEASE, None, f.DF_PLENTY))'


@pytest.fixture()
def alert_vault(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A SOPS vault holding Alertmanager's receivers (the canaries), and the age key that opens it."""
    if shutil.which("age-keygen") is None:
        pytest.skip("needs age-keygen (tests/system_deps.sh installs age)")
    key = tmp_path / "age.key"
    public = make_key(key)
    monkeypatch.setenv("SOPS_AGE_KEY_FILE", str(key))
    return encrypt(yaml.safe_dump({"alertmanager": RECEIVERS}), public, tmp_path / "secrets.sops.yaml")


@pytest.mark.parametrize("flag", FLAGS)
def test_no_flag_prints_the_registry_password_or_a_receivers_secret(tmp_path, hub, alert_vault, flag) -> None:
    result = run_fleet(tmp_path, hub, SCRAPED_GPU, flag, monitoring=MONITOR.format(vault=str(alert_vault)))
    assert result.returncode == 0, result.stderr[-3000:]
    out = result.stdout + result.stderr
    assert CANARY_KEY not in out
    assert not [canary for canary in CANARIES if canary in out]
    if flag != "--debug-facts":  # that one prints the facts and stops before operations
        assert "Docker login to nvcr.io" in out  # the login was planned: the secret was there to leak
        assert "Check the Alertmanager config with amtool" in out  # and the receivers' config
    if flag == "--debug-operations":
        assert f"<secret, {len(CANARY_KEY)} characters>" in out  # shown as a secret, not silently absent


def test_debug_inventory_prints_no_registry_password(tmp_path, hub, alert_vault) -> None:
    run_fleet(tmp_path, hub, SCRAPED_GPU, monitoring=MONITOR.format(vault=str(alert_vault)))  # writes tmp_path/inventory.py
    env = {"NGC_API_KEY": CANARY_KEY, "PATH": "/usr/bin:/bin", "SOPS_AGE_KEY_FILE": str(tmp_path / "age.key")}
    proc = subprocess.run(
        [PYINFRA, str(tmp_path / "inventory.py"), "debug-inventory"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    out = proc.stdout + proc.stderr
    assert "gpu-ubuntu" in out and CANARY_KEY not in out
    assert not [canary for canary in CANARIES if canary in out]


def test_bad_receivers_end_the_run_with_one_line_and_no_change(tmp_path, hub, monkeypatch) -> None:
    if shutil.which("age-keygen") is None:
        pytest.skip("needs age-keygen (tests/system_deps.sh installs age)")
    key = tmp_path / "age.key"
    monkeypatch.setenv("SOPS_AGE_KEY_FILE", str(key))
    bad = {"receivers": [{"name": "pager", "webhook_url": f"http://pager.example.com/hook?token={CANARIES[0]}"}]}
    vault = encrypt(yaml.safe_dump({"alertmanager": bad}), make_key(key), tmp_path / "secrets.sops.yaml")
    result = run_fleet(tmp_path, hub, SCRAPED_GPU, monitoring=MONITOR.format(vault=str(vault)))
    assert result.returncode != 0
    wanted = f"vault {vault}: alertmanager.receivers[0].webhook_url must be an https:// URL (http:// only to a loopback address)"
    assert wanted in result.stderr, result.stderr[-2000:]
    assert "Traceback" not in result.stderr and CANARIES[0] not in result.stdout + result.stderr
    assert [line for line in result.stderr.splitlines() if "alertmanager.receivers" in line] == [
        line for line in result.stderr.splitlines() if wanted in line
    ]
    assert json.loads(result.stdout or "{}").get("results", {}).get("totals", {}).get("success", 0) == 0
