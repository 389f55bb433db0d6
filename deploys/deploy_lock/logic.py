"""The deploy lock: one run at a time changes a host.

Every host the deploy touches (Triton hosts, front door, monitoring, registry cache) gets the lock
as its first operation and gives it back as its last (deploys/deploy_lock/step.py, routed from
deploys/all.py and deploys/rollback.py). pyinfra runs each operation on every host before the next,
so the first operation takes every host's lock before any host changes.

On the host (deploys/core/paths.py, ``DEPLOY_LOCK_*``): ``mkdir held`` is the atomic test-and-set;
``held/record`` names the holder (``user@controller``, controller pid, UTC start time, run id).
Both operations work like deploys/triton/verify_run.parity_check: nothing is planned, at execution the
lock command runs as a fact (so a converged re-run still reports 0 changed operations) and the
operation yields a command only to fail the host, with one line naming the holder.

- Held by another run: that host fails at once, nothing changed on it. A lock older than
  ``deploy_lock_stale_s`` (by the host's clock), or whose pid no longer runs on this same
  controller, is stale: taken over with one warning line (compare-and-move on its run id, so two
  runs taking over the same stale lock cannot both win).
- Read and taken: the plan is made before the lock is taken, so the acquire also checks that no
  other run released the host's lock since this run read it (``last-run``); if one did, this run's
  plan is stale and the host fails with one line asking for a re-run.
- Given back: by the last operation, or by a state callback when an operation fails on the host
  (:class:`ReleaseOnFailure`), only when the record is this run's.
- ``--dry``: pyinfra executes nothing, so no lock is taken (only the read-only status fact runs).
"""

from __future__ import annotations

import os
import shlex
import time
from collections.abc import Callable
from typing import Any

from pyinfra import host, logger
from pyinfra.api import FunctionCommand, operation
from pyinfra.api.state import BaseStateCallback, StateStage

from deploys.core import context, events, run
from deploys.core.paths import DEPLOY_LOCK_DIR, DEPLOY_LOCK_HELD, DEPLOY_LOCK_LAST_RUN, DEPLOY_LOCK_RECORD
from facts.deploy_lock import STATUS_MARKER, DeployLock

# Each command starts with its label: a no-op that names it in -vv output (and in the fake hosts' answers).
STATUS_LABEL, ACQUIRE_LABEL, RELEASE_LABEL = ": deploy-lock status;", ": deploy-lock acquire;", ": deploy-lock release;"
CLEAR_COMMAND = f"rm -rf {DEPLOY_LOCK_HELD}"

_q = shlex.quote


def _status(value: str) -> str:
    return f"echo {STATUS_MARKER}{value}"


def _paths(base: str) -> tuple[str, str, str, str]:
    """The lock directory, ``held``, ``held/record`` and ``last-run`` under ``base`` (tests run the
    commands under a temporary directory; the deploy uses paths.DEPLOY_LOCK_DIR)."""
    if base == DEPLOY_LOCK_DIR:
        return DEPLOY_LOCK_DIR, DEPLOY_LOCK_HELD, DEPLOY_LOCK_RECORD, DEPLOY_LOCK_LAST_RUN
    return base, f"{base}/held", f"{base}/held/record", f"{base}/last-run"


def _run_of_record(record: str) -> str:
    return f"sed -n 's/^run=//p' {_q(record)} 2>/dev/null"


def _held_report(base: str) -> str:
    """Prints ``held``, the holder's record and the lock's age by the host's clock."""
    _, held, record, _ = (_q(p) for p in _paths(base))
    return (
        f"{_status('held')}; cat {record} 2>/dev/null; echo; "
        f'now=$(date +%s); echo "age_s=$(( now - $(stat -c %Y {held} 2>/dev/null || echo $now) ))"'
    )


def record_lines(holder: str, pid: int, started: str, run_id: str) -> list[str]:
    """The lines of ``held/record``."""
    return [f"holder={holder}", f"pid={pid}", f"started={started}", f"run={run_id}"]


def this_run_record() -> list[str]:
    return record_lines(run.holder(), os.getpid(), started_utc(run.STARTED), run.RUN_ID)


def started_utc(epoch: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(epoch))


def status_command(base: str = DEPLOY_LOCK_DIR) -> str:
    """Read-only: is the lock held (and by whom), and which run released it last."""
    _, held, _, last = (_q(p) for p in _paths(base))
    return (
        f"{STATUS_LABEL} if [ -d {held} ]; then {_held_report(base)}; else {_status('free')}; fi; "
        f'echo "last=$(cat {last} 2>/dev/null)"; true'
    )


def acquire_command(record: list[str], expected_last: str, take_over: str | None = None, base: str = DEPLOY_LOCK_DIR) -> str:
    """Take the lock: ``acquired`` (record written), ``held`` (someone else's record and age) or
    ``moved`` (the lock was free, but another run released it after this run read ``last-run``:
    ``expected_last``). ``take_over``: the run id of a stale record to move away first (only if
    the record still names that run)."""
    d, held, record_file, last = (_q(p) for p in _paths(base))
    run_id = dict(line.split("=", 1) for line in record)["run"]
    stale_dir = _q(f"{base}/stale.{run_id}")
    steal = ""
    if take_over is not None:
        steal = f'if [ -d {held} ] && [ "$({_run_of_record(_paths(base)[2])})" = {_q(take_over)} ]; then mv -T {held} {stale_dir} 2>/dev/null && rm -rf {stale_dir}; fi; '
    tmp = _q(f"{_paths(base)[2]}.tmp")
    return (
        f"{ACQUIRE_LABEL} mkdir -p {d} 2>/dev/null || {{ {_status('error')}; echo cannot create {d}; exit 0; }}; "
        + steal
        + f"if mkdir {held} 2>/dev/null; then "
        f"last_run=$(cat {last} 2>/dev/null || true); "
        f'if [ "$last_run" = {_q(expected_last)} ]; then '
        f"printf '%s\\n' {' '.join(_q(line) for line in record)} > {tmp} && mv -f {tmp} {record_file} && {_status('acquired')} "
        f"|| {{ rm -rf {held}; {_status('error')}; echo cannot write {record_file}; }}; "
        f'else rm -rf {held}; {_status("moved")}; echo "last=$last_run"; fi; '
        f"else {_held_report(base)}; fi; true"
    )


def release_command(run_id: str, base: str = DEPLOY_LOCK_DIR) -> str:
    """Give the lock back if this run holds it: ``last-run`` takes the run id, then ``held`` goes."""
    _, held, record, last = _paths(base)
    tmp = _q(f"{last}.{run_id}")
    return (
        f'{RELEASE_LABEL} if [ "$({_run_of_record(record)})" = {_q(run_id)} ]; then '
        f"echo {_q(run_id)} > {tmp} && mv -f {tmp} {_q(last)} && rm -rf {_q(held)} && {_status('released')}; "
        f"else {_status('not-ours')}; cat {_q(record)} 2>/dev/null; fi; true"
    )


# -- the controller's side: the stale rule and the messages -------------------------------------


def pid_alive(pid: int) -> bool:
    """Whether ``pid`` runs on this controller (a pid of another user's process counts as running)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def stale_reason(
    record: dict[str, str], age_s: int | None, stale_s: int, controller: str, alive: Callable[[int], bool] = pid_alive
) -> str | None:
    """Why the lock ``record`` (``age_s`` old) is stale, or None when it is live: older than
    ``stale_s``, or held by a pid that no longer runs on this same ``controller``."""
    if age_s is not None and age_s > stale_s:
        return f"older than deploy_lock_stale_s={stale_s}s ({age_s}s)"
    _, _, holder_host = record.get("holder", "").rpartition("@")
    pid = record.get("pid", "")
    if holder_host == controller and pid.isdigit() and int(pid) > 0 and not alive(int(pid)):
        return f"its pid {pid} no longer runs on {controller}"
    return None


def describe(record: dict[str, str]) -> str:
    """``alice@ctl (pid 4242, since 2026-12-02T06:00:00Z, run 20261202T060000Z-4242)``."""
    if not record:
        return "a deploy whose record is not written yet or is lost"
    get = lambda key: record.get(key) or "?"  # noqa: E731
    return f"{get('holder')} (pid {get('pid')}, since {get('started')}, run {get('run')})"


def held_message(host_name: str, record: dict[str, str], stale_s: int) -> str:
    """The one line of a host whose lock another run holds."""
    return (
        f"host {host_name}: deploy lock held by {describe(record)}; nothing changed on this host. "
        f"Wait for that run to end; if it is gone, clear the lock with `ssh {host_name} sudo {CLEAR_COMMAND}` "
        f"(a lock older than deploy_lock_stale_s={stale_s}s, or whose pid is gone from its own controller, is taken over by itself)"
    )


def moved_message(host_name: str, last: str | None) -> str:
    return (
        f"host {host_name}: deploy run {last or '?'} changed this host after this run read it (this run's plan is stale); "
        "nothing changed on this host by this run; run the deploy again"
    )


def error_message(host_name: str, outcome: dict[str, Any]) -> str:
    detail = outcome.get("detail") or "no answer from the lock command"
    return f"host {host_name}: cannot take the deploy lock under {DEPLOY_LOCK_DIR}: {detail}; nothing changed on this host"


def takeover_warning(host_name: str, record: dict[str, str], reason: str) -> str:
    return f"host {host_name}: deploy lock of {describe(record)} is stale ({reason}): taken over by run {run.RUN_ID}"


# -- the operations --------------------------------------------------------------------------------


def _fail(state: Any, host: Any, message: str) -> bool:  # pyinfra passes state and host
    logger.error(f"{host.print_prefix}{message}")
    return False


@operation(is_idempotent=True)
def acquire(stale_s: int, expected_last: str):
    """Take this host's deploy lock at execution time; yields a command only to fail the host."""
    state = host.state
    if state.current_stage != StateStage.Execute:
        return
    record = this_run_record()
    outcome = host.get_fact(DeployLock, command=acquire_command(record, expected_last))
    if outcome["status"] == "held":
        reason = stale_reason(outcome["record"], outcome["age_s"], stale_s, run.CONTROLLER)
        if reason:
            events.write(state, "lock taken over", host.name, detail=reason, holder=outcome["record"])
            logger.warning(f"{host.print_prefix}{takeover_warning(host.name, outcome['record'], reason)}")
            taken = outcome["record"].get("run", "")
            outcome = host.get_fact(DeployLock, command=acquire_command(record, expected_last, take_over=taken))
    status = outcome["status"]
    if status == "acquired":
        ctx = context.of(state)
        with ctx.lock:
            ctx.held_locks.add(host.name)
        events.write(state, "lock acquired", host.name)
        return
    if status == "held":
        message = held_message(host.name, outcome["record"], stale_s)
    elif status == "moved":
        message = moved_message(host.name, outcome["last"])
    else:
        message = error_message(host.name, outcome)
    events.write(state, "lock refused", host.name, detail=message, status=status)
    yield FunctionCommand(_fail, (message,), {})


def give_back(state: Any, target: Any) -> None:
    """Release ``target``'s lock if this run holds it there (a warning when it no longer does)."""
    ctx = context.of(state)
    with ctx.lock:
        if target.name not in ctx.held_locks:
            return
        ctx.held_locks.discard(target.name)
    outcome = target.get_fact(DeployLock, command=release_command(run.RUN_ID))
    events.write(state, "lock released" if outcome["status"] == "released" else "lock not ours", target.name)
    if outcome["status"] != "released":
        logger.warning(
            f"{target.print_prefix}host {target.name}: the deploy lock was no longer this run's "
            f"({describe(outcome['record']) if outcome['record'] else 'none held'}); left as it is"
        )


@operation(is_idempotent=True)
def release():
    """Give this host's deploy lock back at execution time (the last operation); plans nothing."""
    state = host.state
    if state.current_stage != StateStage.Execute:
        return
    give_back(state, host)
    # The last operation of a deploy: the host came through every one before it.
    events.write(state, "outcome", host.name, result="done")
    yield from ()


class ReleaseOnFailure(BaseStateCallback):
    """Gives a host's lock back when an operation fails there (pyinfra then runs nothing more on
    that host, the release operation included). An error the operation ignores is no failure."""

    @staticmethod
    def operation_host_error(state: Any, target: Any, op_hash: str, retry_attempt: int = 0, max_retries: int = 0) -> None:
        try:
            arguments = state.get_op_data_for_host(target, op_hash).global_arguments
            if arguments.get("_ignore_errors") or arguments.get("_continue_on_error"):
                return
            give_back(state, target)
        except Exception as error:  # a callback must not end the run; the stale rule frees the lock later
            logger.warning(
                f"{target.print_prefix}host {target.name}: could not give the deploy lock back ({error}); clear it with `{CLEAR_COMMAND}`"
            )


def register(state: Any) -> None:
    """Add :class:`ReleaseOnFailure` to ``state`` once (the deploy file runs once per host)."""
    if not any(isinstance(handler, ReleaseOnFailure) for handler in state.callback_handlers):
        state.add_callback_handler(ReleaseOnFailure())
