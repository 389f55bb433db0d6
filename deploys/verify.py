"""Verify alone: `pyinfra inventories/prod.py deploys/verify.py` (the last step of deploys/all.py,
deploys/steps/verify.py): Triton vs local ONNX Runtime on every host, reports and the fleet table."""

from pyinfra import host, state

from deploys.lib import settings
from deploys.lib.front_door import is_front_door
from deploys.steps.verify import verify

settings.validate_fleet(state)

if not is_front_door(host):  # front doors run no Triton
    verify()
