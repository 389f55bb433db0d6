"""The verify step (deploys/triton/verify.py, deploys/triton/verify_run.py): command building, output parsing, the fleet table's timing, and the real
pyinfra CLI running the step on this machine (``@local``) against a real tritonserver."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from deploys.core import endpoints, model_lock, operations, paths, run, runtimes, settings, wheels
from deploys.core.repo import RUNTIME_INSTALLER
from deploys.core.settings import SettingsError
from deploys.gateway import logic as gateway
from deploys.triton import verify_run as step
from facts._shell import RC_MARKER
from facts.python import HostPython, parse_host_python
from facts.verify import parse_parity_output
from tests.support import tinymodel
from tests.support import tritonserver as ts
from tests.support.operation_runner import run as run_operation
from tests.test_verify_locks import parse_lock
from verify import parity
from verify.fleet import HostResult

REPO = Path(__file__).resolve().parent.parent
KEY = "fedcba9876543210" * 4  # a restricted-API key shaped like the deploy's (64 hex digits)


def _settings(**data: object) -> settings.Settings:
    return settings.parse("web-1", {"gpu": False, **data})


def test_parity_command_points_at_the_deploy_layout() -> None:
    s = _settings(
        triton_dir="/srv/triton",
        triton_http_port=7000,
        triton_grpc_port=7001,
        triton_metrics_port=7002,
        model_variant="q8",
        verify_min_cosine=0.999,
    )
    command = step.parity_command(s, paths.layout(s), "cpu")
    assert "/srv/triton/verify/venv/bin/python -m verify.parity" in command
    assert (
        "--model-dir /srv/triton/current/models/embeddinggemma/1" in command
        and f"--report /srv/triton/verify/last-report.json.{run.RUN_ID}.tmp" in command
        and f"mv -f /srv/triton/verify/last-report.json.{run.RUN_ID}.tmp /srv/triton/verify/last-report.json" in command
    )  # the run's own report name, renamed into place: two checks never write one file
    assert "--model-file model_quantized.onnx" in command and "--tokenizer-dir /srv/triton/tokenizer" in command
    assert "--url 127.0.0.1:7000 --grpc-url 127.0.0.1:7001" in command and "--min-cosine 0.999" in command
    assert command.rstrip().endswith("true")  # a fact command must not fail the host by itself
    bound = _settings(triton_bind_address="10.0.0.5", triton_bind_beyond_loopback=True)
    assert "--url 10.0.0.5:6000" in step.parity_command(bound, paths.layout(bound), "cpu")


def test_the_check_keeps_its_bytecode_in_its_own_cache_not_recompiling_each_run() -> None:
    """The check's bytecode goes to {verify}/pycache (PYTHONPYCACHEPREFIX): compiled once, read on later
    runs, never written beside the uploaded code or into the venv; the roll check too."""
    s = _settings(triton_dir="/srv/triton")
    layout = paths.layout(s)
    assert layout.verify.pycache == "/srv/triton/verify/pycache"
    for command in (step.parity_command(s, layout, "cpu"), step.roll_check_command(s, layout, "cpu")):
        assert "cd /srv/triton/verify && PYTHONPYCACHEPREFIX=/srv/triton/verify/pycache " in command
        assert "PYTHONDONTWRITEBYTECODE" not in command


def test_the_check_sizes_its_long_samples_by_the_model_window() -> None:
    """model_sliding_window reaches the host program in its environment (VERIFY_WINDOW: older verify
    code ignores it, where an unknown flag would fail a roll's check), in the verify step and the roll check."""
    for window in (256, 8):
        s = _settings(model_sliding_window=window)
        layout = paths.layout(s)
        for command in (step.parity_command(s, layout, "cpu"), step.roll_check_command(s, layout, "cpu")):
            assert f" VERIFY_WINDOW={window} /opt/triton-embeddinggemma/verify/venv/bin/python -m verify.parity " in command


def test_parity_command_goes_through_the_gateway() -> None:
    s = _settings(triton_dir="/srv/triton", gateway_listen_port=6090)
    layout = paths.layout(s)
    command = step.parity_command(s, layout, "cpu", gateway_key_file=True)
    assert "--gateway-url http://127.0.0.1:6090" in command and "--gateway-key-file /srv/triton/verify/gateway.key" in command
    assert "--gateway-max-tokens 2048 --gateway-max-inputs 2048" in command and "--gateway-no-truncate" not in command
    assert "--gateway-key-file" not in step.parity_command(s, layout, "cpu")  # auth off: no key, no header
    off = _settings(gateway_enabled=False)
    assert "--gateway" not in step.parity_command(off, paths.layout(off), "cpu")
    wildcard = _settings(gateway_listen_address="0.0.0.0", gateway_truncate=False, gateway_max_tokens=512, gateway_max_inputs=4)
    flags = step.gateway_args(wildcard, paths.layout(wildcard), key_file=True)
    # parity's parser reads the flags back as the host program will.
    args = parity.parser().parse_args(["--model-dir", "m", "--tokenizer-dir", "t", *flags])
    assert (args.gateway_url, args.gateway_key_file) == ("http://127.0.0.1:6080", "/opt/triton-embeddinggemma/verify/gateway.key")
    assert (args.gateway_max_tokens, args.gateway_no_truncate, args.gateway_max_inputs) == (512, True, 4)


def test_the_gateway_key_is_written_from_stdin_alone_0600(tmp_path: Path) -> None:
    """The secret file's command (strip_newline) fed the way pyinfra feeds ``_stdin`` (its write_stdin adds a newline): the
    file holds the key alone, so its sha256 is the one the verify step compares at plan time."""
    from pyinfra.connectors.util import write_stdin

    path = tmp_path / "verify" / "gateway.key"
    path.parent.mkdir()
    command = operations.stdin_write(str(path), strip_newline=True)  # what operations.secret_file runs
    for vault_keys in (["a-vault-key-0123456789"], ["a-rotated-key-0123456789"]):
        key = endpoints.verify_key(_settings(), vault_keys)
        assert key.startswith("verify-") and key not in command
        process = subprocess.Popen(["sh", "-c", command], stdin=subprocess.PIPE)
        write_stdin(key, process.stdin)
        assert process.wait(timeout=10) == 0
        assert path.read_text() == key and path.stat().st_mode & 0o777 == 0o600
        assert hashlib.sha256(path.read_bytes()).hexdigest() == hashlib.sha256(key.encode()).hexdigest()
        assert sorted(p.name for p in path.parent.iterdir()) == ["gateway.key"]  # no temporary file left
    assert endpoints.verify_key(_settings(), []) == ""  # auth off: no key, no file


def test_image_label() -> None:
    assert step.image_label(_settings()) == "tritonserver:25.05-py3"
    assert step.image_label(_settings(triton_image_digest="sha256:" + "0123456789ab" + "f" * 52)) == "tritonserver:25.05-py3@0123456789ab"


PY311 = {"implementation": "cpython", "version": "3.11", "machine": "x86_64", "libc": "glibc", "libc_version": "2.36"}
VENV_FACTS = {
    **{f"files.{k}": {} for k in ("File", "Sha1File", "Directory", "Sha256File")},
    "python.HostPython": PY311,
    "python.WheelDigests": {},
}


@pytest.fixture
def wheel_pool(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A controller cache already holding a wheel for every pin of the two CPU locks (no pip, no network)."""
    monkeypatch.setattr(wheels, "CACHE_DIR", tmp_path / "cache")
    pool = tmp_path / "cache" / wheels.pool_key(PY311)
    pool.mkdir(parents=True)
    for lock in (step.requirements_file(False), gateway.REQUIREMENTS, RUNTIME_INSTALLER):
        for name, version in wheels.pins(lock).items():
            (pool / f"{name.replace('-', '_')}-{version}-py3-none-any.whl").write_bytes(name.encode())
    return pool


def _install_commands(s: settings.Settings, paths_of: object, lock: Path, what: str, facts: dict | None = None) -> list:
    """The commands the pinned-venv operation runs on a host without the venv."""
    args = runtimes.venv_args(s, paths_of, lock, "Verify", what, runtimes.check_wheels_dir(s))
    commands, _ = run_operation(operations.pinned_venv, {**VENV_FACTS, **(facts or {})}, **args)
    return commands


def _install_command(s: settings.Settings, paths_of: object, lock: Path, what: str) -> str:
    """The pip command the pinned-venv operation runs on a host without the venv (the last it yields)."""
    return _install_commands(s, paths_of, lock, what)[-1]


def pip_install_command(s: settings.Settings, layout: paths.Layout) -> str:
    return _install_command(s, layout.verify, step.requirements_file(False), "the verify runtime")


def test_pip_install_sources(tmp_path: Path, wheel_pool: Path) -> None:
    s = _settings()
    command = pip_install_command(s, paths.layout(s))
    assert "--no-index --find-links /opt/triton-embeddinggemma/wheels /opt/triton-embeddinggemma/verify/requirements.txt" in command
    # uv, its binary taken from its own wheel (sent with the others), syncs a venv made without pip,
    # through the cache the runtimes share.
    commands = _install_commands(s, paths.layout(s).verify, step.requirements_file(False), "v")
    assert "python3 -m venv --without-pip /opt/triton-embeddinggemma/verify/venv" in commands
    (version,) = wheels.pins(RUNTIME_INSTALLER).values()
    uv = f"/opt/triton-embeddinggemma/uv/uv-{version}"
    assert operations.uv_from_wheel(f"/opt/triton-embeddinggemma/wheels/uv-{version}-py3-none-any.whl", uv) in commands
    assert command.startswith(
        f"timeout -k 10 1800 {uv} pip sync --quiet --no-config --offline --cache-dir /opt/triton-embeddinggemma/uv/cache "
        "--python /opt/triton-embeddinggemma/verify/venv/bin/python --require-hashes --only-binary=:all: "
    )
    assert command.endswith(
        "cp /opt/triton-embeddinggemma/verify/requirements.txt /opt/triton-embeddinggemma/verify/venv/installed-requirements.txt"
    )
    # A mirror is the controller's index (hosts need none): it goes into the controller's pip download only.
    mirror = _settings(verify_pip_index_url="https://pypi.example/simple")
    assert "--index-url" not in pip_install_command(mirror, paths.layout(mirror))
    assert wheels.download_command(step.requirements_file(False), PY311, tmp_path, "https://pypi.example/simple")[-6:-4] == [
        "--index-url",
        "https://pypi.example/simple",
    ]
    (tmp_path / "numpy-2.2.6-cp311-cp311-manylinux_2_17_x86_64.whl").write_bytes(b"")
    own = _settings(verify_wheels_dir=str(tmp_path))
    uploads = [c for c in _install_commands(own, paths.layout(own).verify, step.requirements_file(False), "v") if c[0] == "upload"]
    assert uploads[0] == [
        "upload",
        f"{tmp_path}/numpy-2.2.6-cp311-cp311-manylinux_2_17_x86_64.whl",
        "/opt/triton-embeddinggemma/wheels/numpy-2.2.6-cp311-cp311-manylinux_2_17_x86_64.whl",
    ]


def test_the_two_runtimes_share_the_wheels_sent(wheel_pool: Path) -> None:
    """The gateway's venv first (its step runs first), then verify's: a wheel both locks pin is sent once."""
    s = _settings()
    layout = paths.layout(s)
    assert layout.gateway.wheels == layout.verify.wheels == "/opt/triton-embeddinggemma/wheels"
    gateway_uploads = [c[1] for c in _install_commands(s, layout.gateway, gateway.REQUIREMENTS, "g") if c[0] == "upload"][:-1]
    on_host = {Path(p).name: hashlib.sha256(Path(p).read_bytes()).hexdigest() for p in gateway_uploads}
    assert len(on_host) == len(wheels.pins(gateway.REQUIREMENTS)) + 1  # and uv, which installs them
    assert layout.gateway.uv == layout.verify.uv == "/opt/triton-embeddinggemma/uv"  # one cache: a wheel unpacked once
    verify_uploads = [
        Path(c[1]).name
        for c in _install_commands(
            s,
            layout.verify,
            step.requirements_file(False),
            "v",
            {"python.WheelDigests": {"path=/opt/triton-embeddinggemma/wheels": on_host}},
        )
        if c[0] == "upload"
    ][:-1]
    shared = set(wheels.pins(gateway.REQUIREMENTS).items()) & set(wheels.pins(step.requirements_file(False)).items())
    assert len(shared) >= 10  # numpy, grpcio, tokenizers, huggingface-hub…
    assert len(verify_uploads) == len(wheels.pins(step.requirements_file(False))) - len(shared)
    assert not set(verify_uploads) & set(on_host)


def test_a_host_platform_is_fetched_for_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The controller's pip runs once per lock and host platform (then the manifest answers), for the
    host's platform, and a pin without a wheel for it is one line naming the pin and the platform."""
    calls: list[list[str]] = []
    lock = gateway.REQUIREMENTS

    def fake_pip(command: list[str], **kwargs: object) -> SimpleNamespace:
        calls.append(command)
        dest = Path(command[command.index("--dest") + 1])
        for name, version in wheels.pins(lock).items():
            (dest / f"{name.replace('-', '_')}-{version}-cp311-cp311-manylinux_2_17_x86_64.whl").write_bytes(b"w")
        return SimpleNamespace(returncode=0, stderr="")

    monkeypatch.setattr(wheels.subprocess, "run", fake_pip)
    for _ in range(3):
        _pool, names = wheels.fetch(lock, PY311, cache=tmp_path)
    assert len(calls) == 1 and len(names) == len(wheels.pins(lock))
    command = calls[0]
    assert command[command.index("--python-version") + 1] == "3.11"
    platforms = [command[i + 1] for i, arg in enumerate(command) if arg == "--platform"]
    assert platforms[0] == "manylinux_2_36_x86_64" and "manylinux_2_17_x86_64" in platforms and "manylinux2014_x86_64" in platforms
    assert {"--only-binary=:all:", "--require-hashes", "--no-deps"} <= set(command)

    def no_wheel(command: list[str], **kwargs: object) -> SimpleNamespace:
        return SimpleNamespace(
            returncode=1, stderr="ERROR: Could not find a version...\nERROR: No matching distribution found for numpy==2.2.6\n"
        )

    monkeypatch.setattr(wheels.subprocess, "run", no_wheel)
    arm = {**PY311, "machine": "aarch64", "version": "3.14"}
    with pytest.raises(wheels.WheelsError) as raised:
        wheels.fetch(lock, arm, cache=tmp_path)
    assert str(raised.value) == (
        "embeddings_gateway/requirements.txt pins numpy==2.2.6, which has no wheel for CPython 3.14 on aarch64 (glibc 2.36): "
        "pin a version with one in its .in file and run `make locks`"
    )


def test_host_python_fact_parses_this_machines_python() -> None:
    """The fact's command, run in a real shell here, parses into the platform pip is asked for."""
    out = subprocess.run(["sh", "-c", HostPython().command()], capture_output=True, text=True, check=True).stdout.splitlines()
    python = parse_host_python(out)
    assert python is not None and python["version"] == f"{sys.version_info[0]}.{sys.version_info[1]}" and python["libc"] == "glibc"
    assert wheels.platform_tags(python)[0].startswith("manylinux_2_")
    assert parse_host_python([]) is None and parse_host_python(["Traceback (most recent call last):"]) is None


def test_runtime_pins_are_exact() -> None:
    for gpu in (False, True):
        lock = parse_lock(step.requirements_file(gpu))
        assert lock and all(entry.version and entry.hashes for entry in lock.values())
    assert "onnxruntime-gpu" in parse_lock(step.requirements_file(True))


def test_the_runtimes_install_with_hashes_only(wheel_pool: Path, tmp_path: Path) -> None:
    s = _settings()
    layout = paths.layout(s)
    gateway_lock = gateway.REQUIREMENTS
    for command in (pip_install_command(s, layout), _install_command(s, layout.gateway, gateway_lock, "the gateway runtime")):
        assert " pip sync --quiet --no-config --offline " in command and " --require-hashes --only-binary=:all: --no-index " in command
    # Wheels of the user's own (verify_wheels_dir) without uv's: the venv's own pip, with the same flags.
    (tmp_path / "numpy-2.2.6-cp311-cp311-manylinux_2_17_x86_64.whl").write_bytes(b"")
    own = _settings(verify_wheels_dir=str(tmp_path))
    commands = _install_commands(own, paths.layout(own).verify, step.requirements_file(False), "v")
    assert "python3 -m venv /opt/triton-embeddinggemma/verify/venv" in commands
    assert (
        "/verify/venv/bin/pip install --quiet --disable-pip-version-check --no-compile --require-hashes --only-binary=:all: "
        in commands[-1]
    )


def test_user_mistakes_name_host_key_and_fix(tmp_path: Path) -> None:
    with pytest.raises(SettingsError, match=r"host web-1: setting verify_device='cuda' .* set verify_device: auto or cpu"):
        step.local_device(_settings(verify_device="cuda"), gpu=False)
    assert step.local_device(_settings(verify_device="cuda"), gpu=True) == "cuda"
    assert step.local_device(_settings(verify_device="auto"), gpu=False) == "cpu"
    with pytest.raises(SettingsError, match=r"host web-1: setting verify_wheels_dir=.* has no wheels; fill it with `pip download"):
        runtimes.check_wheels_dir(_settings(verify_wheels_dir=str(tmp_path)))
    (tmp_path / "numpy-2.2.6-cp311-cp311-manylinux_2_17_x86_64.whl").write_bytes(b"")
    assert runtimes.check_wheels_dir(_settings(verify_wheels_dir=str(tmp_path))) == tmp_path


def test_parse_parity_output_and_messages() -> None:
    report = {"verdict": "fail", "message": "parity FAIL: 2 failed checks (parity); worst sample 'd-ru' (grpc): cosine 0.9 < 0.9999"}
    lines = [f"{RC_MARKER}1", "__VERIFY_REPORT__", json.dumps(report), "", "__VERIFY_LOG__", "latency ...", "parity FAIL: ..."]
    outcome = parse_parity_output(lines)
    assert outcome["rc"] == 1 and outcome["report"] == report and outcome["log"].endswith("parity FAIL: ...")
    message = step.outcome_message("web-1", outcome, "reports/r/web-1.json")
    assert message == f"host web-1: {report['message']} (report: reports/r/web-1.json)"
    crashed = parse_parity_output([f"{RC_MARKER}127", "__VERIFY_REPORT__", "", "__VERIFY_LOG__", "sh: 1: /x/venv/bin/python: not found"])
    assert crashed["report"] is None
    assert step.outcome_message("web-1", crashed, None) == "host web-1: verify did not run (exit 127): sh: 1: /x/venv/bin/python: not found"
    passed = parse_parity_output([f"{RC_MARKER}0", "__VERIFY_REPORT__", '{"verdict": "pass", "message": "parity PASS"}', "__VERIFY_LOG__"])
    assert step.outcome_message("web-1", passed, "x") is None


def test_fleet_table_is_logged_once_when_the_last_host_reports(caplog: pytest.LogCaptureFixture) -> None:
    class FakeHost:
        def __init__(self, name: str) -> None:
            self.name = name

    hosts = [FakeHost(n) for n in ("a", "b", "c")]
    failed_early = hosts[2]  # failed before the verify step: not waited for

    class FakeState:  # a class, not a SimpleNamespace: the run context holds its State by weak reference
        def __init__(self) -> None:
            self.inventory = SimpleNamespace(iter_activated_hosts=lambda: iter(hosts))
            self.ops = {h: {"op1": object()} for h in hosts}
            self.failed_hosts = {failed_early}

    state = FakeState()
    report = {"verdict": "pass", "summary": {"min_cosine": 1.0, "max_abs_diff": 0.0}, "embeddings": {"s": [1.0, 0.0]}}
    with caplog.at_level(logging.INFO, logger="pyinfra"):
        step.record(state, "op1", HostResult("a", report), 0.9999)
        assert "fleet parity" not in caplog.text
        step.record(state, "op1", HostResult("b", {**report, "embeddings": {"s": [0.0, 1.0]}}), 0.9999)
        step.record(state, "op1", HostResult("b", report), 0.9999)  # a second call never prints twice
    assert caplog.text.count("fleet parity") == 1
    assert "fleet drift: host b vs a: sample 's'" in caplog.text


# -- the real CLI on this machine ----------------------------------------------------------------


@pytest.fixture(scope="module")
def deployment(hub: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, object]]:
    """A triton_dir laid out like the deploy's, served by a real tritonserver."""
    root = ts.triton_dir(tmp_path_factory.mktemp("triton"), hub, ts.cpu_config())
    # The verify step checks the served files' sha256 against the model lock: one for the tiny model.
    lock = tmp_path_factory.mktemp("lock") / "model.lock.json"
    files = model_lock.variant_files("fp32")
    model_lock.write(
        TINY_REPO, TINY_REVISION, {p: model_lock.LockEntry(model_lock.sha256_file(hub / p), (hub / p).stat().st_size) for p in files}, lock
    )
    ts.write_key(root, KEY)  # Triton restricts its model config: parity reads it with the host's key
    with ts.serve(root / "models", tmp_path_factory.mktemp("work"), extra_args=ts.restricted_args(KEY)) as server:
        yield {"root": root, "server": server, "reports": tmp_path_factory.mktemp("reports"), "lock": lock}


TINY_REPO = "tests/tiny-embeddinggemma-onnx"  # not a Hub repository: the tiny model's name in the test's lock
TINY_REVISION = "0" * 40


def _inventory(path: Path, root: Path, server: ts.Server, reports: Path, lock: Path) -> Path:
    data = {
        "model_repo_id": TINY_REPO,
        "model_revision": TINY_REVISION,
        "model_lock_file": str(lock),
        "model_require_lock": True,
        "gpu": False,
        "triton_dir": str(root),
        "triton_http_port": server.http_port,
        "triton_grpc_port": server.grpc_port,
        "triton_metrics_port": server.metrics_port,
        "verify_report_dir": str(reports),
        "verify_latency_iterations": 3,
        "verify_timeout_s": 10,
        "gateway_enabled": False,  # Triton alone here; parity through a real gateway: tests/test_verify_gateway.py
    }
    path.write_text(f"hosts = [('@local', {data!r})]\n")
    return path


def _pyinfra(inventory: Path, *extra: str) -> subprocess.CompletedProcess:
    command = [str(Path(sys.executable).parent / "pyinfra"), "-y", *extra, str(inventory), "deploys/verify.py"]
    return subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=600)


@pytest.mark.e2e
def test_verify_step_end_to_end(deployment: dict, tmp_path: Path) -> None:
    """First run installs the runtime and passes; the second changes nothing and keeps --json clean;
    Triton serving other weights fails the host naming the worst sample."""
    root, server, reports, lock = deployment["root"], deployment["server"], deployment["reports"], deployment["lock"]
    inventory = _inventory(tmp_path / "inventory.py", root, server, reports, lock)
    first = _pyinfra(inventory)
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]
    assert "parity PASS" in first.stdout + first.stderr
    saved = sorted(reports.glob("*/@local.json"))
    assert saved and json.loads(saved[-1].read_text())["verdict"] == "pass"

    second = _pyinfra(inventory, "--json")
    assert second.returncode == 0, second.stderr[-3000:]
    results = json.loads(second.stdout)["results"]  # stdout is pure JSON
    assert results["totals"]["no_change"] == results["totals"]["hosts"] > 0 and results["totals"]["success"] == 0
    assert "fleet parity" in second.stderr and "PASS" in second.stderr

    hub = tmp_path / "perturbed"
    tinymodel.write_all(hub, perturb=0.02)
    other = ts.triton_dir(tmp_path / "other", hub, ts.cpu_config())
    with ts.serve(other / "models", tmp_path / "work", extra_args=ts.restricted_args(KEY)) as wrong:
        third = _pyinfra(_inventory(tmp_path / "wrong.py", root, wrong, reports, lock))
    assert third.returncode != 0
    output = third.stdout + third.stderr
    assert "host @local: parity FAIL" in output and "worst sample '" in output and "FAIL" in output


def _reuse_world(tmp_path: Path) -> tuple[settings.Settings, Any, dict[str, str], Path]:
    """A host's verify directory under ``tmp_path`` with stand-ins for what the key reads (docker and
    systemctl print what their files say) and for the check (a venv python that counts its runs and
    exits with what ``rc`` says, writing a report): the command's own shell logic runs for real."""
    root = tmp_path / "triton"
    s = _settings(triton_dir=str(root))
    layout = paths.layout(s)
    bin_dir, venv_bin = tmp_path / "bin", Path(layout.verify.venv) / "bin"
    for d in (bin_dir, venv_bin, Path(layout.current_release.version_dir)):
        d.mkdir(parents=True, exist_ok=True)
    (Path(layout.current_release.version_dir) / "model.onnx").write_text("graph")
    for name in ("docker", "systemctl"):
        (tmp_path / f"{name}.out").write_text(f"{name} state 1\n")
        (bin_dir / name).write_text(f"#!/bin/sh\ncat {tmp_path}/{name}.out\n")
    (tmp_path / "rc").write_text("0")
    python = venv_bin / "python"
    python.write_text(
        "#!/bin/sh\n"
        f"echo run >> {tmp_path}/runs\n"
        'while [ $# -gt 0 ]; do [ "$1" = --report ] && report=$2; shift; done\n'
        'echo \'{"verdict": "pass", "message": "parity PASS: fake"}\' > "$report"\n'
        f"exit $(cat {tmp_path}/rc)\n"
    )
    for f in (*bin_dir.iterdir(), python):
        f.chmod(0o755)
    env = {"PATH": f"{bin_dir}:/usr/bin:/bin"}
    return s, layout, env, tmp_path


def _run_check(s: settings.Settings, layout: Any, env: dict[str, str], **kwargs: Any) -> dict[str, Any]:
    command = step.parity_command(s, layout, "cpu", **kwargs)
    done = subprocess.run(["sh", "-c", command], env=env, capture_output=True, text=True, timeout=30, check=True)
    return parse_parity_output(done.stdout.splitlines())


def test_a_run_that_changed_nothing_reuses_the_last_pass_until_something_it_checked_changes(tmp_path: Path) -> None:
    s, layout, env, world = _reuse_world(tmp_path)
    runs = lambda: len((world / "runs").read_text().split()) if (world / "runs").exists() else 0  # noqa: E731

    first = _run_check(s, layout, env, keep_pass=True, reuse_s=3600)
    assert runs() == 1 and first["rc"] == 0 and first["reused_age_s"] is None and Path(layout.verify.passed_key).exists()
    again = _run_check(s, layout, env, keep_pass=True, reuse_s=3600)
    assert runs() == 1 and again["rc"] == 0 and again["reused_age_s"] is not None and 0 <= again["reused_age_s"] < 5
    assert again["report"] == {"verdict": "pass", "message": "parity PASS: fake"}
    # Each thing the key reads, changed: the check runs again (then the next run reuses that one).
    for change in (
        lambda: (world / "docker.out").write_text("docker state 2\n"),  # Triton's container restarted
        lambda: (world / "systemctl.out").write_text("systemctl state 2\n"),  # the gateway restarted
        lambda: (Path(layout.current_release.version_dir) / "model.onnx").write_text("other graph"),  # a served file
    ):
        before = runs()
        change()
        assert _run_check(s, layout, env, keep_pass=True, reuse_s=3600)["reused_age_s"] is None and runs() == before + 1
        assert _run_check(s, layout, env, keep_pass=True, reuse_s=3600)["reused_age_s"] is not None and runs() == before + 1
    # Another setting of the check (its flags): runs.
    other = _settings(triton_dir=s.triton_dir, verify_min_cosine=0.999)
    assert _run_check(other, layout, env, keep_pass=True, reuse_s=3600)["reused_age_s"] is None
    # Too old (reuse_s 1, a key two seconds old): runs.
    before = runs()
    os.utime(layout.verify.passed_key, (time.time() - 2, time.time() - 2))
    assert _run_check(other, layout, env, keep_pass=True, reuse_s=1)["reused_age_s"] is None and runs() == before + 1
    # Something changed this run (reuse_s 0): runs, and keeps its pass for the next run.
    assert _run_check(other, layout, env, keep_pass=True, reuse_s=0)["reused_age_s"] is None and runs() == before + 2
    assert _run_check(other, layout, env, keep_pass=True, reuse_s=3600)["reused_age_s"] is not None and runs() == before + 2
    # A failing check leaves nothing to reuse: the next run checks again.
    (world / "rc").write_text("1")
    (world / "docker.out").write_text("docker state 3\n")
    assert _run_check(other, layout, env, keep_pass=True, reuse_s=3600)["rc"] == 1 and not Path(layout.verify.passed_key).exists()
    assert _run_check(other, layout, env, keep_pass=True, reuse_s=3600)["rc"] == 1 and runs() == before + 4
    # verify_reuse_s 0, or a roll's Triton-only check (no keep_pass): nothing kept, the old key removed.
    (world / "rc").write_text("0")
    _run_check(other, layout, env, keep_pass=True, reuse_s=3600)
    assert Path(layout.verify.passed_key).exists()
    _run_check(other, layout, env, gateway_too=False)
    assert not Path(layout.verify.passed_key).exists()


def test_the_verify_step_reuses_a_pass_only_in_a_run_that_changed_nothing_on_the_host() -> None:
    class Meta:
        def __init__(self, complete: bool, executed: bool) -> None:
            self.complete, self.executed = complete, executed

        def is_complete(self) -> bool:
            return self.complete

    class Op:
        def __init__(self, complete: bool, executed: bool) -> None:
            self.operation_meta = Meta(complete, executed)

    class State:
        def __init__(self, ops: dict[str, list[Op]]) -> None:
            self.ops = {name: {str(i): op for i, op in enumerate(items)} for name, items in ops.items()}

    state = State({"a": [Op(True, False), Op(False, False)], "b": [Op(True, False), Op(True, True)], "c": [Op(False, True)]})
    assert not step.changed_this_run(state, "a") and step.changed_this_run(state, "b")
    assert not step.changed_this_run(state, "c") and not step.changed_this_run(state, "nobody")  # not yet run: no change
