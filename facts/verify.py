"""The parity check's outcome on a host (deploys/triton/verify_run.py builds the command)."""

from __future__ import annotations

import json
from typing import Any

from pyinfra.api import FactBase

from facts._shell import split_rc

# The parity command prints its exit status (facts._shell.RC_MARKER), then these sections.
REPORT_MARKER, LOG_MARKER = "__VERIFY_REPORT__", "__VERIFY_LOG__"
# Printed instead of a report when the host has no verify runtime yet (deploys/triton/verify_run.py roll_check_command).
NOTHING_TO_CHECK = "__VERIFY_NOTHING_TO_CHECK__"
# Printed, with the last passing check's age in seconds, when the host reused that check's report
# instead of running it again (nothing it checked has changed since: verify_run.parity_command).
REUSED_MARKER = "__VERIFY_REUSED__="


class ParityRun(FactBase[dict[str, Any]]):
    """
    Runs the parity check and returns ``{"rc": int | None, "report": dict | None, "log": str}``;
    reads Triton and the model files, writes only its own report and log under {triton_dir}/verify.
    """

    def command(self, command: str) -> str:
        return command

    @staticmethod
    def default() -> dict[str, Any]:
        return {}

    def process(self, output: list[str]) -> dict[str, Any]:
        return parse_parity_output(output)


def parse_parity_output(lines: list[str]) -> dict[str, Any]:
    """{"rc": int | None, "report": dict | None, "log": str, "reused_age_s": int | None} from the parity
    command's output; ``reused_age_s``: the host reused its last passing check, that many seconds old."""
    lines, rc = split_rc(lines)
    section = None
    report_lines: list[str] = []
    log_lines: list[str] = []
    reused: int | None = None
    for line in lines:
        if section is None and line.startswith(REUSED_MARKER):
            try:
                reused = max(0, int(line[len(REUSED_MARKER) :].strip()))
            except ValueError:
                reused = None
        elif line.strip() == REPORT_MARKER:
            section = "report"
        elif line.strip() == LOG_MARKER:
            section = "log"
        elif section == "report":
            report_lines.append(line)
        elif section == "log":
            log_lines.append(line)
    report = None
    text = "\n".join(report_lines).strip()
    if text:
        try:
            report = json.loads(text)
        except ValueError:
            report = None
    return {"rc": rc, "report": report if isinstance(report, dict) else None, "log": "\n".join(log_lines), "reused_age_s": reused}
