"""Rollback: point ``current`` back to ``previous``, `docker compose up -d` that release, wait for
READY, verify. One host at a time is the usual use (the rollout driver does this on a failed host):

    pyinfra inventories/prod.py deploys/rollback.py -y --limit gpu-01.example.internal
"""

from pyinfra import host, state

from deploys.core import connection, settings
from deploys.core.roles import is_triton_host
from deploys.deploy_lock.step import lock, unlock
from deploys.triton.rollback import rollback
from deploys.triton.verify import verify

connection.install(state)
settings.validate_fleet(state)

if is_triton_host(host):  # front doors and monitoring hosts run no Triton
    lock()  # the deploy lock, as deploys/all.py takes it
    verify(rollback())  # verified with the previous release's own ports and model name
    unlock()
