"""Verify alone: `pyinfra inventories/prod.py deploys/verify.py` (the last step of deploys/all.py,
deploys/triton/verify.py): Triton vs local ONNX Runtime on every host, reports and the fleet table.
The check always runs here (a deploy's re-run that changed nothing reuses a host's recent pass:
verify_reuse_s)."""

from pyinfra import host, state

from deploys.core import connection, settings
from deploys.core.roles import is_triton_host
from deploys.triton.verify import verify

connection.install(state)
settings.validate_fleet(state)

if is_triton_host(host):  # front doors and monitoring hosts run no Triton
    verify(reuse=False)
