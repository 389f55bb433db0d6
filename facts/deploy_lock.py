"""The deploy lock on a host (deploys/deploy_lock/logic.py builds the commands, which print this).

Every lock command exits 0 and prints one status line ``__DEPLOY_LOCK__=<status>``, then
``key=value`` lines: the holder's record when the lock is held (``holder``, ``pid``, ``started``,
``run``), ``age_s`` (seconds since the lock was taken, by the host's clock), ``last`` (the run
that released the lock last). Statuses: ``free`` / ``held`` (status command), ``acquired``,
``held``, ``moved`` (acquire: another run released the lock after this run read the host),
``released``, ``not-ours`` (release), ``error``.
"""

from __future__ import annotations

from typing import Any

from pyinfra.api import FactBase

STATUS_MARKER = "__DEPLOY_LOCK__="
RECORD_KEYS = ("holder", "pid", "started", "run")


class DeployLock(FactBase[dict[str, Any]]):
    """
    Runs one deploy-lock command and returns ``{"status", "record", "age_s", "last", "detail"}``
    (:func:`parse_lock_output`).
    """

    def command(self, command: str) -> str:
        return command

    @staticmethod
    def default() -> dict[str, Any]:
        return parse_lock_output([])

    def process(self, output: list[str]) -> dict[str, Any]:
        return parse_lock_output(output)


def parse_lock_output(lines: list[str]) -> dict[str, Any]:
    """The lock command's output: status (None when no status line came), the holder's record
    (only the keys present), age in seconds (None when absent), the last run and any other line."""
    status: str | None = None
    record: dict[str, str] = {}
    age: int | None = None
    last: str | None = None
    detail: list[str] = []
    for raw in lines:
        line = raw.strip()
        if not line:
            continue
        if line.startswith(STATUS_MARKER):
            status = line[len(STATUS_MARKER) :].strip() or None
            continue
        key, sep, value = line.partition("=")
        if sep and key in RECORD_KEYS:
            record[key] = value.strip()
        elif sep and key == "age_s":
            try:
                age = max(0, int(value.strip()))
            except ValueError:
                age = None
        elif sep and key == "last":
            last = value.strip()
        else:
            detail.append(line)
    return {"status": status, "record": record, "age_s": age, "last": last, "detail": " ".join(detail)}
