"""Deploy lock step: the run's first operation takes this host's deploy lock, its last gives it back
(deploys/deploy_lock/logic.py: the lock on the host, the stale rule, the messages)."""

from __future__ import annotations

from pyinfra import host
from pyinfra import state as pyinfra_state
from pyinfra.api import deploy

from deploys.core import settings
from deploys.deploy_lock import logic as deploy_lock
from facts.deploy_lock import DeployLock


@deploy("Deploy lock")
def lock() -> None:
    """Take this host's deploy lock before any change (fails the host when another run holds it)."""
    s = settings.load(host)
    deploy_lock.register(pyinfra_state)
    # Read now, while planning: the acquire checks that no other run released the lock since.
    seen = host.get_fact(DeployLock, command=deploy_lock.status_command())
    deploy_lock.acquire(
        name="Deploy lock: take it on this host",
        stale_s=s.deploy_lock_stale_s,
        expected_last=seen["last"] or "",
    )


@deploy("Deploy lock")
def unlock() -> None:
    """Give this host's deploy lock back (the run's last operation)."""
    deploy_lock.release(name="Deploy lock: give it back")
