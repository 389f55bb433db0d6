"""The deploy lock (deploys/deploy_lock/logic.py) and the per-run names it goes with.

- The lock commands, run here with sh and bash under a temporary directory: one holder at a time
  (also with many acquires at once), release only by the holder, the stale takeover only of the
  record it was decided on, the "moved" check of a plan made before another run released.
- The controller's side: the stale rule, the one-line messages.
- The prune re-check on the host and the run's own symlink names (release.py).
- The plan on fake hosts: the lock is the first and the last operation on every role's host,
  no change on a converged run, and a held lock fails the host with one line, nothing else run.
  The sandbox e2e (tests/test_e2e_faults.py, "deploy lock") runs two real deploys at once.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from deploys.core import run
from deploys.core.paths import DEPLOY_LOCK_HELD
from deploys.deploy_lock import logic as deploy_lock
from deploys.triton import release
from facts.deploy_lock import parse_lock_output
from tests.test_plan import CACHE_DATA, CONVERGED_CPU, MONITOR, SCRAPED_CPU, run_fleet
from tests.test_plan import hub as hub  # the pytest fixture (a local Hub with the lock)

SHELLS = [sh for sh in ("sh", "bash") if shutil.which(sh)]
ALICE = deploy_lock.record_lines("alice@ctl-1", 4242, "2026-12-02T06:00:00Z", "run-alice")
BOB = deploy_lock.record_lines("bob@ctl-2", 777, "2026-12-02T06:01:00Z", "run-bob")


def sh(shell: str, command: str) -> dict:
    proc = subprocess.run([shell, "-c", command], capture_output=True, text=True, timeout=30)
    assert proc.returncode == 0, proc.stderr  # a fact command never fails the host by itself
    return parse_lock_output(proc.stdout.splitlines())


# -- the commands on a host ----------------------------------------------------------------------


@pytest.mark.parametrize("shell", SHELLS)
def test_one_holder_release_by_the_holder_only(tmp_path: Path, shell: str) -> None:
    base = str(tmp_path / "lock")
    assert sh(shell, deploy_lock.status_command(base))["status"] == "free"
    assert sh(shell, deploy_lock.acquire_command(ALICE, "", base=base))["status"] == "acquired"
    held = sh(shell, deploy_lock.acquire_command(BOB, "", base=base))
    assert held["status"] == "held" and held["record"] == dict(line.split("=", 1) for line in ALICE)
    assert held["age_s"] is not None and 0 <= held["age_s"] < 30
    # Bob's release leaves Alice's lock alone.
    assert sh(shell, deploy_lock.release_command("run-bob", base=base))["status"] == "not-ours"
    assert sh(shell, deploy_lock.status_command(base))["record"]["run"] == "run-alice"
    assert sh(shell, deploy_lock.release_command("run-alice", base=base))["status"] == "released"
    after = sh(shell, deploy_lock.status_command(base))
    assert after["status"] == "free" and after["last"] == "run-alice"
    assert sorted(os.listdir(base)) == ["last-run"]  # no temporary file left behind


@pytest.mark.parametrize("shell", SHELLS)
def test_a_plan_older_than_the_last_release_is_refused(tmp_path: Path, shell: str) -> None:
    # Bob read the host (last-run empty), then Alice's whole run took and gave back the lock.
    base = str(tmp_path / "lock")
    assert sh(shell, deploy_lock.acquire_command(ALICE, "", base=base))["status"] == "acquired"
    assert sh(shell, deploy_lock.release_command("run-alice", base=base))["status"] == "released"
    moved = sh(shell, deploy_lock.acquire_command(BOB, "", base=base))
    assert moved["status"] == "moved" and moved["last"] == "run-alice"
    assert sh(shell, deploy_lock.status_command(base))["status"] == "free"  # not left held
    # A plan made after Alice's release takes it.
    assert sh(shell, deploy_lock.acquire_command(BOB, "run-alice", base=base))["status"] == "acquired"


@pytest.mark.parametrize("shell", SHELLS)
def test_takeover_only_of_the_stale_record_it_was_decided_on(tmp_path: Path, shell: str) -> None:
    base = str(tmp_path / "lock")
    assert sh(shell, deploy_lock.acquire_command(BOB, "", base=base))["status"] == "acquired"
    # A takeover decided on another record (the lock changed hands since) takes nothing.
    assert sh(shell, deploy_lock.acquire_command(ALICE, "", take_over="run-other", base=base))["status"] == "held"
    assert sh(shell, deploy_lock.acquire_command(ALICE, "", take_over="run-bob", base=base))["status"] == "acquired"
    assert sh(shell, deploy_lock.status_command(base))["record"]["run"] == "run-alice"
    assert sorted(os.listdir(base)) == ["held"]  # the stale record is gone, not parked


def test_many_acquires_at_once_one_wins(tmp_path: Path) -> None:
    base = str(tmp_path / "lock")
    records = [deploy_lock.record_lines(f"u{i}@c", i + 1, "t", f"run-{i}") for i in range(12)]
    procs = [
        subprocess.Popen(["sh", "-c", deploy_lock.acquire_command(r, "", base=base)], stdout=subprocess.PIPE, text=True) for r in records
    ]
    outcomes = [parse_lock_output(p.communicate(timeout=30)[0].splitlines()) for p in procs]
    winners = [i for i, o in enumerate(outcomes) if o["status"] == "acquired"]
    assert len(winners) == 1 and all(o["status"] == "held" for i, o in enumerate(outcomes) if i != winners[0])
    assert (Path(base) / "held/record").read_text().splitlines() == records[winners[0]]


def test_commands_shapes() -> None:
    # Fixed paths on the host; each command names itself first (-vv, fake hosts) and ends with true.
    for command in (deploy_lock.status_command(), deploy_lock.acquire_command(ALICE, ""), deploy_lock.release_command("r")):
        assert command.startswith(": deploy-lock ") and command.rstrip().endswith("true")
        assert DEPLOY_LOCK_HELD in command
    assert f"mkdir {DEPLOY_LOCK_HELD} " in deploy_lock.acquire_command(ALICE, "")  # the atomic test-and-set
    assert "run=run-alice" in deploy_lock.acquire_command(ALICE, "")
    assert deploy_lock.CLEAR_COMMAND == f"rm -rf {DEPLOY_LOCK_HELD}"
    this = dict(line.split("=", 1) for line in deploy_lock.this_run_record())
    assert this["run"] == run.RUN_ID and this["pid"] == str(os.getpid()) and this["holder"].endswith("@" + run.CONTROLLER)
    assert this["started"].endswith("Z") and "T" in this["started"]


# -- the controller's side ---------------------------------------------------------------------


def test_stale_rule() -> None:
    record = {"holder": "alice@ctl-1", "pid": "4242", "started": "s", "run": "r"}
    alive, dead = (lambda pid: True), (lambda pid: False)
    assert deploy_lock.stale_reason(record, 10, 3600, "ctl-1", alive) is None
    assert deploy_lock.stale_reason(record, 3601, 3600, "ctl-1", alive) == "older than deploy_lock_stale_s=3600s (3601s)"
    assert deploy_lock.stale_reason(record, 10, 3600, "ctl-1", dead) == "its pid 4242 no longer runs on ctl-1"
    # A pid of another controller says nothing here: only the age counts.
    assert deploy_lock.stale_reason(record, 10, 3600, "ctl-2", dead) is None
    # No record (lost, or not written yet): only the age counts.
    assert deploy_lock.stale_reason({}, 10, 3600, "ctl-1", dead) is None
    assert deploy_lock.stale_reason({}, 4000, 3600, "ctl-1", dead) is not None
    # The real pid check: this process runs, a reaped child does not.
    child = subprocess.Popen(["true"])
    child.wait()
    assert deploy_lock.pid_alive(os.getpid()) and not deploy_lock.pid_alive(child.pid)


def test_held_message_is_one_line_naming_the_holder_and_the_way_out() -> None:
    record = dict(line.split("=", 1) for line in ALICE)
    message = deploy_lock.held_message("gpu-01", record, 14400)
    assert "\n" not in message
    for part in ("host gpu-01", "alice@ctl-1", "pid 4242", "since 2026-12-02T06:00:00Z", "run run-alice", "nothing changed"):
        assert part in message, part
    assert f"ssh gpu-01 sudo rm -rf {DEPLOY_LOCK_HELD}" in message and "deploy_lock_stale_s=14400s" in message
    assert "not written yet" in deploy_lock.held_message("gpu-01", {}, 60)
    moved = deploy_lock.moved_message("gpu-01", "run-bob")
    assert "\n" not in moved and "run-bob" in moved and "again" in moved
    warning = deploy_lock.takeover_warning("gpu-01", record, "its pid 4242 no longer runs on ctl-1")
    assert "\n" not in warning and "stale" in warning and run.RUN_ID in warning


# -- per-run names and the prune re-check (deploys/triton/release.py) --------------------------------


def _releases(root: Path, *ids: str) -> None:
    for r in ids:
        (root / "releases" / r).mkdir(parents=True)


def test_switch_uses_names_of_its_own_run(tmp_path: Path) -> None:
    _releases(tmp_path, "aaa", "bbb")
    for target, run_id in (("aaa", "run-1"), ("bbb", "run-2")):
        command = release.switch_command(str(tmp_path), target, keep_previous=False, run_id=run_id)
        assert f"current.new.{run_id}" in command and f"previous.new.{run_id}" in command
        subprocess.run(["sh", "-c", command], check=True)
    assert os.readlink(tmp_path / "current") == "releases/bbb" and os.readlink(tmp_path / "previous") == "releases/aaa"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["current", "previous", "releases"]
    assert "previous.new.run-3 " in release.set_previous_command(str(tmp_path), "aaa", run_id="run-3")
    assert f"current.new.{run.RUN_ID}" in release.switch_command("/t", "x", keep_previous=True)


def _docker_stub(tmp_path: Path, body: str) -> dict[str, str]:
    """A ``docker`` first on PATH: the prune's ``docker ps --filter`` answers what ``body`` says."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    stub = bin_dir / "docker"
    stub.write_text(f"#!/bin/sh\n{body}\n")
    stub.chmod(0o755)
    return {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}"}


def test_prune_rechecks_current_previous_and_running_containers_when_it_runs(tmp_path: Path) -> None:
    root = tmp_path / "triton"
    _releases(root, "aaa", "bbb", "ccc", "ddd", "eee")
    # Planned when current was aaa; since then another run made bbb current and ccc previous.
    os.symlink("releases/bbb", root / "current")
    os.symlink("releases/ccc", root / "previous")
    env = _docker_stub(tmp_path, 'case "$*" in *deploy-hash=ddd*) echo 9c2e9c2e9c2e;; esac')
    command = release.prune_command(str(root), ["bbb", "ccc", "ddd", "eee"])
    proc = subprocess.run(["sh", "-c", command], env=env, capture_output=True, text=True, check=True)
    assert sorted(p.name for p in (root / "releases").iterdir()) == ["aaa", "bbb", "ccc", "ddd"]
    assert "release bbb kept: current or previous" in proc.stdout and "release ddd kept: a running container uses it" in proc.stdout


def test_prune_keeps_everything_when_docker_does_not_answer(tmp_path: Path) -> None:
    root = tmp_path / "triton"
    _releases(root, "aaa", "bbb")
    env = _docker_stub(tmp_path, "exit 1")
    subprocess.run(["sh", "-c", release.prune_command(str(root), ["aaa", "bbb"])], env=env, check=True, capture_output=True)
    assert sorted(p.name for p in (root / "releases").iterdir()) == ["aaa", "bbb"]


# -- the plan on fake hosts -----------------------------------------------------------------------

# A Triton host, the monitoring host and a registry cache, each scrapeable by the monitoring host (a
# private exporter address). A front door takes the same lock() call (deploys/all.py calls it before
# any role's step), but a fake front door needs a gateway fleet (vaulted keys) the fake hosts lack.
CACHE = (
    f'f.host("cache1", {{**{CACHE_DATA}, "monitoring_exporter_address": "10.0.0.7"}}, f.responses(f.DEBIAN_13_RELEASE, None, f.DF_PLENTY))'
)
TAKE, GIVE = "Deploy lock | Deploy lock: take it on this host", "Deploy lock | Deploy lock: give it back"


def test_the_lock_is_the_first_and_last_operation_on_every_role_and_no_change(tmp_path, hub) -> None:
    result = run_fleet(tmp_path, hub, SCRAPED_CPU, monitoring=MONITOR, registry_cache=CACHE)
    assert result.returncode == 0, result.stderr[-3000:]
    operations = json.loads(result.stdout)["results"]["operations"]
    names = [op["name"] for op in operations]
    assert names[0] == TAKE and names[-1] == GIVE, names
    hosts = {"@fake/cpu-debian", "@fake/mon1", "@fake/cache1"}
    for op in (operations[0], operations[-1]):
        assert set(op["no_change"]) == hosts and not op["success"], op


def test_a_held_lock_fails_the_host_with_one_line_and_nothing_else_runs(tmp_path, hub) -> None:
    held = ["__DEPLOY_LOCK__=held", *ALICE, "age_s=12"]
    host = f"f.drifted({CONVERGED_CPU}, {deploy_lock.ACQUIRE_LABEL!r}, {held!r})"
    result = run_fleet(tmp_path, hub, host, "--data", "triton_max_batch_size=16")  # a change it would make
    assert result.returncode != 0
    lines = [line for line in result.stderr.splitlines() if "deploy lock held by" in line]
    assert len(lines) == 1 and "alice@ctl-1 (pid 4242, since 2026-12-02T06:00:00Z, run run-alice)" in lines[0], result.stderr[-3000:]
    operations = json.loads(result.stdout)["results"]["operations"] if result.stdout.strip() else []
    assert not [op for op in operations if op["success"]], operations


def test_dry_takes_no_lock(tmp_path, hub) -> None:
    # --dry: only facts run; the status read is the one lock command sent.
    result = run_fleet(tmp_path, hub, CONVERGED_CPU, "--dry", "-vv")
    assert result.returncode == 0, result.stderr[-3000:]
    sent = [line for line in result.stderr.splitlines() if ">>> " in line and ": deploy-lock" in line]
    assert sent and all(": deploy-lock status;" in line for line in sent), sent


def test_a_host_failing_mid_run_gives_its_lock_back(tmp_path, hub) -> None:
    # The switch of current fails on the host: pyinfra runs nothing more there, the release
    # operation included, and the state callback gives the lock back (-vv shows what is sent).
    failing = {"mv -Tf current.new.": {"success": False, "stderr": ["mv: cannot move"]}}
    host = f"f.answering({CONVERGED_CPU}, {failing!r})"
    result = run_fleet(tmp_path, hub, host, "--data", "triton_max_batch_size=16", "-vv")
    assert result.returncode != 0
    sent = [line.split(">>> ", 1)[1] for line in result.stderr.splitlines() if ">>> " in line]
    switch = next(i for i, command in enumerate(sent) if "mv -Tf current.new." in command)
    released = [i for i, command in enumerate(sent) if command.startswith(deploy_lock.RELEASE_LABEL)]
    assert released and released[0] > switch, sent[switch:]
    assert "Deploy lock: give it back" not in result.stderr.split("mv: cannot move", 1)[1]  # the callback, not the operation


@pytest.mark.parametrize("previous,expected", [(None, None), ("aaa", "releases/aaa"), ("bbb", "releases/bbb")])
def test_a_failed_roll_puts_previous_back_as_it_was(tmp_path: Path, previous: str | None, expected: str | None) -> None:
    """A roll to ``ccc`` from ``bbb`` fails; the roll back restores ``previous``, absent included."""
    _releases(tmp_path, "aaa", "bbb", "ccc")
    subprocess.run(["sh", "-c", release.switch_command(str(tmp_path), "bbb", keep_previous=False)], check=True)
    if previous:
        subprocess.run(["sh", "-c", release.set_previous_command(str(tmp_path), previous)], check=True)
    subprocess.run(["sh", "-c", release.switch_command(str(tmp_path), "ccc", keep_previous=False)], check=True)
    back = (
        release.switch_command(str(tmp_path), "bbb", keep_previous=True)
        + " && "
        + release.restore_previous_command(str(tmp_path), previous, "bbb")
    )
    subprocess.run(["sh", "-c", back], check=True)
    assert os.readlink(tmp_path / "current") == "releases/bbb"
    assert (os.readlink(tmp_path / "previous") if (tmp_path / "previous").is_symlink() else None) == expected
