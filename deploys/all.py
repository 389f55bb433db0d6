"""The whole chain, per host: `pyinfra inventories/prod.py deploys/all.py`.

Each step is an @deploy in its own module under deploys/, importable by other pyinfra projects.
"""

from pyinfra import state

from deploys import settings
from deploys.docker import docker
from deploys.model import model
from deploys.nvidia_toolkit import nvidia_toolkit
from deploys.preflight import preflight
from deploys.registry_login import registry_login
from deploys.triton import triton
from deploys.verify import verify

settings.validate_fleet(state)  # every host's settings, before any host is planned

preflight()
docker()
nvidia_toolkit()
registry_login()
model()
triton()
verify()
