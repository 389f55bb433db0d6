"""No secret in pyinfra's output at any of its flags (issue 11 item 2), the real CLI on @fake hosts.

The NGC key (the registry password, on ``docker login``'s stdin) is a canary; a fresh GPU host logs
in and pulls. Each flag that prints more (``-v`` … ``-vvv``, ``--debug``, ``--debug-all``,
``--debug-facts``, ``--debug-operations``: operations' global arguments, ``_stdin`` included),
``--diff``, ``--dry`` and ``debug-inventory`` runs once; the canary must not appear, and where the
flag prints operations' arguments the secret's place shows ``<secret, N characters>``
(deploys/core/redact.py Secret). The proxy password has the same test in tests/test_credentials.py.
"""

from __future__ import annotations

import subprocess

import pytest

from tests.test_plan import CANARY_KEY, FRESH_GPU, PYINFRA, ROOT, hub, run_fleet  # noqa: F401 (hub: a fixture)

FLAGS = ["-v", "-vv", "-vvv", "--debug", "--debug-all", "--debug-facts", "--debug-operations", "--diff", "--dry"]


@pytest.mark.parametrize("flag", FLAGS)
def test_no_flag_prints_the_registry_password(tmp_path, hub, flag) -> None:
    result = run_fleet(tmp_path, hub, FRESH_GPU, flag)
    assert result.returncode == 0, result.stderr[-3000:]
    out = result.stdout + result.stderr
    assert CANARY_KEY not in out
    if flag != "--debug-facts":  # that one prints the facts and stops before operations
        assert "Docker login to nvcr.io" in out  # the login was planned: the secret was there to leak
    if flag == "--debug-operations":
        assert f"<secret, {len(CANARY_KEY)} characters>" in out  # shown as a secret, not silently absent


def test_debug_inventory_prints_no_registry_password(tmp_path, hub) -> None:
    run_fleet(tmp_path, hub, FRESH_GPU)  # writes tmp_path/inventory.py
    env = {"NGC_API_KEY": CANARY_KEY, "PATH": "/usr/bin:/bin"}
    proc = subprocess.run(
        [PYINFRA, str(tmp_path / "inventory.py"), "debug-inventory"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "gpu-ubuntu" in proc.stdout + proc.stderr and CANARY_KEY not in proc.stdout + proc.stderr
