"""Releases, rollback and the rollout driver without a sandbox.

- The release commands the triton and rollback steps send (hard links, the atomic `current` switch,
  pruning) and the TritonReleases fact, run by a real shell on a real directory tree.
- deploys/rollback.py and deploys/releases.py through the pyinfra CLI on `@fake` converged hosts.
- The rollout driver (`python -m deploys.rollout`) end to end on a converged `@fake` fleet: waves,
  state read-back, summary table and JSON report. The failure paths (a release that does not come
  READY, automatic rollback) need real Triton hosts: tests/test_e2e_faults.py.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from deploys.lib import paths, render, settings
from deploys.lib.release import link_command, prune_command, release_compose_file, release_id, release_labels, switch_command, to_prune
from deploys.lib.settings import SettingsError
from deploys.tools import rollout
from facts.triton import TritonReleases, parse_releases
from tests.test_plan import CANARY_KEY, CONVERGED_CPU, CONVERGED_GPU, ROOT, hub  # noqa: F401 (fixture)

STORE = "models/emb/1"


def sh(command: str, cwd: Path) -> str:
    proc = subprocess.run(["bash", "-c", command], cwd=cwd, capture_output=True, text=True, timeout=30)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def fact(root: Path) -> dict:
    """The TritonReleases fact's command run by bash, parsed by the fact's own parser."""
    return parse_releases(sh(TritonReleases().command(str(root)), root).splitlines())


def make_release(root: Path, release: str, config: str) -> None:
    """What the triton step does for a new release: its files, then links of the store's files."""
    rel = root / "releases" / release / "models/emb"
    (rel / "1").mkdir(parents=True)
    (rel / "config.pbtxt").write_text(config)
    (root / "releases" / release / "docker-compose.yml").write_text(f"# {release}\n")
    for name in ("model.onnx", "model.onnx_data"):
        sh(link_command(str(root / STORE / name), str(rel / "1" / name)), root)


def test_release_lifecycle_on_a_real_filesystem(tmp_path: Path) -> None:
    root = tmp_path / "triton"
    (root / STORE).mkdir(parents=True)
    for name in ("model.onnx", "model.onnx_data"):
        (root / STORE / name).write_text(f"v1 {name}")
    assert fact(root) == {"current": None, "previous": None, "releases": []}

    make_release(root, "aaa", "config a")
    sh(switch_command(str(root), "aaa", keep_previous=False), root)
    assert fact(root) == {"current": "aaa", "previous": None, "releases": ["aaa"]}
    # Hard links: the release's files are the store's inodes, no copy.
    assert (root / "releases/aaa/models/emb/1/model.onnx_data").stat().st_ino == (root / STORE / "model.onnx_data").stat().st_ino

    # The model step replaces a store file by rename: the live release keeps its own bytes.
    (root / STORE / "model.onnx_data.partial").write_text("v2 data")
    sh(f"mv -f {STORE}/model.onnx_data.partial {STORE}/model.onnx_data", root)
    make_release(root, "bbb", "config b")
    os.utime(root / "releases/aaa", (1, 1))  # activation order is the directories' mtime
    sh(switch_command(str(root), "bbb", keep_previous=False), root)
    assert fact(root) == {"current": "bbb", "previous": "aaa", "releases": ["bbb", "aaa"]}
    assert (root / "releases/aaa/models/emb/1/model.onnx_data").read_text() == "v1 model.onnx_data"
    assert (root / "current/models/emb/1/model.onnx_data").read_text() == "v2 data"
    # Switching to the live release again changes nothing.
    sh(switch_command(str(root), "bbb", keep_previous=False), root)
    assert fact(root)["previous"] == "aaa"

    # Rollback: current goes back, previous stays, so a second rollback is a no-op.
    sh(switch_command(str(root), "aaa", keep_previous=True), root)
    assert fact(root) == {"current": "aaa", "previous": "aaa", "releases": ["aaa", "bbb"]}
    assert (root / "current/models/emb/config.pbtxt").read_text() == "config a"
    assert (root / "current/models/emb/1/model.onnx_data").read_text() == "v1 model.onnx_data"

    # A switch to a release that is not there fails and leaves current alone.
    proc = subprocess.run(["bash", "-c", switch_command(str(root), "zzz", keep_previous=False)], cwd=root, capture_output=True)
    assert proc.returncode != 0 and fact(root)["current"] == "aaa"

    sh(prune_command(str(root), ["bbb"]), root)
    assert fact(root)["releases"] == ["aaa"]
    assert (root / STORE / "model.onnx").read_text() == "v1 model.onnx"  # pruning never touches the store


@pytest.mark.parametrize(
    "releases,current,previous,keep,doomed",
    [
        (["a", "b", "c"], "n", "a", 3, ["c"]),
        (["a", "b"], "n", "a", 3, []),
        (["x", "y", "old"], "n", "old", 2, ["x", "y"]),  # previous is never pruned, whatever its age
        ([], "n", None, 3, []),
    ],
)
def test_to_prune(releases, current, previous, keep, doomed) -> None:
    assert to_prune(releases, current, previous, keep) == doomed


def test_waves() -> None:
    inv = rollout.Inventory(hosts=["g1", "g2", "g3", "s1"], groups={"gpu": ["g1", "g2", "g3"], "staging": ["s1"]})
    assert rollout.waves(inv, "", 2) == [["g1"], ["g2", "g3"], ["s1"]]
    assert rollout.waves(inv, "staging", 1) == [["s1"], ["g1"], ["g2"], ["g3"]]
    assert rollout.waves(inv, "g2", 5) == [["g2"], ["g1", "g3", "s1"]]
    with pytest.raises(SettingsError, match="rollout_canary='nope' names no host or group"):
        rollout.waves(inv, "nope", 1)


# -- through the pyinfra CLI on @fake hosts --------------------------------------------------------


def write_inventory(tmp_path: Path, data: dict, hosts_code: str) -> Path:
    inventory = tmp_path / "inventory.py"
    inventory.write_text(
        "import json\nimport os\nfrom tests import fake_hosts as f\n\n"
        f"f.SETTINGS.update(json.loads({json.dumps(json.dumps(data))}))\n"
        "fleet = [\n" + hosts_code + "\n]\n"
    )
    return inventory


def fake_env(url: str) -> dict[str, str]:
    return {**os.environ, "NGC_API_KEY": CANARY_KEY, "HF_ENDPOINT": url, "PYINFRA_FAKE_DELAY": "0", "PYINFRA_FAKE_DELAY_JITTER": "0"}


def pyinfra(inventory: Path, deploy: str, url: str, *args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(Path(sys.executable).parent / "pyinfra"), str(inventory), deploy, "-y", *args],
        cwd=ROOT,
        env={**fake_env(url), **(env or {})},
        capture_output=True,
        text=True,
        timeout=300,
    )


WITH_PREVIOUS = '["current releases/{live}", "previous releases/0ld0ld0ld0ld", "release 1760000400 releases/{live}/", "release 1760000300 releases/0ld0ld0ld0ld/"]'


def live_release(tmp_path: Path, url: str, inventory: Path) -> str:
    out = tmp_path / "state"
    proc = pyinfra(inventory, "deploys/releases.py", url, env={"TRITON_RELEASES_OUT": str(out)})
    assert proc.returncode == 0, proc.stderr[-2000:]
    return json.loads((out / "@fake/cpu-debian.json").read_text())["current"]


def test_releases_reads_what_each_host_serves(tmp_path, hub) -> None:
    url, data = hub
    inventory = write_inventory(tmp_path, data, CONVERGED_CPU)
    out = tmp_path / "state"
    proc = pyinfra(inventory, "deploys/releases.py", url, "--json", env={"TRITON_RELEASES_OUT": str(out)})
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert json.loads(proc.stdout)["results"]["totals"]["success"] == 0  # read-only
    state = json.loads((out / "@fake/cpu-debian.json").read_text())
    assert state["current"] and state["serving"] == state["current"] and state["model_ready"] is True
    assert f"releases: current {state['current']}, previous none, serving {state['current']} (READY)" in proc.stderr


def test_rollback_plans_the_switch_and_a_restart(tmp_path, hub) -> None:
    url, data = hub
    live = live_release(tmp_path, url, write_inventory(tmp_path, data, CONVERGED_CPU))
    drifted = f'f.drifted({CONVERGED_CPU}, "readlink current", {WITH_PREVIOUS.replace("{live}", live)})'
    proc = pyinfra(write_inventory(tmp_path, data, drifted), "deploys/rollback.py", url, "--json", "-vv")
    assert proc.returncode == 0, proc.stderr[-3000:]
    changed = sorted(op["name"] for op in json.loads(proc.stdout)["results"]["operations"] if op["success"])
    assert changed == [
        "Rollback | Start Triton (docker compose up -d)",
        "Rollback | Switch current back to the previous release",
        "Rollback | Wait for model embeddinggemma READY (≤ 600s)",
    ]
    assert f"rollback: release {live} -> 0ld0ld0ld0ld" in proc.stderr
    assert "releases/0ld0ld0ld0ld/docker-compose.yml up -d" in proc.stderr
    assert "Triton (re)start: serves release " + live in proc.stderr


def test_rollback_without_a_previous_release_is_one_line(tmp_path, hub) -> None:
    url, data = hub
    proc = pyinfra(write_inventory(tmp_path, data, CONVERGED_CPU), "deploys/rollback.py", url)
    assert proc.returncode != 0
    errors = [line for line in proc.stderr.splitlines() if "pyinfra error" in line]
    assert len(errors) == 1 and "host @fake/cpu-debian: no previous release to roll back to" in errors[0], proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr


def test_rollout_driver_on_a_converged_fleet(tmp_path, hub) -> None:
    url, data = hub
    inventory = write_inventory(tmp_path, data, CONVERGED_GPU + ",\n" + CONVERGED_CPU)
    proc = subprocess.run(
        [sys.executable, "-m", "deploys.rollout", str(inventory), "--report-dir", str(tmp_path / "reports"), "--batch-size", "5"],
        cwd=ROOT,
        env=fake_env(url),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "rollout: canary: @fake/gpu-ubuntu" in proc.stderr and "rollout: batch 1: @fake/cpu-debian" in proc.stderr
    [report] = (tmp_path / "reports/rollouts").glob("*.json")
    hosts = {h["host"]: h for h in json.loads(report.read_text())["hosts"]}
    assert set(hosts) == {"@fake/gpu-ubuntu", "@fake/cpu-debian"}
    for h in hosts.values():
        assert h["verdict"] == "pass" and not h["rolled_back"]
        assert h["old"] == h["new"] == h["serving"] and h["ready"]
    assert hosts["@fake/gpu-ubuntu"]["new"] != hosts["@fake/cpu-debian"]["new"]  # GPU and CPU configs differ
    summary = proc.stderr[proc.stderr.index("Rollout summary") :]
    assert "host" in summary and "old release" in summary and summary.count(" pass ") == 2


def test_rollout_bad_canary_is_one_line(tmp_path, hub) -> None:
    url, data = hub
    inventory = write_inventory(tmp_path, data, CONVERGED_CPU)
    proc = subprocess.run(
        [sys.executable, "-m", "deploys.rollout", str(inventory), "--canary", "nope"],
        cwd=ROOT,
        env=fake_env(url),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2
    [line] = proc.stderr.strip().splitlines()
    assert line.startswith("rollout error: setting rollout_canary='nope' names no host or group of the inventory; use one of ")
    assert "fleet" in line and line.endswith(" or a host name")


# -- release id and compose file --------------------------------------------------------------------


def test_release_id_follows_config_compose_inputs_and_model_files() -> None:
    base = settings.parse("h", {"gpu": False})
    weights = {"model.onnx": "a" * 64, "model.onnx_data": "b" * 64}
    first = release_id(base, False, weights)
    assert first == release_id(settings.parse("h", {"gpu": False}), False, dict(weights)) and len(first) == 12
    others = {
        release_id(settings.parse("h", {"gpu": False, "triton_max_batch_size": 16}), False, weights),  # config
        release_id(settings.parse("h", {"gpu": False, "triton_http_port": 7000}), False, weights),  # compose
        release_id(base, False, {**weights, "model.onnx_data": "c" * 64}),  # model file
        release_id(base, True, weights),  # GPU profile
    }
    assert first not in others and len(others) == 4


def test_release_compose_file_mounts_its_own_models_read_only() -> None:
    import yaml

    s = settings.parse("h", {"gpu": False})
    live = paths.layout(s).release("0123456789ab")
    service = yaml.safe_load(release_compose_file(s, False, live))["services"]["triton"]
    assert service["volumes"] == [
        f"{s.triton_dir}/releases/0123456789ab/models:/models:ro",
        f"{s.triton_dir}/triton-api:/run/triton-api:ro",  # the host's restricted-API key, not per release
    ]
    assert service["labels"][render.DEPLOY_HASH_LABEL] == "0123456789ab"
    # The release's labels, plus the key file's sha256 that compose fills in at `up` (deploys/lib/triton_api.py).
    assert service["labels"] == {**release_labels(s, False, "0123456789ab"), render.TRITON_KEY_LABEL: "${TRITON_API_KEY_SHA256:-}"}
    # Everything else is what render.compose_file renders for these settings.
    plain = yaml.safe_load(render.compose_file(s, False))["services"]["triton"]
    assert {k: v for k, v in service.items() if k not in ("volumes", "labels")} == {
        k: v for k, v in plain.items() if k not in ("volumes", "labels")
    }


def test_config_template_setting() -> None:
    from deploys.lib.render import RenderError

    with pytest.raises(SettingsError, match="triton_config_template='../etc/passwd.j2' is invalid"):
        settings.parse("h", {"triton_config_template": "../etc/passwd.j2"})
    s = settings.parse("h", {"gpu": False, "triton_config_template": "missing.pbtxt.j2"})
    with pytest.raises(RenderError, match="template missing.pbtxt.j2: TemplateNotFound"):
        render.model_config(s, False)


def test_rollout_stops_after_a_failed_canary(tmp_path, hub) -> None:
    # The canary's READY wait fails (canned failure of the wait loop); the fake hosts' facts cannot
    # move `current`, so the driver sees no new release to roll back from: verdict failed, and the
    # second host is never deployed. (The rollback path runs on real hosts: tests/test_e2e_faults.py.)
    url, data = hub
    failing = (
        '(lambda h: (h[0], {**h[1], "fake_responses": {"+ 600 )); while": {"success": False, "stderr": ["Triton on host @fake/cpu-debian: model embeddinggemma not READY within 600s"]}, '
        '**h[1]["fake_responses"]}}))(' + CONVERGED_CPU + ")"
    )
    other = CONVERGED_CPU.replace('"cpu-debian"', '"cpu-other"')
    inventory = write_inventory(tmp_path, data, failing + ",\n" + other)
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "deploys.rollout",
            str(inventory),
            "--report-dir",
            str(tmp_path / "reports"),
            "--data",
            "triton_max_batch_size=16",
        ],
        cwd=ROOT,
        env=fake_env(url),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 1, proc.stderr[-3000:]
    assert "rollout: the canary failed; stopping (hosts left untouched: 1)" in proc.stderr
    assert "deploys/all.py -y --json --limit @fake/cpu-other" not in proc.stderr
    [report] = (tmp_path / "reports/rollouts").glob("*.json")
    hosts = {h["host"]: h for h in json.loads(report.read_text())["hosts"]}
    assert hosts["@fake/cpu-debian"]["verdict"] == "failed" and hosts["@fake/cpu-debian"]["message"] == "deploy failed"
    assert hosts["@fake/cpu-debian"]["rolled_back"] is False
    assert hosts["@fake/cpu-other"]["verdict"] == "skipped" and hosts["@fake/cpu-other"]["wave"] is None


def test_rollout_bad_setting_is_one_line_before_anything_runs(tmp_path, hub) -> None:
    url, data = hub
    inventory = write_inventory(tmp_path, data, CONVERGED_CPU)
    proc = subprocess.run(
        [sys.executable, "-m", "deploys.rollout", str(inventory), "--data", "triton_max_batch_size=0"],
        cwd=ROOT,
        env=fake_env(url),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        "rollout error: host @fake/cpu-debian: setting triton_max_batch_size=0 is invalid (allowed: an integer from 1 to 1024); "
        "fix it in the inventory, group_data/ or --data"
    ]
