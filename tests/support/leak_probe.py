"""Run the real pyinfra CLI with its ``@fake`` (and ``@local``) connector recording what it ran.

pyinfra's own FakeConnector keeps only the *masked* command text; for leak tests we need the raw
text every host would have executed and the stdin it would have received. This wrapper patches the
two connectors' ``run_shell_command``/``put_file`` to append one JSON line per call to the file in
``$PYINFRA_PROBE_RECORD``, then runs the unchanged CLI::

    PYINFRA_PROBE_RECORD=rec.jsonl python -m tests.support.leak_probe -y inventory.py deploy.py

:func:`run` does that from a test and returns exit status, combined output and the records.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[2]


def _record(entry: dict[str, Any]) -> None:
    with open(os.environ["PYINFRA_PROBE_RECORD"], "a") as f:
        f.write(json.dumps(entry) + "\n")


def _patch() -> None:
    """Wrap the connectors so every command (raw, unmasked) and its stdin are recorded."""
    from pyinfra.connectors.fake import FakeConnector
    from pyinfra.connectors.local import LocalConnector

    for cls in (FakeConnector, LocalConnector):
        run_shell, put = cls.run_shell_command, cls.put_file

        def run_shell_command(self, command, print_output=False, print_input=False, _orig=run_shell, **arguments):
            raw = command if isinstance(command, str) else command.get_raw_value()
            stdin = arguments.get("_stdin")
            _record(
                {
                    "host": self.host.name,
                    "kind": "command",
                    "command": raw,
                    "stdin": stdin if isinstance(stdin, (str, type(None))) else str(stdin),
                }
            )
            return _orig(self, command, print_output=print_output, print_input=print_input, **arguments)

        def put_file(self, filename_or_io, remote_filename, *args, _orig=put, **kwargs):
            src = filename_or_io if isinstance(filename_or_io, str) else "<io>"
            entry = {"host": self.host.name, "kind": "put", "src": src, "dest": remote_filename}
            if hasattr(filename_or_io, "getvalue"):  # rendered text (files.put of a StringIO): what the host receives
                value = filename_or_io.getvalue()
                entry["content"] = value.decode(errors="replace") if isinstance(value, bytes) else value
            _record(entry)
            return _orig(self, filename_or_io, remote_filename, *args, **kwargs)

        cls.run_shell_command = run_shell_command
        cls.put_file = put_file


@dataclass
class Result:
    rc: int
    output: str  # stdout + stderr
    stdout: str
    records: list[dict[str, Any]]

    def commands(self) -> list[str]:
        return [r["command"] for r in self.records if r["kind"] == "command"]

    def stdins(self) -> list[str]:
        return [r["stdin"] for r in self.records if r["kind"] == "command" and r.get("stdin")]

    def changed_ops(self) -> dict[str, int]:
        """From ``--json`` output: operation name -> number of hosts where it changed something."""
        data = json.loads(self.stdout)
        return {name: len(op.get("success", [])) for name, op in _operations(data).items() if op.get("success")}


def _operations(data: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """``--json`` results by operation name: ``{"success": [hosts], "no_change": [...], "error": [...]}``."""
    return {op["name"]: op for op in data["results"]["operations"]}


def run(tmp: Path, args: list[str], env: dict[str, str] | None = None, timeout: int = 240) -> Result:
    """Run ``pyinfra -y ARGS`` from the repository root through this probe."""
    record = tmp / f"probe-{len(list(tmp.glob('probe-*.jsonl')))}.jsonl"
    record.touch()
    full_env = {
        **os.environ,
        **(env or {}),
        "PYINFRA_PROBE_RECORD": str(record),
        "PYINFRA_FAKE_DELAY": "0",
        "PYINFRA_FAKE_DELAY_JITTER": "0",
    }
    proc = subprocess.run(
        [sys.executable, "-m", "tests.support.leak_probe", "-y", *args],
        cwd=REPO_ROOT,
        env=full_env,
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
    )
    records = [json.loads(line) for line in record.read_text().splitlines() if line.strip()]
    return Result(proc.returncode, proc.stdout + proc.stderr, proc.stdout, records)


if __name__ == "__main__":
    _patch()
    from pyinfra_cli.main import main

    sys.argv = ["pyinfra", *sys.argv[1:]]
    sys.exit(main())
