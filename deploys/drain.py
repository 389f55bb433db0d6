"""Take a Triton host out of the front doors' pool by hand (maintenance), its alerts silenced:

    pyinfra inventories/prod.py deploys/drain.py -y --limit gpu-01.example.internal
    ... the work ...
    pyinfra inventories/prod.py deploys/undrain.py -y --limit gpu-01.example.internal

The drain is the rolls' own (deploys/core/rolling.py: every front door, in-flight requests finished,
at most ``rollout_drain_timeout_s``); with a monitoring host the host's alerts are silenced in
Alertmanager for ``monitoring_maintenance_silence_s`` (a host left out longer pages). deploys/undrain.py
puts it back, waits until the front doors see it UP and expires the silences.
"""

from pyinfra import host, state

from deploys.core import connection, rolling, settings
from deploys.core.roles import is_triton_host
from deploys.deploy_lock.step import lock, unlock

connection.install(state)
settings.validate_fleet(state)

if is_triton_host(host):  # only Triton hosts are servers of the front doors
    s = settings.load(host)
    doors = rolling.front_doors(state.inventory)
    lock()  # the deploy lock, as deploys/all.py takes it: no roll meanwhile
    if doors:
        mon = rolling.silences.monitoring_host(state.inventory)
        hold_s = settings.load(mon).monitoring_maintenance_silence_s if mon is not None else 0
        plan = rolling.plan_for(host, doors, s, what="taken out by hand", start="true", start_timeout_s=0)
        rolling.take_out(name="Out of the front doors' pool by hand, alerts silenced", plan=plan, silence_s=hold_s)
    unlock()
