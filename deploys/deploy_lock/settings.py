"""The deploy lock's settings. Each setting is declared once, here (deploys/core/tunables.py)."""

from __future__ import annotations

from deploys.core.tunables import Setting, _int


# One line per setting, like the README's table (the formatter leaves it alone).
# fmt: off
class DeployLockSettings:
    # -- the deploy lock (deploys/deploy_lock/logic.py; every host the deploy touches) --
    deploy_lock_stale_s = Setting(14_400, "Seconds after which another run's deploy lock on a host counts as stale and is taken over with one warning (a lock whose pid is gone from this same controller is taken over at once).", "int", _int(60, 7 * 86_400))
# fmt: on
