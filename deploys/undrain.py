"""Put a Triton host taken out by hand (deploys/drain.py) back in the front doors' pool:

    pyinfra inventories/prod.py deploys/undrain.py -y --limit gpu-01.example.internal

Back in every front door's pool (``state ready``), waited for until their health checks see it UP
(at most ``rollout_restore_timeout_s``), then the silences the drain made are expired
(deploys/core/rolling.py, deploys/core/silences.py). Run it again: the same, nothing else changes.
"""

from pyinfra import host, state

from deploys.core import connection, rolling, settings
from deploys.core.roles import is_triton_host
from deploys.deploy_lock.step import lock, unlock

connection.install(state)
settings.validate_fleet(state)

if is_triton_host(host):
    s = settings.load(host)
    doors = rolling.front_doors(state.inventory)
    lock()
    if doors:
        plan = rolling.plan_for(host, doors, s, what="put back by hand", start="true", start_timeout_s=0)
        rolling.put_back(name="Back in the front doors' pool, silences expired", plan=plan)
    unlock()
