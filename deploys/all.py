"""The whole chain, per host: `pyinfra inventories/prod.py deploys/all.py`.

Each step is an @deploy in its own module under deploys/steps/, importable by other pyinfra projects;
what they share lives in deploys/lib/.
"""

from pyinfra import state

from deploys.lib import settings
from deploys.steps.docker import docker
from deploys.steps.gateway import embeddings_gateway
from deploys.steps.model import model
from deploys.steps.nvidia_toolkit import nvidia_toolkit
from deploys.steps.preflight import preflight
from deploys.steps.registry_login import registry_login
from deploys.steps.triton import triton
from deploys.steps.verify import verify

settings.validate_fleet(state)  # every host's settings, before any host is planned

preflight()
docker()
nvidia_toolkit()
registry_login()
model()
triton()
embeddings_gateway()
verify()
