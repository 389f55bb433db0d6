"""Releases, rollback and the rollout driver without a sandbox.

- The release commands the triton and rollback steps send (hard links, the atomic `current` switch,
  pruning) and the TritonReleases fact, run by a real shell on a real directory tree.
- deploys/rollback.py and deploys/releases.py through the pyinfra CLI on `@fake` converged hosts.
- The rollout driver (`python -m deploys.rollout`) end to end on a converged `@fake` fleet: waves,
  state read-back, summary table and JSON report. The failure paths (a release that does not come
  READY, automatic rollback) need real Triton hosts: tests/test_e2e_faults.py.
- The driver's logic (per-host state reads, an unreachable host, a host dying mid-batch, a timed-out
  run, SIGTERM, which runs get ``--data``) with a fake fleet behind its runner, and its runner's
  timeout on a real child process.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from deploys.core import events, paths, settings
from deploys.core.settings import SettingsError
from deploys.tools import rollout
from deploys.triton import render as triton_render
from deploys.triton.release import link_command, prune_command, release_compose_file, release_id, release_labels, switch_command, to_prune
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
        "import json\nimport os\nfrom tests.support import fake_hosts as f\n\n"
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
    return json.loads(events.state_file(out, "@fake/cpu-debian").read_text())["current"]


def test_releases_reads_what_each_host_serves(tmp_path, hub) -> None:
    url, data = hub
    inventory = write_inventory(tmp_path, data, CONVERGED_CPU)
    out = tmp_path / "state"
    proc = pyinfra(inventory, "deploys/releases.py", url, "--json", env={"TRITON_RELEASES_OUT": str(out)})
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert json.loads(proc.stdout)["results"]["totals"]["success"] == 0  # read-only
    state = json.loads(events.state_file(out, "@fake/cpu-debian").read_text())
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
    assert service["labels"][triton_render.DEPLOY_HASH_LABEL] == "0123456789ab"
    # The release's labels, plus the key file's sha256 that compose fills in at `up` (deploys/triton/triton_api.py).
    assert service["labels"] == {**release_labels(s, False, "0123456789ab"), triton_render.TRITON_KEY_LABEL: "${TRITON_API_KEY_SHA256:-}"}
    # Everything else is what triton_render.compose_file renders for these settings.
    plain = yaml.safe_load(triton_render.compose_file(s, False))["services"]["triton"]
    assert {k: v for k, v in service.items() if k not in ("volumes", "labels")} == {
        k: v for k, v in plain.items() if k not in ("volumes", "labels")
    }


def test_config_template_setting() -> None:
    from deploys.core.render import RenderError

    with pytest.raises(SettingsError, match="triton_config_template='../etc/passwd.j2' is invalid"):
        settings.parse("h", {"triton_config_template": "../etc/passwd.j2"})
    s = settings.parse("h", {"gpu": False, "triton_config_template": "missing.pbtxt.j2"})
    with pytest.raises(RenderError, match="template missing.pbtxt.j2: TemplateNotFound"):
        triton_render.model_config(s, False)


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


# -- the driver's logic with a fake fleet behind its runner -----------------------------------------


# What pyinfra's log (stderr) may carry that the driver must not trip on: other libraries' lines,
# ANSI colour codes, the longest host name a DNS name can have padding every "[host]" prefix, and
# lines that look like the driver's old patterns but say the opposite of the run's events.
LONGEST = ".".join(["h" * 63] * 3) + "." + "h" * 61  # 253 characters
NOISE = (
    "--> Beginning operation run\n"
    f"\x1b[1m[{LONGEST}]\x1b[0m   \x1b[32mSuccess\x1b[0m\n"
    "urllib3.connectionpool: Retrying (Retry(total=2)) after connection broken\n"
    "    [h1]  Could not connect (this line is only noise)\n"
    "\x1b[31m    [h3] roll h3: rolled back at 2026-01-01T00:00:00.000Z to nothing\x1b[0m\n"
    "--> pyinfra error: unreachable over SSH (noise)\n"
)


def write_events(env: dict[str, str], *records: dict) -> None:
    """Events as deploys/core/events.py writes them, into the run's TRITON_RUN_DIR."""
    path = Path(env["TRITON_RUN_DIR"], "events.jsonl")
    with path.open("a", encoding="utf-8") as out:
        for record in records:
            out.write(json.dumps({"at": "2026-12-06T05:00:00.000Z", "run": "fake", **record}) + "\n")


class FakeFleet:
    """Stands in for the pyinfra runs the driver starts (its ``runner``): deploys/releases.py writes
    each host's state to TRITON_RELEASES_OUT, and one unreachable host in the run fails the whole run
    as settings.validate_fleet does; deploys/all.py moves ``current`` to NEW and fails as told per
    host ("broken": not READY; "dies": unreachable mid-run; "hangs": past the timeout; "rolls back":
    behind a front door the deploy's roll put the old release back itself); deploys/rollback.py goes
    back to OLD. Each run writes its events (deploys/core/events.py) and a noisy log (``NOISE``)."""

    OLD, NEW = "0ld0ld0ld0ld", "new0new0new0"

    def __init__(self, hosts: list[str], unreachable: set[str] = frozenset(), deploy: dict[str, str] | None = None, on_deploy=None):
        self.state = {
            h: {"current": self.OLD, "previous": None, "releases": [self.OLD], "serving": self.OLD, "model_ready": True} for h in hosts
        }
        self.unreachable = set(unreachable)
        self.behaviour = deploy or {}
        self.on_deploy = on_deploy
        self.calls: list[tuple[str, list[str], list[str]]] = []

    def __call__(self, cmd: list[str], env: dict[str, str], timeout: float) -> subprocess.CompletedProcess:
        deploy, limit = cmd[2], [cmd[i + 1] for i, a in enumerate(cmd) if a == "--limit"]
        data = [cmd[i + 1] for i, a in enumerate(cmd) if a == "--data"]
        self.calls.append((deploy, limit, data))
        down = sorted(h for h in limit if h in self.unreachable)
        if down and len(down) == len(limit):  # pyinfra itself: no host left after connecting
            write_events(env, *({"event": "unreachable", "host": h, "detail": f"Unable to connect to port 22 on {h}"} for h in down))
            return subprocess.CompletedProcess(cmd, 1, "", NOISE + "--> pyinfra error: No hosts remaining!\n")
        if down:  # settings.validate_fleet
            line = f"host {down[0]}: unreachable over SSH ({len(down)} host(s): {', '.join(down)}); fix SSH access"
            write_events(env, {"event": "run refused", "detail": line, "unreachable": down})
            return subprocess.CompletedProcess(cmd, 1, "", NOISE)
        if deploy == "deploys/releases.py":
            for h in limit:
                events.state_file(env["TRITON_RELEASES_OUT"], h).write_text(json.dumps({"host": h, **self.state[h]}))
            return subprocess.CompletedProcess(cmd, 0, "", NOISE)
        if deploy == "deploys/rollback.py":
            [h] = limit
            self.state[h].update(current=self.OLD, serving=self.OLD, model_ready=True)
            return subprocess.CompletedProcess(cmd, 0, "", NOISE)
        if self.on_deploy:
            self.on_deploy(limit)
        write_events(env, {"event": "run began"})
        failed = []
        for h in limit:
            how = self.behaviour.get(h, "ok")
            self.state[h].update(current=self.NEW, previous=self.OLD, serving=self.NEW, model_ready=how == "ok")
            steps = ["drained", "live", "checked", "back in the pool"]
            if how == "rolls back":
                self.state[h].update(current=self.OLD, previous=None, serving=self.OLD, model_ready=True)
                steps = ["drained", "rolled back", "back in the pool", "roll failed"]
            write_events(env, *({"event": e, "host": h, "detail": f"to {self.OLD}" if e == "rolled back" else ""} for e in steps))
            if how == "dies":
                self.unreachable.add(h)
            if how != "ok":
                failed.append(h)
        if any(self.behaviour.get(h) == "hangs" for h in limit):
            raise subprocess.TimeoutExpired(cmd, timeout, output="", stderr=NOISE)
        return subprocess.CompletedProcess(cmd, 1 if failed else 0, json.dumps({"results": {"failed_hosts": failed}}), NOISE)

    def ran(self, deploy: str) -> list[list[str]]:
        return [limit for d, limit, _ in self.calls if d == deploy]


def drive(fleet: FakeFleet, plan: list[list[str]], max_failures: int = 0) -> dict[str, rollout.Outcome]:
    driver = rollout.Rollout("inv.py", ["triton_http_port=7000"], runner=fleet, child_timeout_s=5)
    outcomes = {o.host: o for o in driver.run(plan, max_failures)}
    fleet.driver = driver
    return outcomes


def test_rollout_an_unreachable_host_is_reported_and_the_others_proceed() -> None:
    # One host down at the start: the fleet-wide read fails, each host is read alone; the failed
    # canary is rolled back READY, the down host is "unreachable" and never deployed.
    fleet = FakeFleet(["h1", "h2", "h3"], unreachable={"h2"}, deploy={"h1": "broken"})
    out = drive(fleet, [["h1"], ["h2"], ["h3"]])
    assert out["h1"].verdict == "rolled back" and out["h1"].rolled_back and out["h1"].ready and out["h1"].serving == FakeFleet.OLD
    assert out["h2"].verdict == "unreachable" and "host h2: could not connect (Unable to connect" in out["h2"].message
    assert out["h2"].wave is None
    assert out["h3"].verdict == "skipped"  # the canary failed: stop
    assert ["h2"] not in fleet.ran("deploys/all.py") and fleet.ran("deploys/rollback.py") == [["h1"]]


def test_rollout_an_unreachable_host_does_not_stop_the_healthy_ones() -> None:
    fleet = FakeFleet(["h1", "h2", "h3"], unreachable={"h2"})
    out = drive(fleet, [["h1"], ["h2", "h3"]])
    assert out["h1"].verdict == out["h3"].verdict == "pass" and out["h3"].serving == FakeFleet.NEW
    assert out["h2"].verdict == "unreachable"
    assert fleet.ran("deploys/all.py") == [["h1"], ["h3"]]


def test_rollout_a_host_dying_mid_batch_leaves_its_neighbours_judged_on_their_own() -> None:
    # h2 dies in batch 1, h3 is broken, h4 is fine: h4 passes, h3 (moved, failed) is rolled back,
    # h2 cannot be read: unreachable, told to be checked by hand.
    fleet = FakeFleet(["h1", "h2", "h3", "h4"], deploy={"h2": "dies", "h3": "broken"})
    out = drive(fleet, [["h1"], ["h2", "h3", "h4"]], max_failures=5)
    assert out["h1"].verdict == out["h4"].verdict == "pass" and not out["h4"].rolled_back
    assert out["h3"].verdict == "rolled back" and out["h3"].serving == FakeFleet.OLD and out["h3"].ready
    assert out["h2"].verdict == "unreachable" and "roll it back by hand" in out["h2"].message
    assert sorted(fleet.ran("deploys/rollback.py")) == [["h3"]]


def test_rollout_a_timed_out_deploy_is_reported_and_rolled_back() -> None:
    fleet = FakeFleet(["h1", "h2"], deploy={"h1": "hangs"})
    out = drive(fleet, [["h1"], ["h2"]])
    assert out["h1"].verdict == "timed out" and out["h1"].rolled_back and out["h1"].serving == FakeFleet.OLD
    assert "timed out after 5s (rollout_child_timeout_s)" in out["h1"].message and out["h1"].message.endswith(
        f"rolled back to {FakeFleet.OLD}"
    )
    assert out["h2"].verdict == "skipped"


def test_rollout_rollback_and_state_reads_do_not_get_the_new_release_data() -> None:
    fleet = FakeFleet(["h1"], deploy={"h1": "broken"})
    drive(fleet, [["h1"]])
    with_data = [deploy for deploy, _, data in fleet.calls if data]
    # The deploy and the read right after it: the new release. The first read, the rollback and
    # the read after it: the release on the host, with the inventory's own values.
    assert with_data == ["deploys/all.py", "deploys/releases.py"]
    assert [d for d, _, _ in fleet.calls] == [
        "deploys/releases.py",
        "deploys/all.py",
        "deploys/releases.py",
        "deploys/rollback.py",
        "deploys/releases.py",
    ]


def test_rollout_sigterm_finishes_the_wave_in_flight_then_stops() -> None:
    import signal

    fleet = FakeFleet(["h1", "h2", "h3"], on_deploy=lambda hosts: os.kill(os.getpid(), signal.SIGTERM))
    out = drive(fleet, [["h1"], ["h2"], ["h3"]])
    assert fleet.driver.interrupted == "SIGTERM" and fleet.driver.not_started == 2
    assert out["h1"].verdict == "pass" and out["h1"].serving == FakeFleet.NEW  # the canary's run was not cut
    assert out["h2"].verdict == out["h3"].verdict == "skipped" and fleet.ran("deploys/all.py") == [["h1"]]
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL  # the handler is gone after the run


def test_rollout_state_read_of_a_host_ssh_cannot_reach(tmp_path: Path) -> None:
    # The real deploys/releases.py run on a host whose SSH port refuses: reported unreachable, with
    # pyinfra's own connect error line.
    inventory = tmp_path / "inventory.py"
    inventory.write_text('hosts = [("127.0.0.1", {"ssh_port": 1, "ssh_connect_retries": 0})]\n')
    state = rollout.Rollout(str(inventory), [], child_timeout_s=120).states(["127.0.0.1"])["127.0.0.1"]
    assert state["unreachable"] is True and state["error"].startswith("host 127.0.0.1: could not connect ("), state


def test_run_terminates_a_child_past_its_timeout(monkeypatch) -> None:
    # A real child that ignores SIGTERM and has a child of its own: SIGKILL to its process group
    # after the grace, TimeoutExpired with what it printed.
    import time

    monkeypatch.setattr(rollout, "KILL_GRACE_S", 1)
    marker = f"rollout-timeout-test-{os.getpid()}"
    script = f"trap '' TERM; echo started >&2; sleep 300 & exec -a {marker} sleep 300"
    start = time.monotonic()
    with pytest.raises(subprocess.TimeoutExpired) as expired:
        rollout._run(["bash", "-c", script], dict(os.environ), 1)
    assert time.monotonic() - start < 20 and "started" in expired.value.stderr
    assert subprocess.run(["pgrep", "-f", marker], capture_output=True).returncode == 1  # nothing left


# -- a rollback waits on the previous release's own port and container -------------------------------


def test_release_own_settings_fact_on_real_compose_files(tmp_path: Path) -> None:
    # Compose files as the triton step writes them (release.build), read by the fact's own command
    # in a real shell: each release's ports, bind address and model name.
    from deploys.triton import release
    from deploys.triton.triton_service import own_values_changed
    from facts.triton import TritonReleaseOwnSettings

    root = tmp_path / "triton dir"
    moved = {"triton_http_port": 7000, "triton_grpc_port": 7001, "triton_metrics_port": 7002, "triton_bind_address": "::1"}
    specs = {}
    for name, data in (("default", {"gpu": False}), ("moved", {"gpu": False, **moved})):
        specs[name] = release.build(settings.parse("h", data), False, {"model.onnx": "a" * 64}, image="img:1")
        (root / "releases" / specs[name].id).mkdir(parents=True)
        (root / "releases" / specs[name].id / "docker-compose.yml").write_text(specs[name].compose)
    (root / "releases" / "000000000000").mkdir()  # a release without its compose file yet
    fact = TritonReleaseOwnSettings()
    found = fact.process(
        subprocess.run(["sh", "-c", fact.command(str(root))], capture_output=True, text=True, check=True).stdout.splitlines()
    )
    default = {"triton_http_port": 6000, "triton_grpc_port": 6001, "triton_metrics_port": 6002, "triton_bind_address": "127.0.0.1"}
    assert found == {
        specs["default"].id: {**default, "model_name": "embeddinggemma"},
        specs["moved"].id: {**moved, "model_name": "embeddinggemma"},
    }
    assert subprocess.run(["sh", "-c", fact.command(str(tmp_path / "absent"))], capture_output=True, text=True, check=True).stdout == ""
    s = settings.parse("h", {"gpu": False})
    assert own_values_changed(s, found[specs["default"].id]) == {}
    assert own_values_changed(s, found[specs["moved"].id]) == moved


def test_rollback_waits_on_the_previous_release_own_port(tmp_path, hub) -> None:
    # The previous release was deployed on port 7000 (its compose file says so); the inventory says
    # 6000: the rollback starts that release and waits for READY on 7000, and says why.
    url, data = hub
    live = live_release(tmp_path, url, write_inventory(tmp_path, data, CONVERGED_CPU))
    own = [f'0ld0ld0ld0ld port "127.0.0.1:{p}:{c}"' for p, c in ((7000, 8000), (7001, 8001), (7002, 8002))]
    drifted = f'f.answering(f.drifted({CONVERGED_CPU}, "readlink current", {WITH_PREVIOUS.replace("{live}", live)}), {{"--load-model=": {json.dumps([*own, "0ld0ld0ld0ld model " + json.dumps("--load-model=embeddinggemma")])}}})'
    proc = pyinfra(write_inventory(tmp_path, data, drifted), "deploys/rollback.py", url, "--json", "-vv")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert (
        "release 0ld0ld0ld0ld was deployed with triton_http_port=7000, triton_grpc_port=7001, triton_metrics_port=7002: using its own values"
        in proc.stderr
    )
    assert "127.0.0.1:7000/v2/models/embeddinggemma/ready" in proc.stderr
    assert "127.0.0.1:6000/v2/models/embeddinggemma/ready" not in proc.stderr.split("rollback: release")[-1]


def test_rollout_sigterm_to_the_real_driver_writes_the_report(tmp_path, hub) -> None:
    # The real driver on a converged @fake fleet, SIGTERM to its whole process group while the
    # canary's deploy runs: that pyinfra run (its own session) finishes, batch 1 never starts, the
    # report is written, exit 128+15 with one last line.
    import signal

    url, data = hub
    inventory = write_inventory(tmp_path, data, CONVERGED_GPU + ",\n" + CONVERGED_CPU)
    cmd = [sys.executable, "-m", "deploys.rollout", str(inventory), "--report-dir", str(tmp_path / "reports")]
    driver = subprocess.Popen(cmd, cwd=ROOT, env=fake_env(url), stderr=subprocess.PIPE, text=True, start_new_session=True)
    lines: list[str] = []
    try:
        for line in driver.stderr:  # type: ignore[union-attr]
            lines.append(line)
            if "--> Beginning operation run" in line and "rollout: canary: @fake/gpu-ubuntu" in "".join(lines):
                os.killpg(driver.pid, signal.SIGTERM)
                break
        lines += driver.stderr.readlines()  # type: ignore[union-attr]
        driver.wait(300)
    finally:
        if driver.poll() is None:
            driver.kill()
    stderr = "".join(lines)
    assert driver.returncode == 128 + signal.SIGTERM, stderr[-3000:]
    assert "rollout: SIGTERM: finishing the wave in flight" in stderr
    assert "deploys/all.py -y --json --limit @fake/cpu-debian" not in stderr
    assert (
        stderr.strip()
        .splitlines()[-1]
        .startswith("rollout interrupted (SIGTERM): the wave in flight was finished, 1 host(s) not started; report: ")
    )
    [report] = (tmp_path / "reports/rollouts").glob("*.json")
    saved = json.loads(report.read_text())
    hosts = {h["host"]: h for h in saved["hosts"]}
    assert saved["interrupted"] == "SIGTERM"
    assert hosts["@fake/gpu-ubuntu"]["verdict"] == "pass" and hosts["@fake/cpu-debian"]["verdict"] == "skipped"


class LogUnread(subprocess.CompletedProcess):
    """A pyinfra run's result whose log (stderr) the driver may not read: reading it fails the test."""

    @property
    def stderr(self):  # type: ignore[override]
        raise AssertionError("the rollout driver read pyinfra's stderr")

    @stderr.setter
    def stderr(self, value) -> None:
        pass


def test_rollout_report_from_events_whatever_pyinfras_log_says() -> None:
    # A host named with the longest DNS name passes, one behind a front door is rolled back by the
    # deploy's own roll, one cannot be reached; pyinfra's log carries colour codes, other libraries'
    # lines and lines that contradict the events. The driver never reads that log: the report comes
    # from the events, --json and the state files alone.
    ok, rolls, down = LONGEST, "h2", "h3"
    fleet = FakeFleet([ok, rolls, down], unreachable={down}, deploy={rolls: "rolls back"})

    def runner(cmd, env, timeout):
        done = fleet(cmd, env, timeout)
        return LogUnread(done.args, done.returncode, done.stdout, None)

    driver = rollout.Rollout("inv.py", [], runner=runner, child_timeout_s=5)
    out = {o.host: o for o in driver.run([[ok], [rolls, down]], max_failures=5)}
    assert out[ok].verdict == "pass" and out[ok].serving == FakeFleet.NEW and out[ok].ready
    assert [e["event"] for e in out[ok].events] == ["drained", "live", "checked", "back in the pool"]
    assert out[rolls].verdict == "rolled back" and out[rolls].rolled_back and out[rolls].serving == FakeFleet.OLD
    assert f"the deploy rolled it back to {FakeFleet.OLD}" in out[rolls].message
    assert out[down].verdict == "unreachable" and f"host {down}: could not connect" in out[down].message
    assert fleet.ran("deploys/rollback.py") == []  # the deploy's roll already put h2 back
    assert "rolled back" not in [e["event"] for e in out[ok].events] and not out[ok].rolled_back


def test_the_summary_says_whether_the_fleet_is_on_one_release() -> None:
    same = [rollout.Outcome(host=h, serving="a1b2c3d4e5f6", ready=True, verdict="pass") for h in ("h1", "h2")]
    assert rollout.table(same).splitlines()[-1] == "Triton fleet on one release: a1b2c3d4e5f6 (2 host(s))"
    mixed = [*same, rollout.Outcome(host="h3", serving="0ld0ld0ld0ld", ready=True, verdict="rolled back")]
    assert rollout.table(mixed).splitlines()[-1] == ("Triton fleet on 2 releases: a1b2c3d4e5f6 on 2 host(s); differ: h3 (0ld0ld0ld0ld)")
