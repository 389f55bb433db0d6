"""The shared operations (deploys/core/operations.py) case by case, in pyinfra's style
(pyinfra's tests/test_operations.py): each tests/operations/<op>/<case>.json gives the arguments
and the facts, and the commands the operation must yield, or the reason it gives for yielding none
(``noop_description``), or the exception; ``local_modes`` fixes controller files' modes first. A case with ``secret`` checks that the secret is in no
command line (only on stdin). Then the failure paths, run in a real shell: a refused candidate, a
reload that does not confirm, a wait past its bound."""

from __future__ import annotations

import json
import os
import stat
import subprocess
from pathlib import Path

import pytest
from pyinfra.connectors.util import write_stdin

from deploys.core import operations
from tests.support.operation_runner import run, shell_of

CASES_DIR = Path(__file__).resolve().parent / "operations"
CASES = sorted(p for p in CASES_DIR.glob("*/*.json"))
OPERATIONS = ("secret_file", "validated_config", "pinned_venv", "wait_ready")


def test_every_operation_has_cases() -> None:
    for name in OPERATIONS:
        assert hasattr(getattr(operations, name), "_inner"), f"{name} is not a pyinfra @operation"
        cases = [p for p in CASES if p.parent.name == name]
        assert len(cases) >= 3, f"{name}: {len(cases)} JSON cases"
    assert {p.parent.name for p in CASES} == set(OPERATIONS)


@pytest.mark.parametrize("path", CASES, ids=[f"{p.parent.name}/{p.stem}" for p in CASES])
def test_operation_case(path: Path) -> None:
    case = json.loads(path.read_text())
    op = getattr(operations, path.parent.name)
    for local, mode in case.get("local_modes", {}).items():  # files.sync copies local modes: not the checkout's umask
        (CASES_DIR.parent.parent / local).chmod(int(mode, 8))
    if "exception" in case:
        with pytest.raises(Exception) as raised:
            run(op, case["facts"], *case.get("args", []), **case.get("kwargs", {}))
        assert type(raised.value).__name__ == case["exception"]["name"]
        assert str(raised.value) == case["exception"]["message"]
        return
    commands, noop = run(op, case["facts"], *case.get("args", []), **case.get("kwargs", {}))
    assert commands == case["commands"], json.dumps(commands, indent=4)
    if not commands:
        assert noop is not None and noop == case["noop_description"], noop
    if "secret" in case:
        lines = [c["command"] if isinstance(c, dict) else c for c in commands]
        assert not [line for line in lines if case["secret"] in json.dumps(line)], "a secret on a command line"
        if commands:
            assert any(isinstance(c, dict) and case["secret"] in c["_stdin"] for c in commands), "the secret goes by stdin"


# -- failure paths in a real shell ---------------------------------------------------------------------


def _sh(command: str, stdin: str = "", path: Path | None = None) -> subprocess.CompletedProcess[str]:
    """``command`` in sh, ``stdin`` fed the way pyinfra's connectors feed ``_stdin`` (write_stdin)."""
    env = {**os.environ, "PATH": f"{path}:{os.environ['PATH']}"} if path else None
    process = subprocess.Popen(["sh", "-c", command], stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    if stdin:
        write_stdin(stdin, process.stdin)  # it closes stdin
    else:
        process.stdin.close()
    process.stdin = None
    out, err = process.communicate(timeout=60)
    return subprocess.CompletedProcess(command, process.returncode, out.decode(), err.decode())


def _apply(commands: list, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    """Run the yielded commands in order as pyinfra would (uploads copied, stdin fed); stop at the first failure."""
    result = subprocess.CompletedProcess([], 0, "", "")
    for command in commands:
        if isinstance(command, list):  # ["upload", text, dest]
            Path(command[2]).write_text(command[1])
            continue
        shell, stdin = (command["command"], command["_stdin"]) if isinstance(command, dict) else (command, "")
        result = _sh(shell, stdin)
        if result.returncode:
            return result
    return result


def _config(tmp_path: Path, text: str, **kwargs: str) -> subprocess.CompletedProcess[str]:
    live = tmp_path / "app.cfg"
    commands, _ = run(operations.validated_config, {"files.Sha256File": {}}, str(live), text, **kwargs)
    return _apply(commands, tmp_path)


def test_a_refused_candidate_never_goes_live(tmp_path: Path) -> None:
    live = tmp_path / "app.cfg"
    live.write_text("old\n")
    log = tmp_path / "reloads"
    result = _config(tmp_path, "bad\n", check=f"grep -q good {live}.candidate", reload=f"echo reload >> {log}")
    assert result.returncode != 0
    assert "the check failed; the live config is unchanged" in result.stderr
    assert live.read_text() == "old\n" and not log.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["app.cfg"]  # no candidate, no previous left


def test_a_config_that_does_not_confirm_is_replaced_by_the_old_one(tmp_path: Path) -> None:
    live = tmp_path / "app.cfg"
    live.write_text("old\n")
    log = tmp_path / "reloads"
    result = _config(tmp_path, "new\n", check="true", reload=f"echo reload >> {log}", confirm=f"grep -q old {live}")
    assert result.returncode == 1
    assert "the new config did not take; the previous config is back" in result.stderr
    assert live.read_text() == "old\n" and not (tmp_path / "app.cfg.previous").exists()
    assert log.read_text().splitlines() == ["reload", "reload"]  # the new one, then the old one again


def test_a_confirmed_config_stays_live(tmp_path: Path) -> None:
    live = tmp_path / "app.cfg"
    live.write_text("old\n")
    # A confirm that ends with exit 0 (a ready poll does) still clears the kept old file.
    result = _config(tmp_path, "new\n", check="true", reload="true", confirm=f"grep -q new {live} && exit 0", mode="640")
    assert result.returncode == 0, result.stderr
    assert live.read_text() == "new\n" and stat.S_IMODE(live.stat().st_mode) == 0o640
    assert sorted(p.name for p in tmp_path.iterdir()) == ["app.cfg"]


def test_a_first_install_that_does_not_confirm_leaves_no_config(tmp_path: Path) -> None:
    result = _config(tmp_path, "new\n", reload="true", confirm="false")
    assert result.returncode == 1 and not (tmp_path / "app.cfg").exists()


def test_a_secret_file_is_written_from_stdin_0600_by_rename(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "secret.pem"
    commands, _ = run(operations.secret_file, {"files.Sha256File": {}}, str(path), "PEM-canary")
    assert _apply(commands, tmp_path).returncode == 0
    assert path.read_text() == "PEM-canary\n" and stat.S_IMODE(path.stat().st_mode) == 0o600
    assert operations.digest("PEM-canary") == __import__("hashlib").sha256(path.read_bytes()).hexdigest()
    assert sorted(p.name for p in path.parent.iterdir()) == ["secret.pem"]  # no temporary file left
    copy = tmp_path / "copy.pem"
    commands, _ = run(operations.secret_file, {"files.Sha256File": {}}, str(copy), src_on_host=str(path), mode="640")
    assert _apply(commands, tmp_path).returncode == 0
    assert copy.read_bytes() == path.read_bytes() and stat.S_IMODE(copy.stat().st_mode) == 0o640


def test_wait_ready_runs_its_failure_past_the_bound_and_its_success_once_ready(tmp_path: Path) -> None:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "curl").write_text('#!/bin/sh\ncat "$CURL_ANSWER"\n')
    (bin_dir / "curl").chmod(0o755)
    answer = tmp_path / "answer"
    answer.write_text("503")
    args = {"url": "http://127.0.0.1:1/ready", "timeout_s": 2, "failure_line": "not ready within 2s", "logs": "echo LOG"}
    command = shell_of(operations.wait_ready, **args, on_failure=f"touch {tmp_path}/failed", on_success=f"touch {tmp_path}/ok")
    os.environ["CURL_ANSWER"] = str(answer)
    try:
        result = _sh(command, path=bin_dir)
        assert result.returncode == 1 and result.stderr.splitlines() == ["not ready within 2s", "LOG"]
        assert (tmp_path / "failed").exists() and not (tmp_path / "ok").exists()
        answer.write_text("200")
        assert _sh(command, path=bin_dir).returncode == 0 and (tmp_path / "ok").exists()
    finally:
        del os.environ["CURL_ANSWER"]
