"""Rolling reboots behind the front door (deploys/reboot.py): which hosts need one, and the roll.

A host needs a reboot when the loaded NVIDIA module differs from the installed one, the pinned
driver is installed but not loaded, no module exists for the running kernel, nouveau is loaded, or
``/var/run/reboot-required`` exists (kernel and library security updates): deploys/host_base/
driver.py:reboot_reasons reads them from the NvidiaHost fact.

Each such host is one :func:`reboot_roll` operation, run ``rollout_max_unavailable`` hosts at a time
like Triton's rolling restarts, and drained and put back by the same machinery
(deploys/core/rolling.py: ``_drain``, ``_restore``, ``_failed``; events and log lines alike):

1. drain the host at every front door, wait until nothing is in flight there;
2. reboot it, detached from the SSH session as pyinfra's ``server.reboot`` does, then reconnect
   until it answers with a new boot (``reboot_timeout_s`` at most). pyinfra's own operation
   confirms the reboot by ``/proc/uptime`` dropping; this one by a changed boot identity (the
   kernel's boot_id, and systemd's soft-reboot count), which also sees a userspace reboot: the
   sandbox's systemd containers share the controller's kernel, so their uptime never drops;
3. the checks after the boot (``plan.check``: the expected driver in nvidia-smi, fabric manager,
   the GPU container smoke run, Triton READY, the gateway's /ready, parity with local ONNX Runtime);
4. back in the pool, then the next host. A host that does not come back, or fails its checks,
   stays out of the pool and stops the roll with one line.
"""

from __future__ import annotations

import time
from typing import Any

import gevent
from pyinfra import logger
from pyinfra.api import FunctionCommand, operation
from pyinfra.connectors.util import clear_askpass_cache, remove_any_sudo_askpass_file

from deploys.core import context, events, rolling
from deploys.core.rolling import RollError, RollPlan
from facts.verify import NOTHING_TO_CHECK

# The boot's identity: a new kernel boot changes boot_id; a userspace (soft) reboot the count.
BOOT_IDENTITY = "cat /proc/sys/kernel/random/boot_id; systemctl show -P SoftRebootsCount 2>/dev/null || true"
RECONNECT_DELAY_S = 5  # before the first reconnect try (the host goes down 1 s after the command)
RECONNECT_INTERVAL_S = 2


def detached(command: str) -> str:
    """``command`` run 1 s later, detached from the SSH session (pyinfra's server.reboot form):
    the channel closes at once instead of hanging on a host that goes away."""
    return f"( sleep 1 && {command} ) </dev/null >/dev/null 2>&1 &"


@operation(is_idempotent=False)
def reboot_roll(plan: RollPlan, reasons: tuple[str, ...]):
    """Drain this host at the front doors, reboot it (``plan.start``), check, back in the pool."""
    yield FunctionCommand(_reboot_roll, (plan, reasons), {})


def _identity(host: Any) -> str | None:
    ok, out, _ = rolling._shell(host, BOOT_IDENTITY, 30)
    return " ".join(line.strip() for line in out if line.strip()) if ok and out else None


def _reconnect(host: Any, before: str, timeout_s: int) -> float:
    """Reconnect until the host answers with another boot identity than ``before``; seconds taken.
    RollError past ``timeout_s``."""
    start = time.monotonic()
    clear_askpass_cache(host)  # the askpass files lived on the host that is rebooting
    host.disconnect()
    gevent.sleep(RECONNECT_DELAY_S)
    while time.monotonic() - start < timeout_s:
        host.connect(show_errors=False)
        if host.connected:
            now = _identity(host)
            if now is not None and now != before:
                return time.monotonic() - start
            host.disconnect()  # still the old boot (going down) or a dead session: try again
        gevent.sleep(RECONNECT_INTERVAL_S)
    raise RollError(f"did not come back with a new boot within reboot_timeout_s={timeout_s}s")


def _reboot_roll(state: Any, host: Any, plan: RollPlan, reasons: tuple[str, ...]) -> bool:  # pyinfra passes state and host
    ctx = context.of(state)
    with ctx.lock:
        before_failed = list(ctx.failed_rolls)
    if before_failed:
        why = f"{', '.join(before_failed)} failed first in this run; not rebooted"
        events.write(state, "not restarted", host.name, detail=why)
        logger.error(f"{host.print_prefix}roll {host.name}: {why}")
        return False
    doors = [state.inventory.get_host(name) for name in plan.doors]
    drained: list[tuple[Any, bool]] = []
    try:
        rolling._drain(host, doors, plan, drained)
    except RollError as error:
        logger.error(f"{host.print_prefix}roll {host.name}: {error}; not rebooted")
        rolling._restore(host, drained, plan)
        return rolling._failed(state, host, f"{error}; not rebooted")
    try:
        before = _identity(host)
        if before is None:
            raise RollError("its boot identity could not be read before the reboot")
        remove_any_sudo_askpass_file(host)
        ok, _, err = rolling._shell(host, detached(plan.start), 30)
        if not ok:
            raise RollError(f"the reboot command failed: {' '.join(err)[-200:]}")
        rolling._event(host, "rebooting", f" ({'; '.join(reasons)})")
        took = _reconnect(host, before, plan.start_timeout_s)
        rolling._event(host, "live", f" (rebooted: a new boot after {took:.0f}s)")
        if plan.check:
            out = rolling._run_on_host(host, plan.check, plan.check_timeout_s, "after the reboot: check")
            if NOTHING_TO_CHECK in out:
                rolling._event(host, "check skipped", " (no verify runtime on the host yet)")
            elif plan.judge and (verdict := plan.judge(out)):
                raise RollError(verdict)
            else:
                rolling._event(host, "checked", " (after the reboot: driver, Triton READY, parity with local ONNX Runtime)")
    except RollError as error:
        logger.error(
            f"{host.print_prefix}roll {host.name}: {error}; it stays out of the pool and the roll stops here "
            "(fix the host, then run deploys/reboot.py again)"
        )
        return rolling._failed(state, host, str(error))
    problem = rolling._restore(host, drained, plan)
    if problem:
        logger.error(f"{host.print_prefix}roll {host.name}: {problem}")
        return rolling._failed(state, host, problem)
    return True
