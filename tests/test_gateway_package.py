"""The gateway's host copy: what the gateway step ships (deploys/gateway/logic.py:shipped_files) is the
embeddings_gateway package and the model's contract (embeddinggemma.py), nothing of verify/; so a
change to the parity check leaves the gateway's code digest as it is (and restarts no gateway), and
each host copy (the gateway's, verify's) runs from its shipped files alone."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

from deploys.core.repo import CONTRACT_SRC, GATEWAY_SRC, REPO_ROOT, VERIFY_SRC
from deploys.gateway import logic as gateway


def copy_tree(root: Path) -> Path:
    """verify/, embeddings_gateway/ and embeddinggemma.py of this checkout under ``root`` (caches left out)."""
    for source in (VERIFY_SRC, GATEWAY_SRC):
        shutil.copytree(source, root / source.name, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    shutil.copy(CONTRACT_SRC, root / CONTRACT_SRC.name)
    return root


def test_the_gateway_ships_its_package_and_the_contract_and_nothing_of_verify() -> None:
    shipped = gateway.shipped_files()
    assert "embeddings_gateway/app.py" in shipped and "embeddings_gateway/__main__.py" in shipped  # the unit's entry
    assert "embeddinggemma.py" in shipped
    assert not [name for name in shipped if name.startswith("verify/")], shipped
    assert all(path.is_relative_to(GATEWAY_SRC) or path == CONTRACT_SRC for path in shipped.values()), shipped
    # The lock goes up on its own (and decides the pip install), not with the code.
    assert not [name for name in shipped if "requirements" in name], shipped


def test_a_parity_change_leaves_the_gateway_digest_and_a_gateway_change_does_not(tmp_path: Path) -> None:
    root = copy_tree(tmp_path / "checkout")
    before = gateway.code_digest(root)
    assert before == gateway.code_digest(REPO_ROOT)  # the copy is the checkout's code
    with (root / "verify" / "parity.py").open("a") as parity:
        parity.write("\n# a new parity check\n")
    (root / "verify" / "new_check.py").write_text("CHECK = 1\n")
    assert gateway.code_digest(root) == before
    # The digest can move: the gateway's own code, the shared contract and the lock each change it.
    for changed in ("embeddings_gateway/app.py", "embeddinggemma.py", "embeddings_gateway/requirements.txt"):
        copy = copy_tree(tmp_path / changed.replace("/", "-").replace(".", "-"))
        with (copy / changed).open("a") as file:
            file.write("\n# changed\n")
        assert gateway.code_digest(copy) != before, changed


def shipped_copy(root: Path, files: dict[str, Path]) -> Path:
    for name, path in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(path, root / name)
    return root


PROBE = """
import importlib, sys
for name in sys.argv[1:]:
    importlib.import_module(name)
print(sorted({m.split('.')[0] for m in sys.modules if m.split('.')[0] in ('verify', 'deploys', 'embeddings_gateway', 'embeddinggemma', 'tests')}))
print(sorted({getattr(sys.modules[m], '__file__', '') or '' for m in sys.modules if m.split('.')[0] in ('verify', 'embeddings_gateway', 'embeddinggemma')}))
"""


def imports_from(base: Path, modules: list[str]) -> tuple[list[str], list[str]]:
    """Import ``modules`` in a fresh interpreter run in ``base`` (as the unit and the verify step run
    them): the top-level packages that got imported, and the files they came from."""
    result = subprocess.run(
        [sys.executable, "-c", PROBE, *modules], cwd=base, capture_output=True, text=True, timeout=120, env={"PATH": "/usr/bin:/bin"}
    )
    assert result.returncode == 0, result.stderr[-2000:]
    packages, files = (eval(line) for line in result.stdout.splitlines())
    return packages, files


def test_the_gateway_copy_runs_from_its_shipped_files_alone(tmp_path: Path) -> None:
    base = shipped_copy(tmp_path / "gateway", gateway.shipped_files())
    packages, files = imports_from(
        base, ["embeddings_gateway.app", "embeddings_gateway.api", "embeddings_gateway.tei", "embeddings_gateway.health"]
    )
    assert packages == ["embeddinggemma", "embeddings_gateway"]
    assert all(f.startswith(str(base)) for f in files), files
    check = subprocess.run([sys.executable, "-m", "embeddings_gateway", "--help"], cwd=base, capture_output=True, text=True, timeout=120)
    assert check.returncode == 0 and "--config" in check.stdout, check.stderr


def test_the_verify_copy_runs_from_verify_and_the_contract(tmp_path: Path) -> None:
    files = {f"verify/{p.relative_to(VERIFY_SRC).as_posix()}": p for p in VERIFY_SRC.rglob("*.py") if "__pycache__" not in p.parts}
    base = shipped_copy(tmp_path / "verify", {**files, CONTRACT_SRC.name: CONTRACT_SRC})
    packages, found = imports_from(base, ["verify.parity", "verify.fleet", "verify.samples"])
    assert packages == ["embeddinggemma", "verify"]
    assert all(f.startswith(str(base)) for f in found), found


def test_gateway_workers_reach_the_host_config_and_the_unit_stops_through_the_supervisor() -> None:
    """gateway_workers renders into the config the host program reads (parse_config takes it as is;
    0, the default, is decided on the host from its cores), and the unit sends SIGTERM to the main
    process only (KillMode=mixed): with workers, the supervisor passes it on once to each."""
    from deploys.core import paths, settings
    from embeddings_gateway.api import parse_config

    for value in (0, 3):
        s = settings.parse("gpu-01", {"gateway_workers": value})
        assert parse_config(json.loads(gateway.config_text(s, paths.layout(s), auth=False))).workers == value
    s = settings.parse("gpu-01", {})
    unit = gateway.unit_text(s, paths.layout(s))
    assert "\nKillMode=mixed\n" in unit and "ExecReload=/bin/kill -HUP $MAINPID" in unit


def test_the_gateway_roll_is_bounded_by_its_stop_timeout_not_a_flat_constant() -> None:
    """The roll's restart bound follows gateway_shutdown_timeout_s (stop, a SIGKILL as long again, the
    start): the default 10 s grace bounds it at 60 s (was 120), a 1 s grace at 42 s, and the drain's
    silence shrinks with it."""
    from types import SimpleNamespace

    from deploys.core import paths, rolling, settings

    host = SimpleNamespace(name="gpu-01")
    for grace, bound in ((10, 60), (1, 42), (60, 160)):
        s = settings.parse("gpu-01", {"gateway_shutdown_timeout_s": grace})
        unit = gateway.unit_text(s, paths.layout(s))
        assert f"\nTimeoutStopSec={grace + 5}\n" in unit
        plan = gateway.gateway_roll_plan(host, ("front1",), s)
        assert plan.start.startswith(f"timeout {bound} systemctl restart ")
        assert plan.start_timeout_s == s.gateway_ready_timeout_s + bound
        assert (
            rolling.silence_bound_s(plan, 1, 20)
            == s.rollout_drain_timeout_s + s.rollout_restore_timeout_s + 4 * 15 + plan.start_timeout_s + 20
        )


def test_the_gateway_serves_on_uvloop_from_its_lock() -> None:
    """uvicorn runs the gateway on uvloop (libuv's loop: less CPU per request than asyncio's, make
    bench's gateway_c32_cpu_ms_per_embedding), which the host's hashed lock installs; a loop uvicorn
    cannot load would stop the gateway at start, so both must hold together."""
    import importlib.util

    from deploys.core import paths, settings
    from embeddings_gateway.api import parse_config
    from embeddings_gateway.app import uvicorn_config

    s = settings.parse("gpu-01", {})
    config = uvicorn_config(object(), parse_config(json.loads(gateway.config_text(s, paths.layout(s), auth=False))))
    assert config.loop == "uvloop" and importlib.util.find_spec("uvloop") is not None
    pins = (REPO_ROOT / "embeddings_gateway" / "requirements.txt").read_text()
    assert "\nuvloop==" in pins
