"""The whole fleet: `pyinfra inventories/prod.py deploys/all.py`.

Each step is an @deploy in its own module under deploys/steps/, importable by other pyinfra projects;
what they share lives in deploys/lib/. Hosts of the inventory group `front_door` get the front door
(HAProxy in front of every Triton host's gateway), hosts of the group `monitoring` get Prometheus
(scraping every host), hosts of the group `registry_cache` get the registry cache (the Triton
hosts then pull through it); every other host gets the Triton chain. With a monitoring host in the
inventory every host also runs the node exporter.

The first operation on every host takes its deploy lock and the last gives it back
(deploys/steps/deploy_lock.py): a second run started meanwhile fails at once, changing nothing.
"""

from pyinfra import host, state

from deploys.lib import settings
from deploys.lib.roles import has_monitoring, is_front_door, is_monitoring, is_registry_cache
from deploys.steps.dcgm_exporter import dcgm_exporter
from deploys.steps.deploy_lock import lock, unlock
from deploys.steps.docker import docker
from deploys.steps.front_door import front_door_step
from deploys.steps.gateway import embeddings_gateway
from deploys.steps.image_prune import image_prune
from deploys.steps.model import model
from deploys.steps.monitoring import monitoring_step
from deploys.steps.node_exporter import node_exporter
from deploys.steps.nvidia_toolkit import nvidia_toolkit
from deploys.steps.preflight import preflight
from deploys.steps.registry_cache import registry_cache_step
from deploys.steps.registry_login import registry_login
from deploys.steps.triton import triton
from deploys.steps.verify import verify

settings.validate_fleet(state)  # every host's settings, before any host is planned

lock()  # the first operation on every host: nothing changes before every host's lock is held

if is_front_door(host):
    front_door_step()
elif is_monitoring(host):
    monitoring_step()
elif is_registry_cache(host):
    registry_cache_step()  # before the Triton chain: its operations run first, so the cache serves their pulls
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
if has_monitoring(state.inventory):
    node_exporter()  # every host, the monitoring host included
unlock()  # the last operation on every host
