"""The whole fleet: `pyinfra inventories/prod.py deploys/all.py`.

Each role is a package under deploys/ (deploys/<role>/: its @deploy step(s), logic, settings and
rendering; its templates in templates/<role>/), its steps importable by other pyinfra projects; what
the roles share lives in deploys/core/. deploys/core/roles.py decides which role a host has: hosts
of the inventory group `front_door` get the front door (HAProxy in front of every Triton host's
gateway), hosts of the group `monitoring` get Prometheus (scraping every host), hosts of the group
`registry_cache` get the registry cache (the Triton hosts then pull through it); every other host
gets the Triton chain. With a monitoring host in the
inventory every host also runs the node exporter.

The first operation on every host takes its deploy lock and the last gives it back
(deploys/deploy_lock/step.py): a second run started meanwhile fails at once, changing nothing.
"""

from pyinfra import host, state

from deploys.core import connection, fact_cache, planning, roles, settings
from deploys.deploy_lock.step import lock, unlock
from deploys.front_door.step import front_door_step
from deploys.gateway.step import embeddings_gateway
from deploys.host_base.docker import docker
from deploys.host_base.nvidia_driver import nvidia_driver
from deploys.host_base.nvidia_toolkit import nvidia_toolkit
from deploys.host_base.preflight import preflight
from deploys.host_base.registry_login import registry_login
from deploys.model.step import model
from deploys.monitoring.dcgm_exporter import dcgm_exporter
from deploys.monitoring.node_exporter import node_exporter
from deploys.monitoring.step import monitoring_step
from deploys.registry_cache.step import registry_cache_step
from deploys.triton.image_prune import image_prune
from deploys.triton.step import triton
from deploys.triton.verify import verify

planning.install()  # deploys/core/planning.py: pyinfra's per-operation stack walk without source reads
fact_cache.install(state)  # deploys/core/fact_cache.py: a fact read once until a command changes the host, facts read in one batch
connection.install(state)  # deploys/core/connection.py: no command waits on Nagle's algorithm
settings.validate_fleet(state)  # every host's settings, before any host is planned

lock()  # the first operation on every host: nothing changes before every host's lock is held

role = roles.role(host)  # deploys/core/roles.py: the one place that decides it
if role == roles.FRONT_DOOR:
    front_door_step()
elif role == roles.MONITORING:
    monitoring_step()
elif role == roles.REGISTRY_CACHE:
    registry_cache_step()  # before the Triton chain: its operations run first, so the cache serves their pulls
elif not nvidia_driver():
    pass  # a driver was installed (or awaits its reboot): deploys/reboot.py, then this command again
else:
    preflight()
    docker()
    nvidia_toolkit()
    registry_login()
    model()
    triton()
    embeddings_gateway()
    dcgm_exporter()
    verify()
    image_prune()  # after a deploy that passed: images no kept release uses
if roles.runs_node_exporter(state.inventory):
    node_exporter()  # every host, the monitoring host included
unlock()  # the last operation on every host
