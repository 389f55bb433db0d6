"""Restarts behind the front door, at most ``rollout_max_unavailable`` Triton hosts out of its pool at
once (the triton step for a new release, the gateway step for a new gateway; deploys/all.py and,
through it, python -m deploys.rollout). The machinery is core because two roles roll the same way;
what a roll runs on the host is the caller's :class:`RollPlan` (deploys/triton/roll_plan.py,
deploys/gateway/logic.py:gateway_roll_plan).

One operation (:func:`roll`) per host, run ``_parallel=rollout_max_unavailable`` hosts at a time:
pyinfra runs the batches one after another. Its body runs on the controller (:func:`_roll`):

1. drain the host's server in HAProxy on every front-door host (their runtime API over SSH: socat
   on the admin socket; a front door the run did not connect, as with ``--limit``, is connected
   here) and wait, at most ``rollout_drain_timeout_s``, until no request is in flight there;
2. on the host, ``plan.start`` (e.g. switch ``current``, ``docker compose up -d``, Triton READY,
   the gateway's /ready), then ``plan.check`` (the parity check against local ONNX Runtime) when
   there is one: each bounded;
3. when 2 fails: ``plan.roll_back`` (back to the release it served, READY) and the host fails; the
   hosts after it in this run are not restarted, so at most one batch is ever on a failed release;
4. put the server back (``state ready``) and wait, at most ``rollout_restore_timeout_s``, until the
   front door's health checks see it UP; only then the next host.

With a monitoring host, the drain first silences the host's alerts in Alertmanager for the drain's
own bounds plus a margin, and putting it back expires the silences; a failed roll expires them and
sends RollFailed, which pages (deploys/core/silences.py).

A roll marks the host (``paths.ROLL_PENDING``, before the drain) until it is back in the pool: a
run killed mid-roll leaves the mark, and the next run's Triton and gateway steps roll such a host
again (:func:`pending`) even when nothing of it changed, which puts it back in the pool. A drain by
hand (:func:`take_out`) leaves no mark: a deploy never puts such a host back.

A front door that cannot be reached, or refuses the drain, fails the host before anything changed
on it. Each step is an event in the run's events file (deploys/core/events.py: what the rollout tool
reads) and a log line with its UTC time for people (``roll host1: drained at 2026-...Z on front1``).
"""

from __future__ import annotations

import shlex
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import gevent
from pyinfra import logger
from pyinfra.api import FunctionCommand, StringCommand, operation
from pyinfra.api.arguments import CONNECTOR_ARGUMENT_KEYS, pop_global_arguments
from pyinfra.facts.files import File

from deploys.core import context, events, paths, silences
from deploys.core.endpoints import server_name
from deploys.core.roles import FRONT_DOOR_GROUP, is_front_door
from facts.haproxy import _STAT_SERVERS, parse_servers_state, runtime_command, set_server_state_command
from facts.verify import NOTHING_TO_CHECK

POLL_S = 0.25  # how often the front door's runtime API is asked while waiting


@dataclass(frozen=True)
class RollPlan:
    """What one host's restart behind the front door runs (shell commands run on the host)."""

    what: str  # "Triton release 1a2b…" or "gateway": for the log
    doors: tuple[str, ...]  # inventory names of the front-door hosts
    server: str  # this host's server name in their HAProxy backend
    start: str  # makes the new state live and waits until it serves (fails otherwise)
    start_timeout_s: int
    check: str = ""  # prints a verdict that ``judge`` reads; '' for none
    check_timeout_s: int = 0
    judge: Callable[[list[str]], str | None] | None = None  # the check's output -> None (pass) or why not
    roll_back: str = ""  # back to what served before ('' when there is nothing to go back to)
    roll_back_to: str = ""  # for the log: the release roll_back brings back
    drain_timeout_s: int = 30
    restore_timeout_s: int = 60


def front_doors(inventory: Any) -> tuple[str, ...]:
    """Inventory names of the hosts in the front-door group (none: a fleet without a front door)."""
    return tuple(h.name for h in inventory if is_front_door(h))


def plan_for(host: Any, doors: tuple[str, ...], s: Any, **parts: Any) -> RollPlan:
    """A :class:`RollPlan` for ``host`` with the rollout timeouts of its settings ``s``."""
    return RollPlan(
        doors=doors,
        server=server_name(host.name),
        drain_timeout_s=s.rollout_drain_timeout_s,
        restore_timeout_s=s.rollout_restore_timeout_s,
        **parts,
    )


@operation(is_idempotent=False)
def roll(plan: RollPlan):
    """Drain this host at the front doors, restart (``plan.start``), check, back in the pool."""
    yield FunctionCommand(_roll, (plan,), {})


@operation(is_idempotent=False)
def take_out(plan: RollPlan, silence_s: int):
    """Drain this host at the front doors and leave it out (work by hand: deploys/drain.py); its
    alerts are silenced for ``silence_s``."""
    yield FunctionCommand(_take_out, (plan, silence_s), {})


@operation(is_idempotent=False)
def put_back(plan: RollPlan):
    """Put this host back in the front doors' pool, wait until it is UP, expire its silences (deploys/undrain.py)."""
    yield FunctionCommand(_put_back, (plan,), {})


def pending(host: Any) -> str | None:
    """What roll a run left unfinished on ``host`` (its mark), or None: a step rolls such a host
    even when nothing of it changed (a killed run's re-run changes no file)."""
    if host.get_fact(File, path=paths.ROLL_PENDING) is None:
        return None
    what = "a roll an interrupted run left unfinished (its host is still out of the front doors' pool)"
    logger.warning(f"{host.print_prefix}{what}: {paths.ROLL_PENDING} found; this run rolls it again and puts it back")
    return what


def mark_command(what: str) -> str:
    """Shell: the host's roll mark (what is being rolled), before its drain."""
    q = shlex.quote
    directory = paths.ROLL_PENDING.rsplit("/", 1)[0]
    return f"mkdir -p {q(directory)} && printf '%s\\n' {q(what)} > {q(paths.ROLL_PENDING)}"


UNMARK_COMMAND = f"rm -f {shlex.quote(paths.ROLL_PENDING)}"


def _take_out(state: Any, host: Any, plan: RollPlan, silence_s: int) -> bool:
    doors = [state.inventory.get_host(name) for name in plan.doors]
    drained: list[tuple[Any, bool]] = []
    try:
        _drain(host, doors, plan, drained, silence_s=silence_s, mark=False)
    except RollError as error:
        logger.error(f"{host.print_prefix}roll {host.name}: {error}; put back in the pool")
        _restore(host, drained, plan)
        return False
    return True


def _put_back(state: Any, host: Any, plan: RollPlan) -> bool:
    doors = [state.inventory.get_host(name) for name in plan.doors]
    try:
        known = [(door, True) for door in doors if _server(door, plan) is not None]
    except RollError as error:
        logger.error(f"{host.print_prefix}roll {host.name}: {error}")
        return False
    problem = _restore(host, known, plan)
    if problem:
        logger.error(f"{host.print_prefix}roll {host.name}: {problem}")
        return False
    return True


def _event(host: Any, what: str, detail: str = "", **fields: Any) -> None:
    """One step of a roll: an event in the run's events file (deploys/core/events.py: what programs
    read) and the same as a log line for people."""
    record = events.write(host.state, what, host.name, detail=detail.strip(), **fields)
    logger.info(f"{host.print_prefix}roll {host.name}: {what} at {record['at']}{detail}")


class RollError(Exception):
    """One line naming what failed in a roll (the host fails with it)."""


def _shell(target: Any, command: str, timeout_s: int) -> tuple[bool, list[str], list[str]]:
    """``command`` on inventory host ``target`` (connected here when the run has not: --limit),
    with that host's connector arguments (sudo…); stdout and stderr lines."""
    if not target.connected:
        try:
            target.connect(reason="to roll a host behind it", raise_exceptions=True)
        except Exception as error:
            raise RollError(f"front door {target.name} cannot be reached ({error})") from None
    arguments, _ = pop_global_arguments(target.state, target, {})
    connector = {key: arguments[key] for key in CONNECTOR_ARGUMENT_KEYS if key in arguments}
    connector["_timeout"] = timeout_s
    try:
        ok, output = target.run_shell_command(StringCommand(command), print_output=False, **connector)
    except Exception as error:  # timeouts, lost connections
        return False, [], [f"{type(error).__name__}: {error}"]
    return ok, output.stdout_lines, output.stderr_lines


def _server(door: Any, plan: RollPlan) -> dict[str, Any] | None:
    """This host's server as the front door ``door`` sees it now (None: not in its config)."""
    line = f"show servers state {paths.HAPROXY_BACKEND}; show stat {paths.HAPROXY_BACKEND} {_STAT_SERVERS}"
    ok, out, err = _shell(door, runtime_command(paths.HAPROXY_ADMIN_SOCKET, line), 15)
    if not ok:
        raise RollError(f"front door {door.name}: its runtime API did not answer ({' '.join(err)[-200:] or 'no output'})")
    return next((dict(s) for s in parse_servers_state(out, paths.HAPROXY_BACKEND) if s["name"] == plan.server), None)


def _set_state(door: Any, plan: RollPlan, wanted: str) -> None:
    command = set_server_state_command(paths.HAPROXY_ADMIN_SOCKET, paths.HAPROXY_BACKEND, plan.server, wanted)
    ok, _, err = _shell(door, command, 15)
    if not ok:
        raise RollError(
            f"front door {door.name} refused `set server {paths.HAPROXY_BACKEND}/{plan.server} state {wanted}`: {' '.join(err)[-200:]}"
        )


def _wait(door: Any, plan: RollPlan, done: Callable[[dict[str, Any]], bool], timeout_s: float) -> tuple[bool, dict[str, Any] | None]:
    """Poll ``door`` until ``done(server)`` or ``timeout_s``; (done?, the server's last state)."""
    deadline = time.monotonic() + timeout_s
    while True:
        server = _server(door, plan)
        if server is None or done(server):
            return True, server
        if time.monotonic() >= deadline:
            return False, server
        gevent.sleep(POLL_S)


def _silencer(host: Any) -> silences.Silencer:
    return silences.Silencer(host.state.inventory, _shell, lambda line: logger.warning(f"{host.print_prefix}roll {host.name}: {line}"))


def silence_bound_s(plan: RollPlan, doors: int, margin_s: int) -> int:
    """How long a drain's silence lasts: every bound of the roll (drain and restore on each door with
    their runtime-API calls, start, check, roll back) plus ``margin_s``. A check or a roll back the
    plan does not have counts nothing (the gateway's roll has neither): a longer silence would only
    keep a host a killed run left drained quiet for longer."""
    per_door = plan.drain_timeout_s + plan.restore_timeout_s + 4 * 15  # _server/_set_state calls are bounded at 15 s
    check = plan.check_timeout_s if plan.check else 0
    roll_back = plan.start_timeout_s if plan.roll_back else 0
    return max(doors, 1) * per_door + plan.start_timeout_s + check + roll_back + margin_s


def _drain(host: Any, doors: list[Any], plan: RollPlan, drained: list[Any], silence_s: int | None = None, mark: bool = True) -> None:
    """Drain ``plan.server`` on every door; each one drained is appended to ``drained`` (to be
    restored) with whether its health checks saw the host UP before. First the host's alerts are
    silenced (with a monitoring host) for ``silence_s``, by default the roll's own bounds plus a margin,
    and (``mark``: a roll, not a drain by hand) the host is marked until it is back in the pool."""
    silencer = _silencer(host)
    seconds = silence_s if silence_s is not None else silence_bound_s(plan, len(doors), silencer.margin_s())
    if silencer.silence(host.name, plan.server, seconds, f"{plan.what} (drained behind the front door)"):
        logger.info(f"{host.print_prefix}roll {host.name}: alerts silenced for at most {seconds}s on {silencer.mon.name}")
    if mark:
        ok, _, err = _shell(host, mark_command(plan.what), 15)
        if not ok:
            raise RollError(f"cannot write {paths.ROLL_PENDING} on {host.name}: {' '.join(err)[-200:] or 'no output'}")
    for door in doors:
        before = _server(door, plan)
        if before is None:
            logger.warning(
                f"{host.print_prefix}roll {host.name}: not a server of front door {door.name} (its config predates the host); no drain there"
            )
            continue
        _set_state(door, plan, "drain")
        drained.append((door, before["operational_state"] == "up"))
        start = time.monotonic()
        idle, server = _wait(door, plan, lambda s: s["current_sessions"] == 0, plan.drain_timeout_s)
        left = (
            ""
            if idle
            else (
                f"; {server['current_sessions'] if server else '?'} request(s) still in flight after {plan.drain_timeout_s}s: "
                "restarting anyway (the front door retries them elsewhere)"
            )
        )
        _event(host, "drained", f" on {door.name} (idle after {time.monotonic() - start:.1f}s{left})", door=door.name)


def _restore(host: Any, drained: list[tuple[Any, bool]], plan: RollPlan) -> str | None:
    """Put the server back on every door; where it was UP before, wait until it is UP again. Why
    not, or None."""
    problems = []
    for door, was_up in drained:
        try:
            _set_state(door, plan, "ready")
            up, server = _wait(door, plan, lambda s, was_up=was_up: s["operational_state"] == "up" or not was_up, plan.restore_timeout_s)
        except RollError as error:
            problems.append(str(error))
            continue
        if up:
            _event(
                host,
                "back in the pool",
                f" of {door.name}" + ("" if was_up else " (it was not UP before the roll: not waited for)"),
                door=door.name,
            )
        else:
            state = server["operational_state"] if server else "?"
            problems.append(f"front door {door.name}: not UP {plan.restore_timeout_s}s after the restore (health checks say {state})")
    _silencer(host).expire(host.name)  # back in the pool (or failing: then its alerts must page)
    if not problems:  # back in every pool: no roll left to finish
        ok, _, err = _shell(host, UNMARK_COMMAND, 15)
        if not ok:
            problems.append(f"cannot remove {paths.ROLL_PENDING} on {host.name} (the next run rolls it again): {' '.join(err)[-200:]}")
    return "; ".join(problems) or None


def _run_on_host(host: Any, command: str, timeout_s: int, what: str) -> list[str]:
    """``command`` on the rolled host; RollError (its first stderr line) when it fails, with the
    rest of its stderr (e.g. Triton's last log lines) logged first."""
    ok, out, err = _shell(host, command, timeout_s)
    if not ok:
        lines = [line for line in err if line.strip()]
        for line in lines[-45:]:
            logger.warning(f"{host.print_prefix}  {line}")
        # The line that says why (our own READY waits print one), else the last one.
        why = next((line for line in lines if "not READY" in line or "not ready" in line), lines[-1] if lines else "no output")
        raise RollError(f"{what} failed: {why.strip()}")
    return out


def _roll(state: Any, host: Any, plan: RollPlan) -> bool:  # pyinfra passes state and host
    """The FunctionCommand: drain, start, check, (roll back), restore. False fails the host."""
    ctx = context.of(state)
    with ctx.lock:
        before = list(ctx.failed_rolls)
    if before:
        why = f"{', '.join(before)} failed first in this run; it keeps serving as it was"
        events.write(state, "not restarted", host.name, detail=why)
        logger.error(f"{host.print_prefix}roll {host.name}: not restarted: {why}")
        return False
    inventory = state.inventory
    doors = [inventory.get_host(name) for name in plan.doors]
    drained: list[tuple[Any, bool]] = []
    try:
        _drain(host, doors, plan, drained)
    except RollError as error:
        logger.error(
            f"{host.print_prefix}roll {host.name}: {error}; nothing changed on {host.name} "
            f"(fix the front door, or remove it from the {FRONT_DOOR_GROUP} group)"
        )
        _restore(host, drained, plan)
        return _failed(state, host, f"{error}; nothing changed on {host.name}")
    failure = None
    try:
        _run_on_host(host, plan.start, plan.start_timeout_s, f"{plan.what}: start")
        _event(host, "live", f" ({plan.what})")
        if plan.check:
            out = _run_on_host(host, plan.check, plan.check_timeout_s, f"{plan.what}: check")
            if NOTHING_TO_CHECK in out:
                _event(host, "check skipped", " (no verify runtime on the host yet: the verify step checks it)")
            elif plan.judge and (verdict := plan.judge(out)):
                raise RollError(verdict)
            else:
                _event(host, "checked", f" ({plan.what}: parity with local ONNX Runtime)")
    except RollError as error:
        failure = str(error)
    if failure and plan.roll_back:
        logger.error(f"{host.print_prefix}roll {host.name}: {failure}")
        try:
            _run_on_host(host, plan.roll_back, plan.start_timeout_s, f"roll back to {plan.roll_back_to}")
            _event(host, "rolled back", f" to {plan.roll_back_to}", release=plan.roll_back_to)
        except RollError as error:
            failure += f"; {error}: the host stays out of the pool"
            logger.error(f"{host.print_prefix}roll {host.name}: {failure}")
            return _failed(state, host, failure)
    elif failure:
        logger.error(f"{host.print_prefix}roll {host.name}: {failure}")
    problem = _restore(host, drained, plan)
    if problem:
        logger.error(f"{host.print_prefix}roll {host.name}: {problem}")
        return _failed(state, host, "; ".join(p for p in (failure, problem) if p))
    return _failed(state, host, failure) if failure else True


def _failed(state: Any, host: Any, why: str = "") -> bool:
    """The roll of ``host`` failed (an event); the hosts after it in this run are not restarted."""
    events.write(state, "roll failed", host.name, detail=why)
    silencer = _silencer(host)
    silencer.expire(host.name, at_once=True)  # nothing keeps the failure quiet
    silencer.page(host.name, f"roll of {host.name} failed: {why}")
    ctx = context.of(state)
    with ctx.lock:
        ctx.failed_rolls.append(host.name)
    return False
