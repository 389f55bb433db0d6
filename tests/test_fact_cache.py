"""deploys/core/fact_cache.py: facts read in one batch give what each gives alone (a real shell), a
fact asked again is read once until a command changes the host (the real pyinfra CLI on @local),
and a converged @fake fleet's no-op sends fewer commands than without the cache."""

from __future__ import annotations

import hashlib
import inspect
import json
import os
import subprocess
import sys
from pathlib import Path

from pyinfra.facts.files import Directory, File, Sha256File
from pyinfra.facts.server import LinuxDistribution

from deploys.core import fact_cache
from facts.docker import DockerDaemonJson
from tests.support.hub_server import start_with_lock
from tests.test_plan import CANARY_KEY, CONVERGED_CPU, CONVERGED_GPU, MODEL_FILES, ROOT, write_inventory


def alone(cls, kwargs):
    """The fact read by its own command in a real shell, parsed the way pyinfra parses it."""
    fact = cls()
    command = fact.command(**kwargs) if callable(fact.command) else fact.command
    text = command.get_raw_value() if hasattr(command, "get_raw_value") else str(command)
    lines = subprocess.run(["sh", "-c", text], capture_output=True, text=True, check=True).stdout.splitlines()
    return fact.process(lines) if lines else fact.default()


def test_a_batch_reads_each_fact_as_its_own_command_would(tmp_path):
    present = tmp_path / "a file with spaces"
    present.write_text("content\n")
    entries = [
        (Sha256File, {"path": str(present)}),
        (Sha256File, {"path": str(tmp_path / "missing")}),
        (File, {"path": str(present)}),
        (Directory, {"path": str(tmp_path)}),
        (Directory, {"path": str(tmp_path / "missing")}),
        (LinuxDistribution, {}),
        (DockerDaemonJson, {}),
    ]
    command, facts = fact_cache.batch_command(entries)
    out = subprocess.run(["sh", "-c", command], capture_output=True, text=True, check=True).stdout
    values = fact_cache.parse_batch(facts, out.splitlines())
    assert sorted(values) == list(range(len(entries)))
    for index, (cls, kwargs) in enumerate(entries):
        expected = alone(cls, kwargs)
        if cls is File:  # its mtime is to the second: equal unless the file changed
            expected.pop("mtime"), values[index].pop("mtime")
        assert values[index] == expected, (cls.__name__, kwargs)
    assert values[0] is not None and values[1] is None and values[4] is None  # not vacuous: present vs missing


def test_a_failed_part_of_a_batch_is_left_to_be_read_alone():
    _, facts = fact_cache.batch_command([(Sha256File, {"path": "/etc/hostname"}), (Sha256File, {"path": "/etc/hostname"})])
    lines = [f"{fact_cache.MARK}0", "garbage", f"{fact_cache.MARK}rc=2", f"{fact_cache.MARK}1", f"{fact_cache.MARK}rc=0"]
    assert fact_cache.parse_batch(facts, lines) == {1: None}


# A deploy on @local: a fact read twice with no command between is one command; a command in between
# (it changes the file) makes the next read a fresh one, which sees the change.
LOCAL_DEPLOY = """
from pyinfra import host, state
from pyinfra.api import operation
from pyinfra.facts.files import Sha256File
from pyinfra.operations import server

from deploys.core import fact_cache

fact_cache.install(state)
PATH = {path!r}
seen = []


@operation(is_idempotent=False)
def read_only(tag):
    seen.append((tag, host.get_fact(Sha256File, path=PATH)))
    seen.append((tag + "-again", host.get_fact(Sha256File, path=PATH)))
    yield from ()


read_only(name="twice", tag="first")
server.shell(name="change it", commands=["echo changed > " + PATH])
read_only(name="after", tag="after")


import atexit, json
atexit.register(lambda: open({out!r}, "w").write(json.dumps(seen)))
"""


def test_a_fact_is_read_once_until_a_command_runs_on_the_host(tmp_path):
    target, out, counts = tmp_path / "file", tmp_path / "seen.json", tmp_path / "counts.json"
    target.write_text("before\n")
    deploy = tmp_path / "deploy.py"
    deploy.write_text(LOCAL_DEPLOY.format(path=str(target), out=str(out)))
    proc = subprocess.run(
        [sys.executable, "-m", "tests.support.command_count", str(counts), "--", "@local", str(deploy), "-y"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    seen = dict(json.loads(out.read_text()))
    assert seen["first"] == seen["first-again"] != seen["after"] == seen["after-again"]
    assert seen["after"] == hashlib.sha256(b"changed\n").hexdigest()
    reads = json.loads(counts.read_text())["by_fact"]["@local"]["pyinfra.facts.files.Sha256File"]
    assert reads == 2  # four asks: one read before the change, one after


def count_noop(tmp_path: Path, *flags: str) -> dict:
    tmp_path.mkdir()
    server, data = start_with_lock(tmp_path, MODEL_FILES)
    try:
        inventory = write_inventory(tmp_path, (server.url, data), CONVERGED_GPU + ",\n" + CONVERGED_CPU)
        env = {
            **os.environ,
            "NGC_API_KEY": CANARY_KEY,
            "HF_ENDPOINT": server.url,
            "PYINFRA_FAKE_DELAY": "0",
            "PYINFRA_FAKE_DELAY_JITTER": "0",
        }
        counts = tmp_path / "counts.json"
        cmd = [
            sys.executable,
            "-m",
            "tests.support.command_count",
            str(counts),
            *flags,
            "--",
            str(inventory),
            "deploys/all.py",
            "-y",
            "--json",
        ]
        proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
        assert proc.returncode == 0, proc.stderr[-3000:]
        assert json.loads(proc.stdout)["results"]["totals"]["success"] == 0
        return json.loads(counts.read_text())
    finally:
        server.stop()


def test_a_converged_fleet_re_reads_no_stable_fact(tmp_path):
    cached = count_noop(tmp_path / "cached")
    plain = count_noop(tmp_path / "plain", "--no-fact-cache")
    for host, commands in cached["commands"].items():
        assert commands < plain["commands"][host] - 10, (host, commands, plain["commands"][host])
    for host, facts in cached["fact_keys"].items():
        repeated = {key: n for key, n in facts.items() if n > 1 and key.split()[0] in {"Sha256File", "LinuxDistribution", "DockerImageId"}}
        assert not repeated, (host, repeated)


def test_planning_lookups_give_pyinfra_the_same_positions_and_arguments():
    from pyinfra.api import arguments

    from deploys.core import planning

    def here():
        return [(f.filename, f.lineno) for f in planning._stack()], [(f.filename, f.lineno) for f in inspect.stack()]

    ours, theirs = here()
    assert ours[1:] == theirs and len(theirs) > 3  # the same frames, files and lines (ours has _stack on top)
    frame = inspect.currentframe()
    assert planning._getframeinfo(frame)[:2] == inspect.getframeinfo(frame)[:2]
    assert planning._all_global_arguments() == arguments.all_global_arguments() == planning._original_all_global_arguments()
    assert {"_sudo", "_ignore_errors"} <= {name for name, _ in planning._all_global_arguments()}


def test_the_prefetch_file_keeps_a_fact_unasked_once_and_drops_it_the_second_time_and_predicts_a_files_digest(tmp_path, monkeypatch):
    monkeypatch.setattr(fact_cache, "PREFETCH_DIR", tmp_path)
    a = ["pyinfra.facts.files.Sha256File", {"path": "/a"}, ["execute"]]
    b = ["pyinfra.facts.files.File", {"path": "/b"}, ["prepare"]]
    fact_cache._save("h", {fact_cache.key_of(a[0], a[1]): a, fact_cache.key_of(b[0], b[1]): b}, [])
    path = fact_cache.prefetch_file("h")
    assert fact_cache._rows(path) == [a, b]  # /b was not uploaded: its stat alone
    fact_cache._save("h", {fact_cache.key_of(a[0], a[1]): a, fact_cache.key_of(b[0], b[1]): b}, [], frozenset({"/b", "/x"}))
    # /b, uploaded this run, whose stat it asked, brings its digest along (the next run asks it): once.
    digest = ["pyinfra.facts.files.Sha1File", {"path": "/b"}, ["prepare", "again"]]
    assert fact_cache._rows(path) == [a, b, digest]
    fact_cache._save("h", {fact_cache.key_of(a[0], a[1]): a}, fact_cache._rows(path))  # b not asked: kept once
    assert fact_cache._rows(path) == [a, [b[0], b[1], ["prepare", "again"]]]
    fact_cache._save("h", {fact_cache.key_of(a[0], a[1]): a}, fact_cache._rows(path))  # unasked again: dropped
    assert fact_cache._rows(path) == [a]
    # An uploaded file whose stat and digest were both asked: nothing added.
    c = ["pyinfra.facts.files.Sha1File", {"path": "/c"}, ["prepare"]]
    c_stat = ["pyinfra.facts.files.File", {"path": "/c"}, ["prepare"]]
    fact_cache._save("h", {fact_cache.key_of(r[0], r[1]): r for r in (c, c_stat)}, [], frozenset({"/c"}))
    assert fact_cache._rows(path) == [c, c_stat]
    path.write_text('[["x", {}]]')  # another version's rows: none used
    assert fact_cache._rows(path) == []


def test_the_batch_runs_with_the_connector_arguments_a_fact_would_get(tmp_path, monkeypatch):
    """inventories/group_data/all.py sets ``_sudo = True``: the batch must read as root too, as each fact alone would."""
    from pyinfra.api import Config, Inventory, State

    monkeypatch.setattr(fact_cache, "PREFETCH_DIR", tmp_path)
    inventory = Inventory((["@local"], {"_sudo": True}))
    state = State(inventory, Config())
    host = inventory.get_host("@local")
    fact_cache.install(state)
    monkeypatch.setattr(fact_cache, "_batches", lambda host: True)
    row = ["pyinfra.facts.files.Sha256File", {"path": "/etc/hostname"}, ["prepare"]]
    fact_cache.prefetch_file(host.name).write_text(json.dumps([row]))
    sent = []

    def run(self, command, **kwargs):
        sent.append(kwargs)
        return True, type("Output", (), {"stdout_lines": [f"{fact_cache.MARK}0", f"{fact_cache.MARK}rc=0"]})()

    monkeypatch.setattr(type(host), "run_shell_command", run)
    monkeypatch.setattr(type(host), "connected", True, raising=False)
    assert host.get_fact(Sha256File, path="/etc/hostname") is None  # from the batch: no output, the default
    assert len(sent) == 1 and sent[0].get("_sudo") is True
